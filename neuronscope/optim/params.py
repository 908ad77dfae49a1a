"""Image parameterizations: modules whose parameters produce images in [0, 1].

Every parameterization takes per-row seeds, so row i's initial parameters depend
only on ``seeds[i]``: a unit rendered alone or inside a batch starts the same.
See docs/design.md section 4.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

# Lucid's colour correlation (ImageNet), normalized by its largest column norm.
_COLOR_CORRELATION = torch.tensor([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])
COLOR_MATRIX = _COLOR_CORRELATION / _COLOR_CORRELATION.norm(dim=0).max()
COLOR_MEAN = torch.tensor([0.48, 0.46, 0.41])


def _per_row_normal(shape: Sequence[int], seeds: Sequence[int], std: float) -> torch.Tensor:
    rows = []
    for s in seeds:
        g = torch.Generator().manual_seed(int(s))
        rows.append(torch.randn(tuple(shape), generator=g) * std)
    return torch.stack(rows)


def _logit(x: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    x = x.clamp(eps, 1 - eps)
    return torch.log(x) - torch.log1p(-x)


class _ClipSquash(torch.autograd.Function):
    """clamp to [0,1] with a straight-through gradient, except outward at a bound."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.clamp(0, 1)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        # descent moves x by -g: block it when that pushes further out of [0, 1]
        outward = ((x <= 0) & (g > 0)) | ((x >= 1) & (g < 0))
        return g.masked_fill(outward, 0.0)


def squash(t: torch.Tensor, mode: str, decorrelated: bool) -> torch.Tensor:
    if mode == "sigmoid":
        return torch.sigmoid(t)
    if mode == "clip":
        if decorrelated:
            t = t + COLOR_MEAN.to(t).view(1, 3, 1, 1)
        return _ClipSquash.apply(t)
    raise ValueError(f"unknown squash {mode!r}")


def decorrelate(t: torch.Tensor) -> torch.Tensor:
    """Map decorrelated colour coordinates to RGB, per pixel."""
    return torch.einsum("ij,bjhw->bihw", COLOR_MATRIX.to(t), t)


