"""Frames in, pictures out: the per-frame image work of the live viewer.

* :class:`LatestSlot` keeps only the newest frame of a connection, so the
  server never works through a backlog (stale frames are counted and dropped).
* :func:`decode_frame` checks an uploaded file (size cap, image-type sniffing,
  pixel cap) before it is decoded, and :func:`fit_square` makes it a square
  model input by centre-cropping or stretching.
* :func:`layer_grid` tiles all channels of a layer into **one** near-square
  picture (one image to encode and send, not one per channel), with the
  toolbox's display controls: a display scale (per channel, robust over the
  layer, or the whole layer's min..max), an optional per-channel boost
  ``max^-beta`` and a gamma; backward diffs in red/green (:func:`signed_colors`).
* :func:`unit_overlay` draws the selected unit's map over the input.
* :func:`encode` turns any of these arrays into JPEG, PNG or WebP bytes.
"""

from __future__ import annotations

import asyncio
import io
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..errors import NeuronscopeError
from ..images import load_image_bytes

# --------------------------------------------------------------------------- slot


class LatestSlot:
    """A one-place mailbox where a newer frame replaces an unprocessed older one.

    ``put`` never blocks; ``take`` waits until there is a frame or a ``poke``
    (a request to redo the last frame, e.g. after the user picked another
    unit) and returns the newest frame or ``None`` for a poke.
    """

    def __init__(self) -> None:
        self._item: Any = None
        self._event = asyncio.Event()
        self.received = 0
        self.dropped = 0

    def put(self, item: Any) -> None:
        if self._item is not None:
            self.dropped += 1
        self._item = item
        self.received += 1
        self._event.set()

    def poke(self) -> None:
        self._event.set()

    @property
    def pending(self) -> bool:
        return self._item is not None

    async def take(self) -> Any:
        await self._event.wait()
        self._event.clear()
        item, self._item = self._item, None
        return item


# --------------------------------------------------------------------------- input

ACCEPTED_TYPES = ("JPEG", "PNG", "WebP", "GIF", "BMP", "TIFF")


def sniff_image_type(data: bytes) -> str | None:
    """The image format named by the file's first bytes, or None if not accepted."""
    head = bytes(data[:16])
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head[:2] == b"BM":
        return "BMP"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    return None


def decode_frame(data: bytes, *, name: str = "upload", max_bytes: int = 20 << 20, max_pixels: int = 50_000_000) -> Image.Image:
    """An RGB image from uploaded bytes, after checking size, type and pixel count.

    Raises :class:`NeuronscopeError` with a message fit to show in the page.
    """
    if not data:
        raise NeuronscopeError(f"{name} is empty")
    if len(data) > max_bytes:
        raise NeuronscopeError(
            f"{name} is {len(data) / 1e6:.1f} MB; the limit is {max_bytes / 1e6:.0f} MB "
            "(start the server with a larger --max-upload-mb to allow it)"
        )
    kind = sniff_image_type(data)
    if kind is None:
        raise NeuronscopeError(f"{name} is not an image of an accepted type (valid: {', '.join(ACCEPTED_TYPES)})")
    try:
        with Image.open(io.BytesIO(data)) as probe:
            w, h = probe.size
    except Exception as e:  # noqa: BLE001 - any failure to read the header is a bad file
        raise NeuronscopeError(
            f"{name} is corrupt or truncated: it starts like a {kind} file but its header cannot be read ({e})"
        ) from e
    if w * h > max_pixels:
        raise NeuronscopeError(f"{name} is {w}x{h} pixels; the limit is {max_pixels / 1e6:.0f} megapixels")
    return load_image_bytes(data, name)


