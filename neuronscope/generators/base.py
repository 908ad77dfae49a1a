"""The generator interface: a code h of a classifier layer -> a [0, 1] image.

A :class:`Generator` wraps any ``nn.Module`` ``net`` that maps a batch of flat
codes (B, D) to images, together with

* a :class:`CodeSpec` saying which classifier layer the code inverts (layer
  address, spatial grid the layer is average-pooled to, input resolution used
  to compute it), so that ``encode`` computes E(x) for real or generated images;
* :class:`CodeStats`: per-unit mean, std and the clipping range [lo, hi] used by
  DGN-AM and the PPGN sampler ([0, min(6, mu + 3 sigma)] for a
  ReLU6 code);
* metadata (classifier name, resolution, training command, ...).

Users with a stronger generator plug it in with ``Generator(my_net, spec,
stats, output_range=(-1, 1))``; ``save``/``load`` keep everything in one file.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import NeuronscopeError
from ..models.adapter import Frozen


@dataclass
class CodeSpec:
    """Which classifier layer a code inverts, and how it is read out.

    ``layer`` is a tap address (``pool``, ``head.act``, ``blocks.10``);
    ``grid`` average-pools a 4-D layer to grid x grid positions (0 keeps the
    full map); ``size`` is the square input resolution the classifier sees.
    """

    model: str = "efficientnet_lite0"
    layer: str = "head.act"
    grid: int = 2
    size: int = 128

    def describe(self) -> str:
        g = f", pooled to {self.grid}x{self.grid}" if self.grid else ""
        return f"{self.model} {self.layer}{g} at {self.size} px"


@dataclass
class CodeStats:
    """Per-unit statistics of codes of real images, and the clipping box."""

    mean: torch.Tensor
    std: torch.Tensor
    lo: torch.Tensor
    hi: torch.Tensor

    @classmethod
    def from_codes(cls, codes: torch.Tensor, k: float = 3.0, ceiling: float | None = None) -> "CodeStats":
        """mu, sigma per unit and the box [lo, hi] = [max(min, mu - k sigma), min(ceiling, mu + k sigma)].

        A non-negative code (post-ReLU) gets lo = 0, as in DGN-AM's fc6 ranges.
        ``ceiling`` defaults to 6 when the codes look like ReLU6 outputs.
        """
        codes = codes.float().flatten(1)
        mean, std = codes.mean(0), codes.std(0)
        cmin, cmax = codes.min(0).values, codes.max(0).values
        nonneg = bool((cmin >= 0).all())
        if ceiling is None and nonneg and float(cmax.max()) <= 6.0 + 1e-4:
            ceiling = 6.0
        lo = torch.zeros_like(mean) if nonneg else torch.minimum(cmin, mean - k * std)
        hi = mean + k * std
        if ceiling is not None:
            hi = hi.clamp(max=ceiling)
        hi = torch.maximum(hi, lo + 1e-3)
        return cls(mean, std, lo, hi)

    @property
    def dim(self) -> int:
        return self.mean.numel()

    def to(self, device) -> "CodeStats":
        return CodeStats(*(t.to(device) for t in (self.mean, self.std, self.lo, self.hi)))

    def state(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().float().cpu() for k, v in asdict(self).items()}


def pool_code(feat: torch.Tensor, grid: int) -> torch.Tensor:
    """A layer output -> flat codes (B, D): 4-D maps are average-pooled to grid x grid."""
    if feat.dim() == 4 and grid:
        feat = F.adaptive_avg_pool2d(feat, grid)
    return feat.flatten(1)


def encode(model, x: torch.Tensor, spec: CodeSpec, *, grad: bool = False) -> torch.Tensor:
    """E(x): flat codes of the [0, 1] images ``x`` at ``spec.layer``.

    ``x`` is resized to ``spec.size``; with ``grad=True`` the result stays
    differentiable w.r.t. ``x`` (for the code-cycle prior R = E o G).
    """
    from ..taps import tap

    if x.shape[-1] != spec.size or x.shape[-2] != spec.size:
        x = F.interpolate(x, size=(spec.size, spec.size), mode="bilinear", align_corners=False)
    ctx = torch.enable_grad() if grad else torch.no_grad()
    with ctx, tap(model, [spec.layer], stop_early=True) as taps:
        taps.run(x.to(model.device))
        return pool_code(taps[spec.layer], spec.grid)


class Generator(Frozen):
    """G: flat code (B, D) -> images (B, 3, S, S) in [0, 1], with its code statistics.

    ``net`` may output in ``output_range`` (default (-1, 1), a tanh output);
    the wrapper maps it to [0, 1]. ``dae`` is an optional denoising autoencoder
    on codes (PPGN-h's prior); ``meta`` is free-form metadata kept on save.
    """

    def __init__(
        self,
        net: nn.Module,
        spec: CodeSpec,
        stats: CodeStats,
        *,
        output_range: tuple[float, float] = (-1.0, 1.0),
        dae: nn.Module | None = None,
        meta: dict[str, Any] | None = None,
    ):
        super().__init__()
        self.net = net
        self.dae = dae
        self.spec = spec
        self.output_range = tuple(float(v) for v in output_range)
        self.meta = dict(meta or {})
        for k, v in stats.state().items():
            self.register_buffer(f"code_{k}", v)
        self._freeze()  # samplers need eval-mode BatchNorm

    @property
    def stats(self) -> CodeStats:
        return CodeStats(self.code_mean, self.code_std, self.code_lo, self.code_hi)

    @property
    def code_dim(self) -> int:
        return self.code_mean.numel()

    @property
    def device(self) -> torch.device:
        return self.code_mean.device

    @property
    def image_size(self) -> int:
        return int(self.meta.get("image_size", 0)) or int(self(self.code_mean[None]).shape[-1])

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if h.dim() != 2 or h.shape[1] != self.code_dim:
            raise NeuronscopeError(f"generator expects codes of shape (B, {self.code_dim}), got {tuple(h.shape)}")
        y = self.net(h)
        a, b = self.output_range
        return ((y - a) / (b - a)).clamp(0, 1)

    def clip(self, h: torch.Tensor) -> torch.Tensor:
        """Per-unit clipping to the code box [lo, hi]."""
        return torch.maximum(torch.minimum(h, self.code_hi), self.code_lo)

    def random_codes(self, n: int, *, seed: int | None = None, kind: str = "stats") -> torch.Tensor:
        """Starting codes: ``stats`` draws N(mu, sigma^2) clipped to the box; ``normal`` draws N(0, 1) clipped."""
        g = torch.Generator().manual_seed(seed) if seed is not None else None
        z = torch.randn(n, self.code_dim, generator=g).to(self.device)
        if kind == "normal":
            return self.clip(z)
        if kind != "stats":
            raise NeuronscopeError(f"unknown code init {kind!r}; valid: stats, normal")
        return self.clip(self.code_mean + self.code_std * z)

    def can_encode(self, model) -> bool:
        """Whether ``model`` is the classifier whose layer the codes come from (E(x) is then available)."""
        return model is not None and getattr(model, "name", None) == self.spec.model

    def encode(self, model, x: torch.Tensor, *, grad: bool = False) -> torch.Tensor:
        """E(x) for this generator's code layer."""
        return encode(model, x, self.spec, grad=grad)

    def denoise(self, h: torch.Tensor) -> torch.Tensor:
        if self.dae is None:
            raise NeuronscopeError("this generator has no code DAE; use prior='cycle' (R = E o G) or prior='none'")
        return self.dae(h)

    # ------------------------------------------------------------ persistence

    def save(self, path: str | os.PathLike, *, half: bool = True, net_config: dict | None = None) -> Path:
        """One .pt file: weights (fp16 by default), code stats, spec, metadata, net config."""
        from ..images import atomic_write_bytes
        import io

        def sd(m):
            return {k: (v.half() if half and v.is_floating_point() else v).cpu() for k, v in m.state_dict().items()}

        blob = {
            "format": "neuronscope-generator/1",
            "net": sd(self.net),
            "dae": sd(self.dae) if self.dae is not None else None,
            "net_config": net_config or getattr(self.net, "config", None),
            "dae_config": getattr(self.dae, "config", None) if self.dae is not None else None,
            "spec": asdict(self.spec),
            "stats": self.stats.state(),
            "output_range": self.output_range,
            "meta": self.meta,
        }
        buf = io.BytesIO()
        torch.save(blob, buf)
        return atomic_write_bytes(path, buf.getvalue())

    @classmethod
    def load(cls, path: str | os.PathLike, *, device=None) -> "Generator":
        """A generator saved by :meth:`save` (built from the small nets in ``nets.py``): its ``.pt`` file, or
        a folder holding ``generator.pt`` (what ``convert-generator`` and ``train-generator`` write)."""
        from .nets import build_dae, build_generator_net

        p = generator_file(path)
        try:
            blob = torch.load(p, map_location="cpu", weights_only=False)
        except Exception as e:  # corrupt or not a torch file
            raise NeuronscopeError(f"{p} is not a neuronscope generator file ({e})") from e
        if not isinstance(blob, dict) or blob.get("format") != "neuronscope-generator/1":
            raise NeuronscopeError(f"{p} is not a neuronscope generator file (format neuronscope-generator/1)")
        try:
            net = build_generator_net(**blob["net_config"])
        except ImportError as e:
            raise NeuronscopeError(f"{p} needs a package that is not installed: {e} (for BigGAN: pip install 'neuronscope[biggan]')") from None
        net.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in blob["net"].items()})
        dae = None
        if blob.get("dae") is not None and blob.get("dae_config"):
            dae = build_dae(**blob["dae_config"])
            dae.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in blob["dae"].items()})
        stats = CodeStats(**blob["stats"])
        g = cls(net, CodeSpec(**blob["spec"]), stats, output_range=tuple(blob["output_range"]), dae=dae, meta=blob["meta"])
        from ..models.registry import resolve_device

        return g.to(resolve_device(device))


