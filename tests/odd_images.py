"""Image files of every kind a user may hand to neuronscope, written from a real photo.

Shared by test_images.py (the loader, file by file) and cli/test_cli.py (`neuronscope
classify` on all of them in one run). Each good file comes with the RGB picture
the loader should return, so tests compare pixels instead of trusting modes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

W, H = 96, 64  # small, not square: a transposed size is visible


@dataclass
class GoodImage:
    path: Path
    expected: np.ndarray  # (H, W, 3) uint8: what load_image should return
    tolerance: float  # mean absolute difference allowed (lossy formats need more)


def source_photo() -> Image.Image:
    """scikit-image's coffee photograph, shrunk (a real photo nobody here made)."""
    import skimage.data

    return Image.fromarray(skimage.data.coffee()).resize((W, H), Image.BICUBIC)


def _gray_rgb(a: np.ndarray) -> np.ndarray:
    return np.repeat(a[..., None], 3, axis=2)


def write_good_images(folder: Path) -> dict[str, GoodImage]:
    """One readable file per kind, with the picture the loader should produce."""
    folder.mkdir(parents=True, exist_ok=True)
    photo = source_photo()
    rgb = np.asarray(photo)
    out: dict[str, GoodImage] = {}

    def put(kind: str, name: str, expected: np.ndarray, tolerance: float) -> Path:
        p = folder / name
        out[kind] = GoodImage(p, expected, tolerance)
        return p

    for kind, name, tol in [
        ("jpeg", "photo.jpg", 4.0), ("png", "photo.png", 0.0), ("webp", "photo.webp", 6.0),
        ("bmp", "photo.bmp", 0.0), ("tiff", "photo.tiff", 0.0),
    ]:
        photo.save(put(kind, name, rgb, tol), quality=95)

    # GIF: a palette image (256 colours) - compare with its own palette rendering.
    gif = photo.quantize(256)
    gif.save(put("gif", "photo.gif", np.asarray(gif.convert("RGB")), 0.0))

    gray = photo.convert("L")
    gray.save(put("grayscale", "gray.png", _gray_rgb(np.asarray(gray)), 0.0))

    # RGBA: left half fully transparent (and black underneath) -> white after compositing.
    rgba = np.dstack([rgb, np.full((H, W), 255, np.uint8)])
    rgba[:, : W // 2, :3] = 0
    rgba[:, : W // 2, 3] = 0
    exp = rgb.copy()
    exp[:, : W // 2] = 255
    Image.fromarray(rgba, "RGBA").save(put("rgba", "rgba.png", exp, 0.0))

    # Gray + alpha (LA), half transparent alpha on the right half: a real blend with white.
    g = np.asarray(gray).astype(np.float64)
    alpha = np.full((H, W), 255, np.uint8)
    alpha[:, W // 2 :] = 128
    la = Image.fromarray(np.dstack([np.asarray(gray), alpha]), "LA")
    blend = g * alpha / 255.0 + 255.0 * (1 - alpha / 255.0)
    la.save(put("gray_alpha", "gray_alpha.png", _gray_rgb(np.round(blend).astype(np.uint8)), 1.0))

    pal = photo.quantize(32)
    pal.save(put("palette", "palette.png", np.asarray(pal.convert("RGB")), 0.0))

    # Palette with one transparent index: the pixels using it become white.
    pal_t = photo.quantize(32)
    idx = np.asarray(pal_t)
    clear = int(idx[0, 0])
    exp = np.asarray(pal_t.convert("RGB")).copy()
    exp[idx == clear] = 255
    pal_t.save(put("palette_transparent", "palette_transparent.png", exp, 0.0), transparency=clear)

    # CMYK JPEG (as print workflows write them): colours must come back close to the photo.
    photo.convert("CMYK").save(put("cmyk_jpeg", "cmyk.jpg", rgb, 12.0), quality=95)

    # 16-bit grayscale PNG: a full-range ramp; 8-bit output must be scaled (x / 257), not clipped.
    ramp16 = np.tile(np.linspace(0, 65535, W), (H, 1)).astype(np.uint16)
    Image.fromarray(ramp16).save(put("gray16", "gray16.png", _gray_rgb(np.round(ramp16 / 257.0).astype(np.uint8)), 1.0))

    # 16-bit RGB TIFF: Pillow cannot write 48-bit RGB, tifffile (a scikit-image dependency) can.
    import tifffile

    tifffile.imwrite(put("rgb16_tiff", "rgb16.tif", rgb, 1.0), rgb.astype(np.uint16) * 257)

    # EXIF orientation 6 (camera held rotated): pixels stored W x H, shown rotated 90 deg clockwise.
    exif = photo.getexif()
    exif[0x0112] = 6
    upright = np.asarray(photo.transpose(Image.Transpose.ROTATE_270))
    photo.save(put("exif_rotated", "rotated.jpg", upright, 6.0), exif=exif.tobytes(), quality=95)

    return out


def write_bad_files(folder: Path) -> dict[str, Path]:
    """Files that are not readable images, by the reason they are not."""
    folder.mkdir(parents=True, exist_ok=True)
    photo = source_photo()
    good = folder / "whole.jpg"
    photo.save(good)
    data = good.read_bytes()
    good.unlink()
    bad = {
        "truncated_jpeg": folder / "truncated.jpg",
        "corrupt_jpeg": folder / "corrupt.jpg",
        "empty": folder / "empty.jpg",
        "text": folder / "notes.jpg",
        "folder": folder / "album.jpg",
        "missing": folder / "missing.png",
    }
    bad["truncated_jpeg"].write_bytes(data[: len(data) // 2])
    broken = bytearray(data)  # full length, but a start-of-image marker inside the scan data
    sos = broken.find(b"\xff\xda")
    broken[sos + 30 : sos + 90] = b"\xff\xd8" * 30
    bad["corrupt_jpeg"].write_bytes(bytes(broken))
    bad["empty"].write_bytes(b"")
    bad["text"].write_text("these are my holiday notes, not a picture\n")
    bad["folder"].mkdir()
    return bad