def fit_square(img: Image.Image, size: int, mode: str = "crop") -> Image.Image:
    """A size x size image: centre crop of the short side (``crop``) or ``stretch``."""
    if mode == "stretch":
        return img.resize((size, size), Image.BILINEAR) if img.size != (size, size) else img
    if mode != "crop":
        raise NeuronscopeError(f"unknown fit mode {mode!r}; valid: crop, stretch")
    w, h = img.size
    s = min(w, h)
    left, top = (w - s) // 2, (h - s) // 2
    if (w, h) != (s, s):
        img = img.crop((left, top, left + s, top + s))
    return img.resize((size, size), Image.BILINEAR) if img.size != (size, size) else img


def image_to_tensor(img: Image.Image) -> torch.Tensor:
    """(1, 3, H, W) float tensor in [0, 1]."""
    a = np.array(img.convert("RGB"), dtype=np.uint8)  # a writable copy for torch
    return torch.from_numpy(a).permute(2, 0, 1).unsqueeze(0).float().div_(255.0)


# --------------------------------------------------------------------------- layer grid

_BACKGROUND = 0.16  # gray between tiles, so a dead (black) channel is still visible as a tile


@dataclass(frozen=True)
class GridGeometry:
    """Where each channel's tile sits in the grid picture (for clicks and highlights)."""

    channels: int
    cols: int
    rows: int
    tile_h: int
    tile_w: int
    pad: int
    width: int
    height: int

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def grid_shape(channels: int) -> tuple[int, int]:
    """(cols, rows) of the near-square tiling of ``channels`` tiles."""
    cols = max(1, math.ceil(math.sqrt(channels)))
    return cols, max(1, math.ceil(channels / cols))


def as_maps(act: torch.Tensor) -> torch.Tensor:
    """One image's activation as (C, H, W): vectors become C maps of 1x1."""
    if act.dim() == 1:
        return act[:, None, None]
    if act.dim() == 3:
        return act
    raise NeuronscopeError(f"cannot show an activation of shape {tuple(act.shape)}; expected (C,H,W) or (C,)")


SCALES = ("channel", "robust", "layer")


def _sample(v: torch.Tensor, n: int = 200_000) -> torch.Tensor:
    flat = v.flatten()
    return flat if flat.numel() <= n else flat[:: math.ceil(flat.numel() / n)]


def _quantile(v: torch.Tensor, q: float) -> torch.Tensor:
    return torch.quantile(_sample(v).float(), q)


def scale_maps(maps: torch.Tensor, scale: str = "layer") -> torch.Tensor:
    """(C, H, W) activations to [0, 1] for display.

    ``layer``: the whole layer's min..max to 0..1 (the 2015 toolbox). ``robust``:
    the whole layer's 0.5th..99.5th percentile to 0..1, clipped, so a few
    extreme values do not wash every tile out. ``channel``: each channel's own
    min..max to 0..1, with a floor on the range (a tenth of the layer's robust
    range) so a nearly dead channel stays dark instead of showing amplified noise.
    """
    if scale not in SCALES:
        raise NeuronscopeError(f"unknown display scale {scale!r}; valid: {', '.join(SCALES)}")
    maps = maps.float()
    if scale == "layer":
        lo, hi = maps.min(), maps.max()
        return (maps - lo) / (hi - lo).clamp_min(1e-12)
    lo, hi = _quantile(maps, 0.005), _quantile(maps, 0.995)
    if scale == "robust":
        return ((maps - lo) / (hi - lo).clamp_min(1e-12)).clamp(0, 1)
    c = maps.shape[0]
    flat = maps.reshape(c, -1)
    clo = flat.amin(1).view(c, 1, 1)
    chi = flat.amax(1).view(c, 1, 1)
    span = (chi - clo).clamp_min(max(float(hi - lo) * 0.1, 1e-12))
    return ((maps - clo) / span).clamp(0, 1)