#: the generator file inside a folder written by ``convert-generator`` or ``train-generator``
GENERATOR_FILE = "generator.pt"


def generator_file(path: str | os.PathLike) -> Path:
    """The generator file ``path`` names: the file itself, or ``generator.pt`` in a folder.

    Checked without loading anything; a missing file, or a folder without a generator, is a
    :class:`NeuronscopeError` saying where generators come from.
    """
    p = Path(path)
    if p.is_dir():
        inside = p / GENERATOR_FILE
        if inside.is_file():
            return inside
        best = p / "best_generator.pt"
        if best.is_file():  # a train-generator run that has not finished
            raise NeuronscopeError(
                f"{p} holds no {GENERATOR_FILE} yet (a training run that has not finished?); resume it with "
                f"`neuronscope train-generator --resume --out {p}`, or use its best generator so far: {best}"
            )
        raise NeuronscopeError(
            f"{p} is a folder without {GENERATOR_FILE}; give the --out folder of `neuronscope convert-generator` "
            "or `neuronscope train-generator`, or a generator .pt file"
        )
    if not p.is_file():
        from .caffe_deepsim import DEEPSIM_ZIP, PPGN_GENERATOR

        raise NeuronscopeError(
            f"generator file not found: {p}. Make one with `neuronscope train-generator`, or convert the seeds' "
            "generators with `neuronscope convert-generator`: DGN-AM's fc6 generator.caffemodel (in "
            f"{DEEPSIM_ZIP}), PPGN's ({PPGN_GENERATOR}), or a BigGAN of pytorch-pretrained-biggan "
            "(see docs/generators.md)"
        )
    return p
