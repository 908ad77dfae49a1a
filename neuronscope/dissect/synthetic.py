"""Small synthetic segmentation datasets in the dissection format.

- :func:`make_shapes_dataset`: red squares and blue circles pasted on gray
  noise (pixel concepts ``red square`` and ``blue circle``, category
  ``shape``); used by the tests, with a network whose planted units detect them.
- :func:`make_colour_dataset`: real photos labelled per pixel with the eleven
  basic colour terms (black, blue, brown, gray, green, orange, pink, purple,
  red, white, yellow; category ``color``), like Broden's colour concepts: each
  pixel of a lightly blurred photo takes the nearest colour prototype in CIE
  Lab, or stays unlabelled (0) when no prototype is within ``max_distance``.
  Enough for an end-to-end dissection of a real model without Broden.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageFilter

from ..errors import NeuronscopeError
from ..images import atomic_write_bytes, atomic_write_text, center_crop_resize, load_image, prepare_output_dir

# Colour prototypes (sRGB 0-255) for the eleven basic colour terms; chosen here by hand.
COLOURS = {
    "black": (20, 20, 20),
    "blue": (40, 80, 190),
    "brown": (115, 70, 35),
    "gray": (128, 128, 128),
    "green": (60, 140, 50),
    "orange": (235, 130, 30),
    "pink": (235, 150, 180),
    "purple": (115, 50, 140),
    "red": (190, 30, 35),
    "white": (240, 240, 240),
    "yellow": (235, 210, 50),
}


def _png(a: np.ndarray) -> bytes:
    """uint8 (H, W) -> 8-bit grayscale PNG; uint8 (H, W, 3) -> RGB PNG."""
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


def _write_tables(out: Path, concepts: Sequence[tuple[int, str, str]], rows: Sequence[tuple[str, str]]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["id", "name", "category"])
    w.writerows(concepts)
    atomic_write_text(out / "concepts.csv", buf.getvalue())
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["image", "mask"])
    w.writerows(rows)
    atomic_write_text(out / "index.csv", buf.getvalue())


def make_shapes_dataset(out: str | Path, n: int = 40, size: int = 64, *, seed: int = 0, p_square: float = 0.4,
                        p_circle: float = 0.4, overwrite: bool = False) -> Path:
    """Gray-noise images with red squares (id 1) and blue circles (id 2); returns the folder."""
    out = prepare_output_dir(out, overwrite=overwrite)
    rng = np.random.default_rng(seed)
    rows = []
    yy, xx = np.mgrid[0:size, 0:size]
    for i in range(n):
        img = rng.uniform(0.3, 0.7, size=(size, size, 3))
        mask = np.zeros((size, size), dtype=np.uint8)
        if rng.random() < p_square:
            s = int(rng.integers(size // 10, size // 6 + 1))
            x0, y0 = rng.integers(0, size - s, size=2)
            red = rng.uniform(0.85, 1.0)
            img[y0 : y0 + s, x0 : x0 + s] = (red, rng.uniform(0, 0.15), rng.uniform(0, 0.15))
            mask[y0 : y0 + s, x0 : x0 + s] = 1
        if rng.random() < p_circle:
            r = rng.uniform(size / 20, size / 12)
            cx, cy = rng.uniform(r, size - r, size=2)
            disk = (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
            img[disk] = (rng.uniform(0, 0.15), rng.uniform(0, 0.15), rng.uniform(0.85, 1.0))
            mask[disk] = 2
        name = f"{i:04d}.png"
        atomic_write_bytes(out / "images" / name, _png((img * 255 + 0.5).astype(np.uint8)))
        atomic_write_bytes(out / "masks" / name, _png(mask))
        rows.append((name, name))
    _write_tables(out, [(1, "red square", "shape"), (2, "blue circle", "shape")], rows)
    return out


def colour_labels(rgb: np.ndarray, max_distance: float = 28.0, blur: float = 1.5) -> np.ndarray:
    """(H, W) colour ids (1..11 in COLOURS order; 0 = no prototype within max_distance in Lab)."""
    from skimage.color import rgb2lab

    img = Image.fromarray(rgb)
    if blur > 0:
        img = img.filter(ImageFilter.GaussianBlur(blur))
    lab = rgb2lab(np.asarray(img, dtype=np.float64) / 255.0)
    protos = rgb2lab(np.array(list(COLOURS.values()), dtype=np.float64)[None] / 255.0)[0]
    d = np.linalg.norm(lab[:, :, None, :] - protos[None, None], axis=-1)
    ids = d.argmin(-1) + 1
    ids[d.min(-1) > max_distance] = 0
    return ids.astype(np.uint8)


def make_colour_dataset(photos: Sequence[str | Path], out: str | Path, size: int = 224, *, max_distance: float = 28.0,
                        overwrite: bool = False, progress: bool = True) -> Path:
    """Centre-cropped ``size`` px photos with per-pixel colour-term masks; returns the folder."""
    from tqdm.auto import tqdm

    photos = list(photos)
    if not photos:
        raise NeuronscopeError("no photos given for the colour dataset")
    out = prepare_output_dir(out, overwrite=overwrite)
    rows = []
    for i, p in enumerate(tqdm(photos, desc="colour masks", disable=not progress, leave=False)):
        rgb = np.asarray(center_crop_resize(load_image(p), size))
        name = f"{i:05d}.png"
        atomic_write_bytes(out / "images" / f"{i:05d}.jpg", _jpeg(rgb))
        atomic_write_bytes(out / "masks" / name, _png(colour_labels(rgb, max_distance)))
        rows.append((f"{i:05d}.jpg", name))
    _write_tables(out, [(k + 1, name, "color") for k, name in enumerate(COLOURS)], rows)
    return out


def _jpeg(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=92)
    return buf.getvalue()
