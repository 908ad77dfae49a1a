"""The average magnitude spectrum of natural photographs, for the MACO parameterization.

Computed here from real photos that ship offline (scikit-image and scikit-learn
samples, plus the offline photo set when it exists), never downloaded, and cached
per size under ``~/.cache/neuronscope``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ..images import center_crop_resize, load_image, pil_to_tensor


def _cache_dir() -> Path:
    return Path(os.environ.get("NEURONSCOPE_CACHE", Path.home() / ".cache" / "neuronscope"))


def _sample_photos() -> list[torch.Tensor]:
    """Real photos available offline, as [0,1] tensors."""
    from PIL import Image

    photos = []
    try:
        import skimage.data as data

        for name in ("chelsea", "coffee", "astronaut", "rocket"):
            photos.append(Image.fromarray(np.asarray(getattr(data, name)())))
    except Exception:  # noqa: BLE001 - optional source
        pass
    try:
        from sklearn.datasets import load_sample_images

        photos += [Image.fromarray(a) for a in load_sample_images().images]
    except Exception:  # noqa: BLE001
        pass
    try:
        from ..photoset import default_photoset_dir, list_photos

        d = default_photoset_dir()
        if (Path(d) / "manifest.json").exists():
            for entry in list_photos(d)[:200]:
                photos.append(load_image(Path(d) / entry["file"]))
    except Exception:  # noqa: BLE001
        pass
    return photos


def compute_magnitude(photos, size: tuple[int, int], crops_per_photo: int = 4, seed: int = 0) -> torch.Tensor:
    """Mean |rfft2| per colour channel over random crops of the photos, (3, H, W//2+1)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    h, w = size
    total, n = None, 0
    for img in photos:
        if not isinstance(img, Image.Image):
            img = Image.fromarray(np.asarray(img))
        for i in range(crops_per_photo):
            frac = 0.875 if i == 0 else float(rng.uniform(0.4, 1.0))
            x = pil_to_tensor(center_crop_resize(img, max(h, w), frac))[:, :h, :w]
            x = x - x.mean(dim=(1, 2), keepdim=True)
            mag = torch.fft.rfft2(x, norm="ortho").abs()
            total = mag if total is None else total + mag
            n += 1
    if total is None:
        raise RuntimeError("no photos available to compute a natural-image spectrum")
    return total / n


def natural_magnitude(size: tuple[int, int]) -> torch.Tensor:
    """The cached natural-image magnitude spectrum for ``size``."""
    path = _cache_dir() / f"maco_magnitude_{size[0]}x{size[1]}.pt"
    if path.exists():
        return torch.load(path, weights_only=True)
    mag = compute_magnitude(_sample_photos(), size)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    torch.save(mag, tmp)
    os.replace(tmp, path)
    return mag