def scale_signed(d: torch.Tensor, scale: str = "layer") -> torch.Tensor:
    """(C, H, W) signed values (gradients) to [-1, 1] with 0 kept at 0.

    ``layer``: divided by the layer's max |d| (the 2015 toolbox); ``robust``: by
    its 99.5th percentile of |d|, clipped; ``channel``: by each channel's max |d|
    with the same floor as :func:`scale_maps`.
    """
    if scale not in SCALES:
        raise NeuronscopeError(f"unknown display scale {scale!r}; valid: {', '.join(SCALES)}")
    d = d.float()
    a = d.abs()
    if scale == "layer":
        return d / a.max().clamp_min(1e-20)
    q = _quantile(a, 0.995).clamp_min(1e-20)
    if scale == "robust":
        return (d / q).clamp(-1, 1)
    peak = a.reshape(a.shape[0], -1).amax(1).view(-1, 1, 1).clamp_min(float(q) * 0.1)
    return (d / peak).clamp(-1, 1)


def boost_and_gamma(v: torch.Tensor, boost: float = 0.0, gamma: float = 1.0) -> torch.Tensor:
    """The toolbox's per-channel boost ``max^-beta`` and gamma on [0, 1] maps (C, [3,] H, W)."""
    if boost:
        dims = tuple(range(1, v.dim()))
        peak = v.amax(dim=dims, keepdim=True).clamp_min(1e-6)
        v = v * peak.pow(-boost)
    if gamma != 1.0:
        v = v.clamp(0, 1).pow(gamma)
    return v.clamp(0, 1)


def normalize_layer(maps: torch.Tensor, boost: float = 0.0, gamma: float = 1.0, scale: str = "layer") -> torch.Tensor:
    """The layer display: ``scale`` (see :func:`scale_maps`), per-channel boost, gamma."""
    return boost_and_gamma(scale_maps(maps, scale), boost, gamma)


# Negative and positive diffs in the grid: red and green, as in the 2015 toolbox.
NEG_POS = (torch.tensor([1.0, 0.25, 0.25]), torch.tensor([0.3, 1.0, 0.3]))


def signed_colors(d: torch.Tensor, boost: float = 0.0, gamma: float = 1.0, scale: str = "robust") -> torch.Tensor:
    """(C, H, W) signed diffs to (C, 3, H, W) colours: black at 0, green positive, red negative."""
    s = scale_signed(d, scale)
    mag = boost_and_gamma(s.abs(), boost, gamma)
    neg, pos = NEG_POS
    col = torch.where((s >= 0)[:, None], pos.view(1, 3, 1, 1), neg.view(1, 3, 1, 1))
    return col * mag[:, None]


def layer_grid(
    act: torch.Tensor,
    *,
    boost: float = 0.0,
    gamma: float = 1.0,
    max_side: int = 1024,
    pad: int = 1,
    scale: str = "layer",
    signed: bool = False,
) -> tuple[np.ndarray, GridGeometry, torch.Tensor]:
    """All channels of one image's activation tiled into one uint8 picture.

    Gray for activations; with ``signed`` (backward diffs) an RGB picture with
    positive values green and negative red. Tiles are shrunk (area average) so
    the picture's longer side stays within ``max_side`` (shrunk by an integer
    factor). Returns the picture, its geometry and the displayed maps in [0, 1]
    at full resolution, (C, H, W) or (C, 3, H, W) when ``signed``.
    """
    maps = as_maps(act.detach().float().cpu())
    c, h, w = maps.shape
    v = signed_colors(maps, boost, gamma, scale) if signed else normalize_layer(maps, boost, gamma, scale)
    return tile_maps(v, max_side=max_side, pad=pad) + (v,)


