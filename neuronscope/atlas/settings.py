"""What an atlas is rendered with, and the manifest that makes stale results detectable.

Two atlases are comparable only when the model (name *and* weights), the
render preset, the render settings and the software that rendered them are the
same. :func:`manifest` writes all of that down; :func:`differences` lists what
changed between a stored manifest and a requested one, so a resumed run never
mixes units rendered under different conditions.
"""

from __future__ import annotations

import dataclasses
import hashlib
import platform
from dataclasses import dataclass

import torch

from ..errors import NeuronscopeError
from ..optim.presets import DEFAULT_PRESET

ATLAS_FORMAT = 1  # the store layout; bump when the schema changes
DIVERSITY_WEIGHT = 100.0  # Lucid's neuron-diversity weight, with the sum convention


@dataclass(frozen=True)
class AtlasSettings:
    """How every unit is rendered: one visualization, plus ``diversity`` extra renders when > 1."""

    size: int = 128
    steps: int | None = None  # None: the preset's
    preset: str = DEFAULT_PRESET
    seed: int = 0
    batch: int = 32  # rows per optimization (a unit takes 1 + diversity rows)
    diversity: int = 0  # extra renders per unit pushed apart by a Gram diversity term (0 = none)
    diversity_weight: float = DIVERSITY_WEIGHT

    def __post_init__(self):
        if self.size < 16:
            raise NeuronscopeError(f"--size must be at least 16 px, got {self.size}")
        if self.steps is not None and self.steps < 1:
            raise NeuronscopeError(f"--steps must be at least 1, got {self.steps}")
        if self.batch < 1:
            raise NeuronscopeError(f"--batch must be at least 1, got {self.batch}")
        if self.diversity < 0 or self.diversity == 1:
            raise NeuronscopeError(f"--diversity must be 0 (off) or at least 2 images, got {self.diversity}")

    @property
    def rows_per_unit(self) -> int:
        return 1 + self.diversity

    @property
    def units_per_batch(self) -> int:
        """Units in one optimization: ``batch`` rows, at least one unit."""
        return max(1, self.batch // self.rows_per_unit)

    def resolved_steps(self) -> int:
        from ..optim.presets import get_preset

        return int(self.steps if self.steps is not None else get_preset(self.preset).steps)

    def engine(self, device):
        """The engine of every render of the atlas: the preset's precision, through the faster copy in
        every batch when a full batch takes it, so a layer's last, smaller batch computes as the others."""
        from ..optim.engine import Engine
        from ..optim.presets import get_preset

        engine = Engine(precision=get_preset(self.preset).precision)
        full = engine.resolved(device, batch=self.units_per_batch * self.rows_per_unit, size=self.size,
                               steps=self.resolved_steps())
        return full if full.fast else engine  # fewer rows than a full batch never take the copy either


def model_fingerprint(model) -> str:
    """A short hash of the model's parameters and buffers (so changed weights are detected)."""
    h = hashlib.sha256()
    for name, t in sorted(model.net.state_dict().items()):
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().to("cpu").contiguous().numpy().tobytes() if t.dtype != torch.bfloat16 else
                 t.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def _preset_description(name: str) -> dict:
    """The preset's fields as plain values (a changed preset definition is a changed setting)."""
    from ..optim.presets import get_preset

    p = get_preset(name)
    out = {}
    for f in dataclasses.fields(p):
        v = getattr(p, f.name)
        if f.name == "description":
            continue
        if callable(v):
            v = getattr(v, "__qualname__", repr(v))
        elif dataclasses.is_dataclass(v):
            v = dataclasses.asdict(v)
        out[f.name] = v
    return out


def manifest(model, settings: AtlasSettings) -> dict:
    """Everything the rendered images depend on (compared on resume), plus informative extras."""
    from .. import __version__

    return {
        "format": ATLAS_FORMAT,
        "model": model.name,
        "model_fingerprint": model_fingerprint(model),
        "input_size": model.input_size,
        "preset": settings.preset,
        "preset_definition": _preset_description(settings.preset),
        "size": settings.size,
        "steps": settings.resolved_steps(),
        "seed": settings.seed,
        "diversity": settings.diversity,
        "diversity_weight": settings.diversity_weight if settings.diversity else None,
        "neuronscope": __version__,
        "torch": torch.__version__.split("+")[0],
    }


def render_conditions(model, threads: int | None, settings: AtlasSettings) -> dict:
    """The machine settings the pictures depend on: torch threads per render and the arithmetic.

    Renders at 1 and 2 threads differ (the batch is split over threads, sums are
    reordered), as do bfloat16 and float32 steps, so a store records both and a
    resume under other conditions is refused like any other changed setting.
    The arithmetic is what the atlas's engine (:meth:`AtlasSettings.engine`) computes
    in on this device, labelled by the engine itself (``Engine.arithmetic``, the label
    of the stages a render plans).
    """
    rows = settings.units_per_batch * settings.rows_per_unit
    arithmetic = settings.engine(model.device).arithmetic(model.device, batch=rows, size=settings.size,
                                                           steps=settings.resolved_steps())
    return {"threads": int(threads or torch.get_num_threads()), "precision": arithmetic}


#: manifest keys that do not change the pictures (shown, never compared)
INFORMATIONAL = ("created", "python", "platform", "batch")


def describe_environment() -> dict:
    return {"python": platform.python_version(), "platform": platform.platform(terse=True)}


def differences(stored: dict, requested: dict) -> list[str]:
    """Human-readable 'key: stored -> requested' lines for every compared key that differs."""
    out = []
    for key in sorted(set(stored) | set(requested)):
        if key in INFORMATIONAL:
            continue
        a, b = stored.get(key), requested.get(key)
        if a != b:
            if isinstance(a, dict) and isinstance(b, dict):
                inner = [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
                out.append(f"{key} ({', '.join(inner)} differ)")
            else:
                out.append(f"{key}: {a!r} -> {b!r}")
    return out
