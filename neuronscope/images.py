"""Reading any user image, converting between images and tensors, and grids.

``load_image`` turns whatever a user has (JPEG, PNG, WebP, BMP, TIFF; grayscale,
RGBA, palette, CMYK, 16-bit; EXIF-rotated) into an RGB PIL image, or raises a
:class:`NeuronscopeError` that names the file and the problem; decoding memory is
bounded (:mod:`neuronscope.decode`). Writing files lives in
:mod:`neuronscope.atomic` and output folders in :mod:`neuronscope.outdir`; their
functions are importable from here too.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, UnidentifiedImageError

from .atomic import (  # noqa: F401 - writers are importable from here as before
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    check_finite_tensor,
    png_bytes,
    save_png,
)
from .decode import MAX_PIXELS, decode_rgb, to_rgb
from .errors import NeuronscopeError
from .outdir import fresh_dir, prepare_output_dir  # noqa: F401
from .text import draw_line
from .text import font as text_font

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".ppm", ".pgm"}
BACKGROUND = (255, 255, 255)  # transparent pixels are composited on white
# Pillow's process-wide settings (LOAD_TRUNCATED_IMAGES, MAX_IMAGE_PIXELS) are the
# user's: neuronscope never changes them; it refuses images above decode.MAX_PIXELS
# itself, before decoding them.


_LIMIT = "the limit is {:.0f} megapixels. Scale it down first".format(MAX_PIXELS / 1e6)


def _to_rgb(img: Image.Image) -> Image.Image:
    return to_rgb(img, BACKGROUND)


def load_image(path: str | os.PathLike) -> Image.Image:
    """An RGB image from any common file, upright per its EXIF orientation."""
    p = Path(path)
    if not p.exists():
        raise NeuronscopeError(f"image file not found: {p}")
    if p.is_dir():
        raise NeuronscopeError(f"{p} is a folder, not an image file")
    if p.stat().st_size == 0:
        raise NeuronscopeError(f"image file {p} is empty (0 bytes)")
    try:
        with Image.open(p) as img:
            rgb = decode_rgb(img, f"image file {p}", background=BACKGROUND)
    except UnidentifiedImageError as e:
        raise NeuronscopeError(
            f"{p} is not an image neuronscope can read (valid: JPEG, PNG, WebP, BMP, TIFF, GIF)"
        ) from e
    except PermissionError as e:
        raise NeuronscopeError(f"image file {p} cannot be read: permission denied") from e
    except Image.DecompressionBombError as e:
        raise NeuronscopeError(f"image file {p} is too large to load ({e}); {_LIMIT}") from e
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise NeuronscopeError(f"image file {p} is corrupt or truncated ({e})") from e
    if min(rgb.size) < 1:
        raise NeuronscopeError(f"image file {p} has no pixels")
    return rgb


def load_image_bytes(data: bytes, name: str = "upload") -> Image.Image:
    """Like :func:`load_image`, for bytes received over a network."""
    if not data:
        raise NeuronscopeError(f"{name} is empty")
    try:
        with Image.open(io.BytesIO(data)) as img:
            return decode_rgb(img, name, background=BACKGROUND)
    except UnidentifiedImageError as e:
        raise NeuronscopeError(f"{name} is not an image (valid: JPEG, PNG, WebP, BMP, TIFF, GIF)") from e
    except Image.DecompressionBombError as e:
        raise NeuronscopeError(f"{name} is too large to load ({e}); {_LIMIT}") from e
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise NeuronscopeError(f"{name} is corrupt or truncated ({e})") from e


def center_crop_resize(img: Image.Image, size: int, crop_fraction: float = 0.875) -> Image.Image:
    """Evaluation transform: short side to size/crop_fraction, then a centre crop.

    Only the cropped region is resampled (``resize(box=...)``), so the work and
    memory do not grow with the long side (a 60000 x 1 strip costs what a 1 x 1 does).
    """
    w, h = img.size
    scale = round(size / crop_fraction) / min(w, h)
    # the resize-then-crop of the evaluation transform, with the same sampling grid: the whole image
    # scaled to (rw, rh) and the centre size x size pixels kept, computed as one resize of the
    # matching source box
    rw, rh = max(size, round(w * scale)), max(size, round(h * scale))
    left, top = (rw - size) // 2, (rh - size) // 2
    sx, sy = rw / w, rh / h
    box = (left / sx, top / sy, (left + size) / sx, (top + size) / sy)
    return img.resize((size, size), Image.BICUBIC, box=box)


def pil_to_tensor(img: Image.Image) -> torch.Tensor:
    """(3, H, W) float tensor in [0, 1]."""
    return torch.from_numpy(np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0).permute(2, 0, 1).contiguous()


def tensor_to_pil(x: torch.Tensor) -> Image.Image:
    """A (3, H, W) or (H, W) tensor in [0, 1] as an 8-bit image (NaN or inf: :class:`NotFiniteError`)."""
    x = x.detach().float().cpu()
    check_finite_tensor(x, "an image")
    x = x.clamp(0, 1)
    if x.dim() == 3:
        x = x.permute(1, 2, 0)
    a = (x.numpy() * 255.0 + 0.5).astype(np.uint8)
    return Image.fromarray(a)


def load_batch(paths: Sequence[str | os.PathLike], size: int, crop_fraction: float = 0.875) -> torch.Tensor:
    """A (B, 3, size, size) batch with the evaluation transform."""
    return torch.stack([pil_to_tensor(center_crop_resize(load_image(p), size, crop_fraction)) for p in paths])


def list_images(folder: str | os.PathLike, recursive: bool = True) -> list[Path]:
    """Image files in a folder, sorted; a clear error for a missing or empty folder."""
    d = Path(folder)
    if not d.exists():
        raise NeuronscopeError(f"image folder not found: {d}")
    if not d.is_dir():
        raise NeuronscopeError(f"{d} is not a folder")
    it = d.rglob("*") if recursive else d.iterdir()
    files = sorted(p for p in it if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise NeuronscopeError(
            f"no images in {d} (looked for {', '.join(sorted(IMAGE_SUFFIXES))}{' recursively' if recursive else ''})"
        )
    return files


def first_readable_image(folder: str | os.PathLike, option: str = "--images") -> Path:
    """The first image file in ``folder`` whose header can be read; an error naming the folder if none can."""
    files = list_images(folder)
    first_problem = None
    for p in files:
        try:
            with Image.open(p) as img:
                w, h = img.size
            if w >= 1 and h >= 1:
                return p
        except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as e:
            first_problem = first_problem or f"{p.name}: {type(e).__name__}"
    raise NeuronscopeError(
        f"{option} {folder} holds no readable image: none of its {len(files)} image file(s) can be opened "
        f"(first: {first_problem}); valid: a folder with at least one JPEG, PNG, WebP, BMP, TIFF or GIF image"
    )


def iter_batches(items: Sequence, batch_size: int) -> Iterator[Sequence]:
    for i in range(0, len(items), batch_size):
        yield items[i : i + batch_size]


# ---------------------------------------------------------------- grids

def labelled_grid(
    images: Sequence[Image.Image | torch.Tensor],
    captions: Sequence[str] | None = None,
    *,
    columns: int | None = None,
    cell: int | None = None,
    caption_lines: int = 2,
    pad: int = 4,
    background=(255, 255, 255),
) -> Image.Image:
    """Images tiled in a near-square grid, each with a caption of up to ``caption_lines`` lines."""
    pics = [tensor_to_pil(im) if isinstance(im, torch.Tensor) else im for im in images]
    if not pics:
        raise NeuronscopeError("nothing to put in the grid")
    n = len(pics)
    columns = columns or int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / columns))
    cell = cell or max(p.size[0] for p in pics)
    font = text_font(11)
    text_h = 13 * caption_lines if captions else 0
    W = columns * (cell + pad) + pad
    H = rows * (cell + text_h + pad) + pad
    sheet = Image.new("RGB", (W, H), background)
    draw = ImageDraw.Draw(sheet)
    for i, pic in enumerate(pics):
        r, c = divmod(i, columns)
        x0, y0 = pad + c * (cell + pad), pad + r * (cell + text_h + pad)
        sheet.paste(pic.convert("RGB").resize((cell, cell), Image.LANCZOS), (x0, y0))
        if captions:
            lines = str(captions[i]).split("\n")[:caption_lines]
            for j, line in enumerate(lines):
                max_chars = max(4, cell // 6)
                draw_line(draw, (x0, y0 + cell + 1 + 13 * j), line[:max_chars], font, 11, (20, 20, 20))
    return sheet


def resize_tensor(x: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    if isinstance(size, int):
        size = (size, size)
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)


def as_paths(items: Iterable[str | os.PathLike]) -> list[Path]:
    return [Path(i) for i in items]