def recorrelate(rgb: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,bjhw->bihw", torch.linalg.inv(COLOR_MATRIX).to(rgb), rgb)


class ImageParam(nn.Module):
    """Base: ``forward()`` returns a (B, 3, H, W) batch in [0, 1]."""

    size: tuple[int, int]
    batch: int

    def row_parameters(self) -> list[torch.Tensor]:
        """Parameters whose first dimension is the batch row (for freezing rows)."""
        return [p for p in self.parameters() if p.shape[:1] == (self.batch,)]

    def encode(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Parameter values (in ``row_parameters`` order) whose image is ``images``, as near as this
        parameterization can: exact for pixels and FFT (up to the squash's clamp), the nearest image with
        MACO's fixed magnitude. Used to step on the image outside the optimizer (a prior's step)."""
        raise NotImplementedError(f"{type(self).__name__} cannot be set from an image")

    @torch.no_grad()
    def assign(self, images: torch.Tensor, rows: torch.Tensor | None = None) -> None:
        """Set the parameters of ``rows`` (bool mask, default all) so this module produces ``images`` there."""
        for t, v in zip(self.row_parameters(), self.encode(images.to(next(self.parameters()).device).float())):
            if rows is None:
                t.copy_(v)
            else:
                t.copy_(torch.where(rows.to(t.device).view(-1, *([1] * (t.dim() - 1))), v, t))


class PixelParam(ImageParam):
    """Raw pixels (optionally in decorrelated colour), squashed to [0, 1]."""

    def __init__(self, batch, size, seeds, *, std=0.01, decorrelated=False, squash="sigmoid", init=None):
        super().__init__()
        self.batch, self.size = batch, size
        self.decorrelated, self.squash_mode = decorrelated, squash
        p = _per_row_normal((3, *size), seeds, std)
        if init is not None:
            p = p + self._inverse(init)
        self.pixels = nn.Parameter(p)

    def _inverse(self, x):
        x = F.interpolate(x.float(), size=self.size, mode="bilinear", align_corners=False, antialias=True)
        t = _logit(x) if self.squash_mode == "sigmoid" else x - (COLOR_MEAN.view(1, 3, 1, 1) if self.decorrelated else 0)
        return recorrelate(t) if self.decorrelated else t

    def encode(self, images):
        return [self._inverse(images)]

    def forward(self):
        t = decorrelate(self.pixels) if self.decorrelated else self.pixels
        return squash(t, self.squash_mode, self.decorrelated)


def _freq_grid(h: int, w: int) -> torch.Tensor:
    fy = torch.fft.fftfreq(h)[:, None]
    fx = torch.fft.rfftfreq(w)[None, :]
    return torch.sqrt(fx * fx + fy * fy)


class FFTParam(ImageParam):
    """Lucid's Fourier parameterization with 1/f^d scaling and decorrelated colour."""

    def __init__(self, batch, size, seeds, *, std=0.01, decay_power=1.0, decorrelated=True, squash="sigmoid", init=None):
        super().__init__()
        self.batch, self.size = batch, size
        self.decorrelated, self.squash_mode = decorrelated, squash
        h, w = size
        f = _freq_grid(h, w)
        self.register_buffer("scale", 1.0 / f.clamp(min=1.0 / max(h, w)) ** decay_power)
        spec = _per_row_normal((3, h, w // 2 + 1, 2), seeds, std)
        if init is not None:
            spec = spec + self._inverse(init)
        self.spectrum = nn.Parameter(spec)

    def _inverse(self, x):
        x = F.interpolate(x.float(), size=self.size, mode="bilinear", align_corners=False, antialias=True)
        t = _logit(x) if self.squash_mode == "sigmoid" else x - (COLOR_MEAN.view(1, 3, 1, 1) if self.decorrelated else 0)
        if self.decorrelated:
            t = recorrelate(t)
        spec = torch.fft.rfft2(t * 4.0, norm="ortho") / self.scale
        return torch.view_as_real(spec)

    def encode(self, images):
        return [self._inverse(images)]

    def forward(self):
        h, w = self.size
        spec = torch.view_as_complex(self.spectrum) * self.scale
        t = torch.fft.irfft2(spec, s=(h, w), norm="ortho") / 4.0
        if self.decorrelated:
            t = decorrelate(t)
        return squash(t, self.squash_mode, self.decorrelated)


class MacoParam(ImageParam):
    """MACO (Fel et al. 2023): a fixed natural-image magnitude spectrum, optimized phase.

    ``magnitude`` is (3, H, W//2+1), computed from real photos by
    :func:`neuronscope.optim.spectrum.natural_magnitude`. The image is the inverse
    FFT, standardized per row, then squashed with a sigmoid.
    """

    def __init__(self, batch, size, seeds, magnitude: torch.Tensor, *, contrast=1.5, init=None):
        super().__init__()
        self.batch, self.size, self.contrast = batch, size, contrast
        self.register_buffer("magnitude", magnitude.float())
        phase = _per_row_normal(tuple(magnitude.shape), seeds, math.pi)
        if init is not None:
            x = F.interpolate(init.float(), size=size, mode="bilinear", align_corners=False, antialias=True)
            phase = torch.angle(torch.fft.rfft2(x - x.mean(dim=(-1, -2), keepdim=True), norm="ortho"))
        self.phase = nn.Parameter(phase)

    def encode(self, images):
        # the image before the squash, up to MACO's own standardization: only its phase is kept
        t = _logit(images.float()) / self.contrast
        return [torch.angle(torch.fft.rfft2(t - t.mean(dim=(-1, -2), keepdim=True), norm="ortho"))]

    def forward(self):
        spec = torch.polar(self.magnitude.expand_as(self.phase), self.phase)
        t = torch.fft.irfft2(spec, s=self.size, norm="ortho")
        t = t - t.mean(dim=(1, 2, 3), keepdim=True)
        t = t / (t.flatten(1).std(dim=1).view(-1, 1, 1, 1) + 1e-6)
        return torch.sigmoid(self.contrast * t)


class RawCaffeParam(ImageParam):
    """Pixels in 0-255 mean-subtracted RGB, as in Yosinski et al. 2015 (no squash).

    The image is clamp((p + mean) / 255, 0, 1). Updated by the regularized
    gradient step of :mod:`neuronscope.optim.regularizers`, not by Adam.
    """

    MEAN = torch.tensor([0.485, 0.456, 0.406]) * 255.0

    def __init__(self, batch, size, seeds, *, std=10.0, init=None):
        super().__init__()
        self.batch, self.size = batch, size
        p = _per_row_normal((3, *size), seeds, std)
        if init is not None:
            x = F.interpolate(init.float(), size=size, mode="bilinear", align_corners=False, antialias=True)
            p = p + x * 255.0 - self.MEAN.view(1, 3, 1, 1)
        self.pixels = nn.Parameter(p)

    def encode(self, images):
        return [images.float() * 255.0 - self.MEAN.to(images.device).view(1, 3, 1, 1)]

    def forward(self):
        mean = self.MEAN.to(self.pixels).view(1, 3, 1, 1)
        return ((self.pixels + mean) / 255.0).clamp(0, 1)


def make_param(kind: str, batch: int, size: int | tuple[int, int], seeds: Sequence[int], *, init=None, **kw) -> ImageParam:
    """A parameterization by name: pixel, fft, maco, caffe."""
    size = (size, size) if isinstance(size, int) else tuple(size)
    if kind == "pixel":
        return PixelParam(batch, size, seeds, init=init, **kw)
    if kind == "fft":
        return FFTParam(batch, size, seeds, init=init, **kw)
    if kind == "maco":
        from .spectrum import natural_magnitude

        return MacoParam(batch, size, seeds, natural_magnitude(size), init=init, **kw)
    if kind == "caffe":
        return RawCaffeParam(batch, size, seeds, init=init, **kw)
    raise ValueError(f"unknown parameterization {kind!r}")
