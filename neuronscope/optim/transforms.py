"""Differentiable stochastic image transforms applied between the parameterization and the model.

Each transform is an ``nn.Module`` called as ``t(x, gen)`` with a
``torch.Generator`` so a render is reproducible. By default one draw is made per
batch (as Lucid does); ``per_row=True`` draws per row where the output size
allows it (jitter, rotate). No transform mixes rows. Parameters of the standard
set follow Lucid (docs/design.md section 4).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def _choice(values: Sequence, gen: torch.Generator | None, n: int = 1) -> list:
    idx = torch.randint(len(values), (n,), generator=gen)
    return [values[i] for i in idx.tolist()]


class Transform(nn.Module):
    def forward(self, x: torch.Tensor, gen: torch.Generator | None = None) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError


class Pad(Transform):
    def __init__(self, width: int, value: float = 0.5, mode: str = "constant"):
        super().__init__()
        self.width, self.value, self.mode = width, value, mode

    def forward(self, x, gen=None):
        w = self.width
        if self.mode == "constant":
            return F.pad(x, (w, w, w, w), mode="constant", value=self.value)
        return F.pad(x, (w, w, w, w), mode=self.mode)

    def extra_repr(self):
        return f"width={self.width}, value={self.value}"


class Jitter(Transform):
    """Random crop to (size - d), offsets in {0..d} per axis (Lucid's jitter)."""

    def __init__(self, d: int, per_row: bool = False):
        super().__init__()
        self.d, self.per_row = d, per_row

    def forward(self, x, gen=None):
        d = self.d
        h, w = x.shape[-2] - d, x.shape[-1] - d
        n = x.shape[0] if self.per_row else 1
        oy = torch.randint(d + 1, (n,), generator=gen).tolist()
        ox = torch.randint(d + 1, (n,), generator=gen).tolist()
        if n == 1:
            return x[..., oy[0] : oy[0] + h, ox[0] : ox[0] + w]
        return torch.stack([x[i, :, oy[i] : oy[i] + h, ox[i] : ox[i] + w] for i in range(n)])

    def extra_repr(self):
        return f"d={self.d}, per_row={self.per_row}"


class RandomScale(Transform):
    """Bilinear resize by a factor drawn from ``scales`` (once per batch)."""

    def __init__(self, scales: Sequence[float]):
        super().__init__()
        self.scales = list(scales)

    def forward(self, x, gen=None):
        s = _choice(self.scales, gen)[0]
        h, w = x.shape[-2:]
        size = (max(1, int(h * s)), max(1, int(w * s)))
        if size == (h, w):
            return x
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class RandomRotate(Transform):
    """Rotate by an angle (degrees) drawn from ``angles``; nearest or bilinear, zero fill."""

    def __init__(self, angles: Sequence[float], mode: str = "nearest", per_row: bool = False):
        super().__init__()
        self.angles, self.mode, self.per_row = list(angles), mode, per_row

    def forward(self, x, gen=None):
        n = x.shape[0] if self.per_row else 1
        deg = torch.tensor(_choice(self.angles, gen, n), dtype=x.dtype, device=x.device)
        if not self.per_row and float(deg[0]) == 0.0:
            return x
        rad = deg * math.pi / 180.0
        cos, sin = torch.cos(rad), torch.sin(rad)
        zero = torch.zeros_like(cos)
        theta = torch.stack([torch.stack([cos, -sin, zero], -1), torch.stack([sin, cos, zero], -1)], 1)
        theta = theta.expand(x.shape[0], 2, 3)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode=self.mode, padding_mode="zeros", align_corners=False)


class RandomCrop(Transform):
    """Crop a ``size`` square at a random position (once per batch)."""

    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def forward(self, x, gen=None):
        h, w = x.shape[-2:]
        s = min(self.size, h, w)
        oy = int(torch.randint(h - s + 1, (1,), generator=gen))
        ox = int(torch.randint(w - s + 1, (1,), generator=gen))
        return x[..., oy : oy + s, ox : ox + s]


def gaussian_kernel1d(sigma: float, device=None, dtype=torch.float32) -> torch.Tensor:
    radius = max(1, int(math.ceil(3 * sigma)))
    t = torch.arange(-radius, radius + 1, device=device, dtype=dtype)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


def gaussian_blur(x: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
    """Separable per-channel Gaussian blur with reflect padding; ``sigma`` may be per row."""
    if isinstance(sigma, torch.Tensor) and sigma.numel() > 1:
        return torch.stack([gaussian_blur(x[i : i + 1], float(s))[0] for i, s in enumerate(sigma)])
    sigma = float(sigma)
    if sigma <= 0:
        return x
    k = gaussian_kernel1d(sigma, x.device, x.dtype)
    r = (k.numel() - 1) // 2
    c = x.shape[1]
    pad_mode = "reflect" if min(x.shape[-2:]) > r else "replicate"
    y = F.pad(x, (r, r, 0, 0), mode=pad_mode)
    y = F.conv2d(y, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    y = F.pad(y, (0, 0, r, r), mode=pad_mode)
    return F.conv2d(y, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


class Blur(Transform):
    def __init__(self, sigma: float):
        super().__init__()
        self.sigma = sigma

    def forward(self, x, gen=None):
        return gaussian_blur(x, self.sigma)


class Resize(Transform):
    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def forward(self, x, gen=None):
        if tuple(x.shape[-2:]) == (self.size, self.size):
            return x
        return F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)


class Compose(Transform):
    def __init__(self, transforms: Sequence[Transform]):
        super().__init__()
        self.transforms = nn.ModuleList(transforms)

    def forward(self, x, gen=None):
        for t in self.transforms:
            x = t(x, gen)
        return x


def lucid_standard(per_row: bool = False) -> Compose:
    """Lucid's ``standard_transforms``: pad 12, jitter 8, scale 0.9-1.1, rotate ±10°, jitter 4."""
    return Compose([
        Pad(12, 0.5),
        Jitter(8, per_row),
        RandomScale([1 + (i - 5) / 50.0 for i in range(11)]),
        RandomRotate(list(range(-10, 11)) + [0] * 5, "nearest", per_row),
        Jitter(4, per_row),
    ])


def identity() -> Compose:
    return Compose([])
