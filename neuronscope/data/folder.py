"""Streaming an image folder through a model in fixed batches.

Images are read with :func:`neuronscope.images.load_image` and brought to the
model's input size with the evaluation transform (short side to size/0.875,
centre crop), so any folder size works with bounded memory. The next batch is
decoded in a background thread while the current one runs through the model.

Batches start at fixed offsets (``start`` must be a multiple of the batch size
when resuming), so an interrupted and resumed pass sees exactly the same
batches as an uninterrupted one.

Unreadable files are not fatal: they are reported in ``Batch.failed`` and
their rows are left out of ``Batch.x``.
"""

from __future__ import annotations

import os
import random
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import torch
from PIL import Image

from ..errors import NeuronscopeError
from ..images import center_crop_resize, list_images, load_image, load_image_bytes, pil_to_tensor


@dataclass
class Batch:
    """One batch: the ids (positions in the path list) of the rows of ``x``."""

    start: int
    ids: list[int]
    x: torch.Tensor  # (B, 3, size, size) in [0, 1]
    failed: list[tuple[int, str]] = field(default_factory=list)  # (id, reason)


@dataclass(frozen=True)
class ImageBytes:
    """An image sent as bytes (to a worker that cannot see the file): its name, and its data or why it has none."""

    name: str
    data: bytes = b""
    error: str | None = None  # why the sender could not read the file

    @classmethod
    def read(cls, path: str | os.PathLike) -> "ImageBytes":
        try:
            return cls(str(path), Path(path).read_bytes())
        except FileNotFoundError:
            return cls(str(path), error=f"image file not found: {path}")
        except OSError as e:
            return cls(str(path), error=f"image file {path} cannot be read ({e.strerror or e})")


def folder_images(folder: str | os.PathLike, recursive: bool = True) -> list[Path]:
    """The sorted image files of a folder (a clear error for a missing or empty one)."""
    return list_images(folder, recursive=recursive)


def _load_one(source, size: int, crop_fraction: float) -> torch.Tensor:
    if isinstance(source, ImageBytes):
        if source.error:
            raise NeuronscopeError(source.error)
        img = load_image_bytes(source.data, source.name)
    else:
        img = load_image(source)
    return pil_to_tensor(center_crop_resize(img, size, crop_fraction))


def _load_batch(paths: Sequence, ids: Sequence[int], size: int, crop_fraction: float):
    rows, ok, failed = [], [], []
    for i, p in zip(ids, paths):
        try:
            rows.append(_load_one(p, size, crop_fraction))
            ok.append(i)
        except NeuronscopeError as e:
            failed.append((i, str(e)))
    x = torch.stack(rows) if rows else torch.zeros(0, 3, size, size)
    return ok, x, failed


def stream_batches(
    paths: Sequence,
    size: int,
    batch_size: int = 16,
    *,
    start: int = 0,
    end: int | None = None,
    crop_fraction: float = 0.875,
    progress: bool = True,
    desc: str = "images",
) -> Iterator[Batch]:
    """Yield :class:`Batch` objects over ``paths[start:end]`` with a progress bar.

    ``paths`` holds file paths or :class:`ImageBytes`; only the items from
    ``start`` to ``end`` are read (a worker may get a list filled only there).
    """
    from tqdm.auto import tqdm

    if batch_size < 1:
        raise NeuronscopeError(f"batch size must be at least 1, got {batch_size}")
    n = len(paths) if end is None else int(end)
    if not 0 <= start <= n <= len(paths):
        raise NeuronscopeError(f"images {start}..{n} are outside the image list 0..{len(paths)}")
    offsets = list(range(start, n, batch_size))
    bar = tqdm(total=n, initial=start, desc=desc, unit="img", disable=not progress, dynamic_ncols=True)
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ns-loader")

    def submit(off):
        ids = list(range(off, min(off + batch_size, n)))
        return pool.submit(_load_batch, [paths[i] for i in ids], ids, size, crop_fraction)

    try:
        pending = submit(offsets[0]) if offsets else None
        for j, off in enumerate(offsets):
            ok, x, failed = pending.result()
            pending = submit(offsets[j + 1]) if j + 1 < len(offsets) else None
            yield Batch(off, ok, x, failed)
            bar.update(len(ok) + len(failed))
    finally:
        bar.close()
        pool.shutdown(wait=True, cancel_futures=True)


# ---------------------------------------------------------------- augmented views

def random_view(img: Image.Image, size: int, rng: random.Random, min_area: float = 0.35) -> Image.Image:
    """A random resized crop (area ``min_area``..1, aspect 3/4..4/3) with a random flip."""
    w, h = img.size
    area = w * h
    for _ in range(10):
        a = rng.uniform(min_area, 1.0) * area
        r = pow(2.0, rng.uniform(-0.415, 0.415))  # log-uniform in 3/4..4/3
        cw, ch = int(round((a * r) ** 0.5)), int(round((a / r) ** 0.5))
        if 0 < cw <= w and 0 < ch <= h:
            x0, y0 = rng.randint(0, w - cw), rng.randint(0, h - ch)
            crop = img.crop((x0, y0, x0 + cw, y0 + ch))
            break
    else:
        s = min(w, h)
        crop = img.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))
    crop = crop.resize((size, size), Image.BICUBIC)
    if rng.random() < 0.5:
        crop = crop.transpose(Image.FLIP_LEFT_RIGHT)
    return crop


def image_views(
    path: str | os.PathLike, size: int, n_views: int, *, seed: int = 0, crop_fraction: float = 0.875
) -> list[torch.Tensor]:
    """``n_views`` (3, size, size) views of one image: the evaluation crop, then random crops/flips.

    The random views depend only on ``seed`` and the file name, so they are
    reproducible run to run.
    """
    img = load_image(path)
    views = [pil_to_tensor(center_crop_resize(img, size, crop_fraction))]
    rng = random.Random(f"{seed}:{Path(path).name}")
    for _ in range(n_views - 1):
        views.append(pil_to_tensor(random_view(img, size, rng)))
    return views
