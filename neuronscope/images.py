"""Reading any user image, and writing PNGs, grids and files atomically.

``load_image`` turns whatever a user has (JPEG, PNG, WebP, BMP, TIFF; grayscale,
RGBA, palette, CMYK, 16-bit; EXIF-rotated) into an RGB PIL image, or raises a
:class:`NeuronscopeError` that names the file and the problem.
"""

from __future__ import annotations

import io
import json
import os
import secrets
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont, ImageOps, UnidentifiedImageError

from .errors import NeuronscopeError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".ppm", ".pgm"}
BACKGROUND = (255, 255, 255)  # transparent pixels are composited on white
# Pillow's process-wide settings (LOAD_TRUNCATED_IMAGES, MAX_IMAGE_PIXELS) are the
# user's: neuronscope never changes them. With Pillow's defaults a truncated file is
# an error and an image above ~179 megapixels is refused as a decompression bomb.


def _to_rgb(img: Image.Image) -> Image.Image:
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        a = np.asarray(img, dtype=np.float64)
        # 16-bit modes always span 0..65535 (a dark 16-bit image must stay dark);
        # 32-bit "I"/"F" carry no depth, so guess it from the values.
        top = 65535.0 if mode.startswith("I;16") or a.max() > 255 else 255.0
        if mode == "F" and a.max() <= 1.0:
            top = 1.0
        a = np.clip(np.rint(a / top * 255.0), 0, 255).astype(np.uint8)
        return Image.fromarray(a, "L").convert("RGB")
    if mode == "P":
        img = img.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "RGBa", "La", "PA"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, BACKGROUND + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode == "CMYK":
        # PIL's CMYK->RGB conversion handles Adobe's inverted JPEG CMYK on load.
        return img.convert("RGB")
    return img.convert("RGB")


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
            img.load()
            img = ImageOps.exif_transpose(img)
            rgb = _to_rgb(img)
    except UnidentifiedImageError as e:
        raise NeuronscopeError(
            f"{p} is not an image neuronscope can read (valid: JPEG, PNG, WebP, BMP, TIFF, GIF)"
        ) from e
    except PermissionError as e:
        raise NeuronscopeError(f"image file {p} cannot be read: permission denied") from e
    except Image.DecompressionBombError as e:
        raise NeuronscopeError(f"image file {p} is too large to load ({e})") from e
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
            img.load()
            return _to_rgb(ImageOps.exif_transpose(img))
    except UnidentifiedImageError as e:
        raise NeuronscopeError(f"{name} is not an image (valid: JPEG, PNG, WebP, BMP, TIFF, GIF)") from e
    except Image.DecompressionBombError as e:
        raise NeuronscopeError(f"{name} is too large to load ({e})") from e
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise NeuronscopeError(f"{name} is corrupt or truncated ({e})") from e


def center_crop_resize(img: Image.Image, size: int, crop_fraction: float = 0.875) -> Image.Image:
    """Evaluation transform: short side to size/crop_fraction, then a centre crop."""
    short = round(size / crop_fraction)
    w, h = img.size
    scale = short / min(w, h)
    img = img.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BICUBIC)
    w, h = img.size
    left, top = (w - size) // 2, (h - size) // 2
    return img.crop((left, top, left + size, top + size))


def pil_to_tensor(img: Image.Image) -> torch.Tensor:
    """(3, H, W) float tensor in [0, 1]."""
    return torch.from_numpy(np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0).permute(2, 0, 1).contiguous()


def tensor_to_pil(x: torch.Tensor) -> Image.Image:
    """A (3, H, W) or (H, W) tensor in [0, 1] as an 8-bit image."""
    x = x.detach().float().cpu().clamp(0, 1)
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


def iter_batches(items: Sequence, batch_size: int) -> Iterator[Sequence]:
    for i in range(0, len(items), batch_size):
        yield items[i : i + batch_size]


# ---------------------------------------------------------------- atomic writes

def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write a file so that readers see the old file or the whole new one, never half."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    # not tempfile.mkstemp: its files are private (0600) and os.replace would keep that
    # mode, so outputs are created like any new file (0666 less the umask)
    while True:
        tmp = p.parent / f".{p.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            break
        except FileExistsError:
            continue
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p


def fresh_dir(parent: str | os.PathLike, prefix: str) -> Path:
    """A new, uniquely named folder in ``parent``, with the permissions of any new folder.

    For building an output folder and renaming it into place (tempfile.mkdtemp's
    folders are private, 0700, and would stay so after the rename).
    """
    parent = Path(parent)
    while True:
        d = parent / f"{prefix}{os.getpid()}.{secrets.token_hex(4)}"
        try:
            d.mkdir(0o777)
            return d
        except FileExistsError:
            continue


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, default=str) + "\n")


def save_png(img: Image.Image | torch.Tensor, path: str | os.PathLike) -> Path:
    if isinstance(img, torch.Tensor):
        img = tensor_to_pil(img)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return atomic_write_bytes(path, buf.getvalue())


def png_bytes(img: Image.Image | torch.Tensor, fmt: str = "PNG", **kw) -> bytes:
    if isinstance(img, torch.Tensor):
        img = tensor_to_pil(img)
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def prepare_output_dir(out: str | os.PathLike, *, overwrite: bool = False, resume: bool = False) -> Path:
    """An output folder that is new, or explicitly reused; never silently clobbered."""
    d = Path(out)
    if d.exists() and not d.is_dir():
        raise NeuronscopeError(f"output path {d} exists and is a file")
    if d.exists() and any(d.iterdir()) and not (overwrite or resume):
        raise NeuronscopeError(
            f"output folder {d} already exists and is not empty; choose another --out, "
            "or pass --overwrite to replace files in it"
        )
    d.mkdir(parents=True, exist_ok=True)
    return d


# ---------------------------------------------------------------- grids

def _font(size: int = 12):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


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
    font = _font(11)
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
                draw.text((x0, y0 + cell + 1 + 13 * j), line[:max_chars], fill=(20, 20, 20), font=font)
    return sheet


def resize_tensor(x: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    if isinstance(size, int):
        size = (size, size)
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)


def as_paths(items: Iterable[str | os.PathLike]) -> list[Path]:
    return [Path(i) for i in items]
