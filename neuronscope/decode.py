"""Decoding images with bounded memory.

A few hundred bytes of PNG can describe a 60000 x 60000 picture, and a 16-bit
one takes twice the memory of an 8-bit one. Before any pixel is decoded the
header's size is checked against :data:`MAX_PIXELS` (an error names the size and
the limit), JPEGs are decoded directly at a reduced scale when they are much
larger than :data:`MAX_SIDE`, and every decode holds its estimated memory from a
process-wide :class:`DecodeBudget` while it runs, so many uploads at once (the
live viewer) wait for each other instead of adding up.
"""

from __future__ import annotations

import threading
import time

import numpy as np
from PIL import Image, ImageOps

from .errors import NeuronscopeError

MAX_PIXELS = 64_000_000  # one image: 8000 x 8000
MAX_SIDE = 4096  # larger JPEGs are decoded at 1/2, 1/4 or 1/8 scale (no visible loss at network sizes)
# bytes per pixel of PIL's decoded modes (RGB and friends are stored with 4 bytes)
_BYTES = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16B": 2, "I;16L": 2, "I;16N": 2, "LA": 4, "PA": 4, "La": 4,
          "RGB": 4, "RGBA": 4, "RGBa": 4, "RGBX": 4, "CMYK": 4, "YCbCr": 4, "LAB": 4, "HSV": 4, "I": 4, "F": 4}


def decode_cost(size: tuple[int, int], mode: str) -> int:
    """Peak bytes to decode an image of ``size`` and ``mode`` and convert it to RGB (decoded + converted + a temporary)."""
    w, h = size
    return w * h * (_BYTES.get(mode, 8) + 4 + 4)


class DecodeBudget:
    """At most ``limit`` bytes of decoding in flight in this process; the rest waits (up to ``timeout`` s)."""

    def __init__(self, limit: int, timeout: float = 60.0):
        self.limit = int(limit)
        self.timeout = timeout
        self.in_use = 0
        self.peak = 0
        self._cond = threading.Condition()

    def acquire(self, n: int, name: str) -> None:
        if n > self.limit:
            raise NeuronscopeError(
                f"{name} needs about {n / 2**20:.0f} MB to decode; the limit is {self.limit / 2**20:.0f} MB"
            )
        deadline = time.monotonic() + self.timeout
        with self._cond:
            while self.in_use + n > self.limit:
                left = deadline - time.monotonic()
                if left <= 0 or not self._cond.wait(left):
                    if self.in_use + n > self.limit:
                        raise NeuronscopeError(f"{name} could not be decoded: the server is busy decoding other images")
            self.in_use += n
            self.peak = max(self.peak, self.in_use)

    def release(self, n: int) -> None:
        with self._cond:
            self.in_use -= n
            self._cond.notify_all()


BUDGET = DecodeBudget(1 << 30)  # 1 GiB of decoding at any moment, across threads


def check_header(img: Image.Image, name: str, max_pixels: int | None = None) -> None:
    """Refuse an image whose declared size is empty or larger than ``max_pixels`` (before decoding it)."""
    max_pixels = MAX_PIXELS if max_pixels is None else max_pixels
    w, h = img.size
    if w < 1 or h < 1:
        raise NeuronscopeError(f"{name} has no pixels ({w}x{h})")
    if w * h > max_pixels:
        raise NeuronscopeError(
            f"{name} is {w}x{h} pixels ({w * h / 1e6:.1f} megapixels); the limit is {max_pixels / 1e6:.0f} "
            "megapixels. Scale it down first"
        )


def to_rgb(img: Image.Image, background=(255, 255, 255)) -> Image.Image:
    """Any PIL mode as RGB; 16-bit and 32-bit values scaled to 8 bits with little extra memory."""
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        a = np.asarray(img)
        if a.dtype.kind == "u" and a.dtype.itemsize == 2:
            top = 65535  # 16-bit modes always span 0..65535 (a dark 16-bit image must stay dark)
        else:  # 32-bit "I"/"F" carry no depth: guess it from the values
            peak = float(a.max()) if a.size else 0.0
            top = 65535 if peak > 255 else (1 if mode == "F" and peak <= 1.0 else 255)
        out = np.empty(a.shape, np.uint8)
        for r in range(0, a.shape[0], 1024):  # row chunks: the float temporary stays small
            chunk = np.rint(a[r:r + 1024].astype(np.float32) * np.float32(255.0 / top))
            out[r:r + 1024] = np.clip(chunk, 0, 255)
        del a
        return Image.fromarray(out, "L").convert("RGB")
    if mode == "P":
        img = img.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "RGBa", "La", "PA"):
        rgba = img.convert("RGBA")
        base = Image.new("RGBA", rgba.size, tuple(background) + (255,))
        return Image.alpha_composite(base, rgba).convert("RGB")
    # CMYK: PIL's conversion handles Adobe's inverted JPEG CMYK on load
    return img.convert("RGB")


def decode_rgb(img: Image.Image, name: str, *, max_pixels: int | None = None, budget: DecodeBudget | None = None,
               background=(255, 255, 255)) -> Image.Image:
    """Decode an opened (not yet loaded) image to an upright RGB image, within the pixel limit and the budget."""
    check_header(img, name, max_pixels)
    if img.format == "JPEG" and max(img.size) > 2 * MAX_SIDE:
        img.draft("RGB", (MAX_SIDE, MAX_SIDE))  # DCT scaling: decode at 1/2..1/8 directly
    budget = BUDGET if budget is None else budget
    cost = decode_cost(img.size, img.mode)
    budget.acquire(cost, name)
    try:
        img.load()
        return to_rgb(ImageOps.exif_transpose(img), background)
    finally:
        budget.release(cost)
