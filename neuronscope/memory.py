"""Will it fit? A memory estimate before large allocations.

A run's memory is dominated by the network's activations, which grow with the
batch and the square of the image size. :func:`activation_bytes` measures them
once on a small probe image and scales; :func:`check_fits` compares an estimate
with the memory this process may use and refuses, naming the estimate, the
limit and the options to lower, instead of letting the allocation fail.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from .errors import NeuronscopeError

PROBE = 64  # px: the probe image's side
# backward through the network keeps each activation and its gradient, and the
# optimizer and transforms add copies: three times the forward activations
TRAINING_FACTOR = 3


def fmt_bytes(n: float) -> str:
    for unit, div in (("GB", 1e9), ("MB", 1e6)):
        if n >= div:
            return f"{n / div:.1f} {unit}"
    return f"{n / 1e3:.0f} kB"


def _cgroup_room() -> int | None:
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit == "max":
            return None
        used = int(Path("/sys/fs/cgroup/memory.current").read_text())
        return max(0, int(limit) - used)
    except (OSError, ValueError):
        return None


def available_bytes() -> int | None:
    """Memory this process can still use: ``NEURONSCOPE_MEMORY_LIMIT_MB`` if set, else MemAvailable (and the cgroup's room)."""
    env = os.environ.get("NEURONSCOPE_MEMORY_LIMIT_MB")
    if env:
        try:
            return int(float(env) * 1e6)
        except ValueError:
            raise NeuronscopeError(f"NEURONSCOPE_MEMORY_LIMIT_MB={env!r} is not a number of megabytes") from None
    room = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                room = int(line.split()[1]) * 1024
                break
    except (OSError, ValueError, IndexError):
        pass
    cg = _cgroup_room()
    if cg is not None:
        room = cg if room is None else min(room, cg)
    return room


def activation_bytes(model, size: int, batch: int, *, training: bool = True) -> int:
    """Estimated bytes of the network's activations for ``batch`` images of ``size`` px (float32)."""
    total = 0

    def hook(_m, _inp, out):
        nonlocal total
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                total += t.numel()

    net = getattr(model, "net", model)
    handles = [m.register_forward_hook(hook) for m in net.modules() if not list(m.children())]
    try:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        with torch.no_grad():
            model(torch.zeros(1, 3, PROBE, PROBE, device=device))
    except Exception:  # noqa: BLE001 - a model that cannot run at the probe size gets no estimate
        return 0
    finally:
        for h in handles:
            h.remove()
    per_image = total * 4 * (size / PROBE) ** 2
    return int(per_image * batch * (TRAINING_FACTOR if training else 1))


def check_fits(need: int, what: str, lower: str) -> None:
    """Refuse when ``need`` bytes exceed the memory available: the message names both and the options to lower."""
    room = available_bytes()
    if room is None or need <= room:
        return
    raise NeuronscopeError(
        f"{what} needs about {fmt_bytes(need)} of memory; about {fmt_bytes(room)} is available. "
        f"Lower {lower}"
    )


def check_activations(model, size: int, batch: int, lower: str, *, training: bool = True, what: str | None = None) -> None:
    """:func:`check_fits` for ``batch`` images of ``size`` px through ``model``."""
    need = activation_bytes(model, size, batch, training=training)
    check_fits(need, what or f"{batch} image{'s' if batch != 1 else ''} of {size}x{size} px through {model.name}", lower)
