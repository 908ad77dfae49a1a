"""How natural a picture is: its share of fine detail, and its distance from photos in a judge's features.

* :func:`hf_share`: the fraction of an image's spectral power above a quarter of
  the Nyquist frequency (0.125 cycles/px), on the grayscale image resized to
  224 px, mean removed, under a Hann window. Divided by the median over real
  photos it is the **HF ratio**: 1 is as much fine detail as photos have; lucid
  renders sit near 5, a blur near 0.
* :func:`contrast` and :func:`colourfulness`: the luminance standard deviation and
  Hasler & Suesstrunk's (2003) colourfulness; a grey, flat render scores low on both
  (the offline photos' medians are about 0.21 and 32).
* :func:`kid`: the kernel inception distance (unbiased MMD^2 with the cubic
  polynomial kernel ``(a.b / d + 1)^3``), averaged over random subsets, between two
  sets of feature vectors.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

SIZE = 224
CUTOFF = 0.125  # cycles per pixel: a quarter of the Nyquist frequency


def _square(x: torch.Tensor, size: int = SIZE) -> torch.Tensor:
    h, w = x.shape[-2:]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    x = x[..., top:top + s, left:left + s]
    if s != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return x


def hf_share(images: torch.Tensor) -> torch.Tensor:
    """Per row: power above 0.125 cycles/px / total power, of (B, 3, H, W) images in [0, 1]."""
    x = _square(images.float().cpu())
    gray = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2])
    gray = gray - gray.mean(dim=(-1, -2), keepdim=True)
    win = torch.hann_window(SIZE, periodic=False)
    gray = gray * (win[:, None] * win[None, :])
    power = torch.fft.rfft2(gray).abs().pow(2)
    fy = torch.fft.fftfreq(SIZE)[:, None]
    fx = torch.fft.rfftfreq(SIZE)[None, :]
    high = (fx * fx + fy * fy).sqrt() > CUTOFF
    # rfft2 holds each column but the first (and Nyquist) once for two conjugate bins: weight them twice
    weight = torch.full((1, SIZE // 2 + 1), 2.0)
    weight[0, 0] = 1.0
    weight[0, -1] = 1.0
    p = power * weight
    return (p * high).sum(dim=(-1, -2)) / p.sum(dim=(-1, -2)).clamp_min(1e-20)


#: RGB -> (luminance, red-green, yellow-blue): the axes of :func:`contrast` and :func:`colourfulness`
#: (Hasler & Suesstrunk 2003)
OPPONENT = torch.tensor([[0.299, 0.587, 0.114], [1.0, -1.0, 0.0], [0.5, 0.5, -1.0]])
_OPPONENT_INV = torch.linalg.inv(OPPONENT)


def to_opponent(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) RGB -> (B, 3, H, W) luminance, red-green, yellow-blue (:data:`OPPONENT`)."""
    return torch.einsum("ij,bjhw->bihw", OPPONENT.to(images), images)


def from_opponent(opponent: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`to_opponent`."""
    return torch.einsum("ij,bjhw->bihw", _OPPONENT_INV.to(opponent), opponent)


def contrast(images: torch.Tensor) -> torch.Tensor:
    """Per row: the standard deviation of the luminance (0.299 R + 0.587 G + 0.114 B) of [0, 1] images."""
    x = images.float().cpu()
    return (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).flatten(1).std(dim=1)


def colourfulness(images: torch.Tensor) -> torch.Tensor:
    """Per row: Hasler & Suesstrunk's colourfulness on the 0-255 scale, sqrt(std_rg^2 + std_yb^2) +
    0.3 sqrt(mean_rg^2 + mean_yb^2) with rg = R - G and yb = (R + G) / 2 - B (grey: 0; photos: ~30)."""
    x = images.float().cpu().flatten(2) * 255.0
    rg = x[:, 0] - x[:, 1]
    yb = 0.5 * (x[:, 0] + x[:, 1]) - x[:, 2]
    return (rg.std(dim=1) ** 2 + yb.std(dim=1) ** 2).sqrt() + 0.3 * (rg.mean(dim=1) ** 2 + yb.mean(dim=1) ** 2).sqrt()


def kid(a: np.ndarray, b: np.ndarray, subsets: int = 100, subset_size: int = 100, seed: int = 0) -> tuple[float, float]:
    """Mean and std over random subsets of the unbiased MMD^2 (cubic polynomial kernel) between rows of a and b."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    d = a.shape[1]
    m = min(subset_size, len(a), len(b))
    if m < 2:
        raise ValueError("KID needs at least 2 samples in each set")
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(subsets):
        x = a[rng.choice(len(a), m, replace=False)]
        y = b[rng.choice(len(b), m, replace=False)]
        kxx = (x @ x.T / d + 1) ** 3
        kyy = (y @ y.T / d + 1) ** 3
        kxy = (x @ y.T / d + 1) ** 3
        mmd = ((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
               - 2 * kxy.mean())
        out.append(mmd)
    return float(np.mean(out)), float(np.std(out))