def tile_maps(v: torch.Tensor, *, max_side: int = 1024, pad: int = 1) -> tuple[np.ndarray, GridGeometry]:
    """(C, H, W) gray or (C, 3, H, W) colour tiles in [0, 1] as one near-square uint8 grid picture."""
    colour = v.dim() == 4
    c, h, w = v.shape[0], v.shape[-2], v.shape[-1]
    cols, rows = grid_shape(c)
    fit = min((max_side - pad * (cols + 1)) / max(1, cols * w), (max_side - pad * (rows + 1)) / max(1, rows * h))
    factor = 1 if fit >= 1 else math.ceil(1 / fit)  # integer pooling: fast and exact
    flat = v.reshape(-1, h, w)
    tiles = flat if factor == 1 else F.avg_pool2d(flat[None], factor, ceil_mode=True)[0]
    th, tw = tiles.shape[-2:]
    k = 3 if colour else 1
    tiles = tiles.reshape(c, k, th, tw)
    canvas = torch.full((k, rows * (th + pad) + pad, cols * (tw + pad) + pad), _BACKGROUND)
    full = torch.full((rows * cols, k, th, tw), _BACKGROUND)  # cells past the last channel stay background
    full[:c] = tiles
    body = canvas[:, pad:, pad:].view(k, rows, th + pad, cols, tw + pad)
    body[:, :, :th, :, :tw] = full.view(rows, cols, k, th, tw).permute(2, 0, 3, 1, 4)
    pic = (canvas * 255.0 + 0.5).clamp(0, 255).to(torch.uint8)
    pic = pic.permute(1, 2, 0).contiguous().numpy() if colour else pic[0].numpy()
    geo = GridGeometry(c, cols, rows, th, tw, pad, pic.shape[1], pic.shape[0])
    return pic, geo


# --------------------------------------------------------------------------- unit views

# A perceptual dark-to-bright ramp (black, purple, orange, pale yellow).
_RAMP = torch.tensor(
    [[0.0, 0.0, 0.02], [0.25, 0.04, 0.42], [0.62, 0.16, 0.42], [0.93, 0.42, 0.17], [0.99, 0.82, 0.25], [0.99, 1.0, 0.75]]
)


def colormap(v: torch.Tensor) -> torch.Tensor:
    """(H, W) values in [0, 1] to (3, H, W) colours along a dark-to-bright ramp."""
    n = _RAMP.shape[0] - 1
    t = v.clamp(0, 1) * n
    i = t.floor().long().clamp(max=n - 1)
    f = (t - i).unsqueeze(-1)
    rgb = _RAMP[i] * (1 - f) + _RAMP[i + 1] * f
    return rgb.permute(2, 0, 1)


def unit_overlay(x: torch.Tensor, unit_map: torch.Tensor, alpha: float = 0.6) -> np.ndarray:
    """The unit's [0, 1] map, upsampled to the input, coloured and laid over it.

    ``x`` is (3, S, S) in [0, 1]; returns an (S, S, 3) uint8 picture.
    """
    s = x.shape[-2:]
    m = unit_map.float()[None, None]
    up = F.interpolate(m, size=s, mode="bilinear", align_corners=False)[0, 0] if m.shape[-2:] != s else m[0, 0]
    heat = colormap(up)
    out = x.float().cpu() * (1 - alpha) + heat * alpha
    return to_uint8(out)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """(3, H, W) or (H, W) in [0, 1] to an HWC / HW uint8 array."""
    x = x.clamp(0, 1).mul(255.0).add_(0.5).to(torch.uint8)
    if x.dim() == 3:
        x = x.permute(1, 2, 0)
    return x.contiguous().numpy()


# --------------------------------------------------------------------------- encoding

FORMATS = {"jpeg": ("JPEG", "image/jpeg"), "png": ("PNG", "image/png"), "webp": ("WEBP", "image/webp")}


def encode(pic: np.ndarray | Image.Image, fmt: str = "jpeg", quality: int = 85) -> tuple[bytes, str]:
    """Picture bytes and MIME type; ``fmt`` is jpeg, png or webp."""
    if fmt not in FORMATS:
        raise NeuronscopeError(f"unknown image format {fmt!r}; valid: {', '.join(FORMATS)}")
    pil_fmt, mime = FORMATS[fmt]
    img = pic if isinstance(pic, Image.Image) else Image.fromarray(pic)
    buf = io.BytesIO()
    if pil_fmt == "PNG":
        img.save(buf, "PNG", compress_level=1)
    elif pil_fmt == "WEBP":
        img.save(buf, "WEBP", quality=quality, method=0)
    else:
        img.save(buf, "JPEG", quality=quality)
    return buf.getvalue(), mime
