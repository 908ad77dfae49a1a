"""The average magnitude spectrum of natural photographs, for the MACO parameterization.

It ships with neuronscope as a small data file (``data/maco_magnitude.npy``: the mean
``|rfft2|`` per colour channel of random crops of the 525 offline photos at 256 px,
float16), made by ``scripts/make_maco_spectrum.py``. Other sizes resample it over
normalized frequency (cycles per pixel), where natural images' spectra are close to
scale-invariant; MACO standardizes its image, so only the spectrum's shape matters.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

DATA = Path(__file__).resolve().parent / "data" / "maco_magnitude.npy"
REFERENCE = 256


def compute_magnitude(photos, size: tuple[int, int], crops_per_photo: int = 4, seed: int = 0) -> torch.Tensor:
    """Mean |rfft2| per colour channel over random crops of the photos (PIL images), (3, H, W//2+1)."""
    from ..images import center_crop_resize, pil_to_tensor

    rng = np.random.default_rng(seed)
    h, w = size
    total, n = None, 0
    for img in photos:
        for i in range(crops_per_photo):
            frac = 0.875 if i == 0 else float(rng.uniform(0.4, 1.0))
            x = pil_to_tensor(center_crop_resize(img, max(h, w), frac))[:, :h, :w]
            x = x - x.mean(dim=(1, 2), keepdim=True)
            mag = torch.fft.rfft2(x, norm="ortho").abs()
            total = mag if total is None else total + mag
            n += 1
    if total is None:
        raise ValueError("no photos to compute a natural-image spectrum from")
    return total / n


@lru_cache(maxsize=1)
def _reference() -> torch.Tensor:
    return torch.from_numpy(np.load(DATA).astype(np.float32))


@lru_cache(maxsize=8)
def _resampled(size: tuple[int, int]) -> torch.Tensor:
    ref = _reference()
    h, w = size
    if (h, w) == (REFERENCE, REFERENCE):
        return ref.clone()
    # put the zero frequency of the full (vertical) axis in the middle, resample, and put it back
    centred = torch.fft.fftshift(ref, dim=1)
    out = F.interpolate(centred[None], size=(h, w // 2 + 1), mode="bilinear", align_corners=True,
                        antialias=h < REFERENCE)[0]
    return torch.fft.ifftshift(out, dim=1).clamp_min(0)


def natural_magnitude(size: tuple[int, int]) -> torch.Tensor:
    """The natural-image magnitude spectrum for images of ``size``, (3, H, W//2+1)."""
    return _resampled(tuple(int(s) for s in size)).clone()
