"""Receptive fields of units, from the network's geometry, and max-patch crops.

Two ways to find the input region a unit at (x, y) of a layer can see:

* :func:`chain_box` - the 2015 toolbox rule for a plain chain of convolutions
  and poolings: going from the unit's layer down to the input, an output range
  [a, b) becomes [a*s - p, (b-1)*s + k - p) per axis (kernel k, stride s,
  padding p).
* :func:`receptive_field` - for any network, including residual and depthwise
  ones (docs/design.md 5.4): the support of d(centre unit)/d(input), unioned over a few
  random inputs, gives the centre unit's box; other units use that box shifted
  by (unit offset) x stride, where stride = input size / map size.
* token layers (ViT patch tokens, :mod:`neuronscope.layouts`): attention lets
  every token see the whole image, so the gradient's support says nothing; a
  token's box is its own patch, the grid cell it was embedded from.

A max patch is the box of the unit at its argmax, cropped from the image the
network saw and clipped to it; clipped patches are placed at their offset on a
canvas of the centre unit's box size, so every patch of a layer has one size.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import torch
from PIL import Image

from .errors import NeuronscopeError
from .models.adapter import Model
from .taps import tap


def chain_box(specs: Sequence[tuple[int, int, int]], a: int, b: int | None = None) -> tuple[int, int]:
    """The input range [lo, hi) seen by output positions [a, b) of a chain of layers.

    ``specs`` are (kernel, stride, padding) per layer, from the input to the
    unit's layer, along one axis. The result is not clipped to the image.
    """
    lo, hi = a, (a + 1 if b is None else b)
    for k, s, p in reversed(list(specs)):
        lo, hi = lo * s - p, (hi - 1) * s + k - p
    return lo, hi


@dataclass(frozen=True)
class ReceptiveField:
    """Where the units of one layer look, for square inputs of ``input_size`` px."""

    layer: str
    input_size: int
    map_h: int  # 0 for layers without space (whole-image units)
    map_w: int
    stride_y: float
    stride_x: float
    centre_y: int
    centre_x: int
    box: tuple[int, int, int, int]  # centre unit: (x0, y0, x1, y1), half-open, in input pixels

    @property
    def spatial(self) -> bool:
        return self.map_h > 0 and self.map_w > 0

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the centre unit's box: the size of every max patch."""
        x0, y0, x1, y1 = self.box
        return x1 - x0, y1 - y0

    def unit_box(self, x: int, y: int) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1) of the unit at (x, y), shifted from the centre box, not clipped."""
        if not self.spatial or x < 0 or y < 0:
            return (0, 0, self.input_size, self.input_size)
        dx = int(round((x - self.centre_x) * self.stride_x))
        dy = int(round((y - self.centre_y) * self.stride_y))
        x0, y0, x1, y1 = self.box
        return (x0 + dx, y0 + dy, x1 + dx, y1 + dy)

    def crop(self, image: Image.Image, x: int, y: int, fill=(128, 128, 128)) -> Image.Image:
        """The max patch of the unit at (x, y) from ``image`` (the network's input, ``input_size`` px).

        Parts of the box outside the image stay ``fill`` on a canvas of the
        centre box's size, so border patches keep their offset.
        """
        if image.size != (self.input_size, self.input_size):
            image = image.resize((self.input_size, self.input_size), Image.BICUBIC)
        if not self.spatial or x < 0 or y < 0:
            return image.copy()
        x0, y0, x1, y1 = self.unit_box(x, y)
        canvas = Image.new("RGB", (x1 - x0, y1 - y0), fill)
        cx0, cy0 = max(0, x0), max(0, y0)
        cx1, cy1 = min(self.input_size, x1), min(self.input_size, y1)
        if cx1 > cx0 and cy1 > cy0:
            canvas.paste(image.crop((cx0, cy0, cx1, cy1)), (cx0 - x0, cy0 - y0))
        return canvas

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ReceptiveField":
        d = dict(d)
        d["box"] = tuple(d["box"])
        return cls(**d)


def receptive_field(
    model: Model,
    layer: str,
    size: int | None = None,
    *,
    n_inputs: int = 4,
    seed: int = 0,
    device: str | torch.device | None = None,
) -> ReceptiveField:
    """The receptive field of ``layer`` from the support of d(centre unit)/d(input).

    The centre unit is the position (W//2, H//2); its channels are combined
    with random weights so that no channel's gradient cancels another's. The
    gradient's nonzero pixels, unioned over ``n_inputs`` uniform random images,
    give the box. Layers without space (2-D outputs, ``logits``) see the whole
    image.
    """
    size = int(size or model.input_size)
    if layer == "input":
        return ReceptiveField(layer, size, size, size, 1.0, 1.0, size // 2, size // 2, (size // 2, size // 2, size // 2 + 1, size // 2 + 1))
    dev = torch.device(device) if device is not None else model.device
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n_inputs, 3, size, size, generator=gen).to(dev)
    with torch.enable_grad():
        x.requires_grad_(True)
        with tap(model, [layer], stop_early=True) as taps:
            taps.run(x)
            act = taps[layer]
            kind = taps.kinds.get(layer)
        if act.dim() == 4 and kind == "tokens":
            return token_receptive_field(layer, size, act.shape[-2], act.shape[-1])
        if act.dim() != 4:
            return ReceptiveField(layer, size, 0, 0, float(size), float(size), -1, -1, (0, 0, size, size))
        _, c, h, w = act.shape
        yc, xc = h // 2, w // 2
        weights = torch.randn(c, generator=gen).to(act.device, act.dtype)
        value = (act[:, :, yc, xc] * weights).sum()
        if not value.requires_grad:
            raise NeuronscopeError(f"layer {layer!r} does not depend on the input differentiably; no receptive field")
        (grad,) = torch.autograd.grad(value, x)
    support = grad.detach().abs().sum(dim=(0, 1)) > 0
    rows = torch.nonzero(support.any(dim=1)).flatten()
    cols = torch.nonzero(support.any(dim=0)).flatten()
    if len(rows) == 0:
        raise NeuronscopeError(
            f"the centre unit of {layer!r} had zero gradient for {n_inputs} random inputs; "
            "cannot find its receptive field (try more inputs)"
        )
    box = (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)
    return ReceptiveField(layer, size, h, w, size / h, size / w, yc, xc, box)


def token_receptive_field(layer: str, size: int, h: int, w: int) -> ReceptiveField:
    """Patch tokens on an ``h`` x ``w`` grid over a ``size`` px image: each unit's box is its patch."""
    sy, sx = size / h, size / w
    yc, xc = h // 2, w // 2
    box = (round(xc * sx), round(yc * sy), round((xc + 1) * sx), round((yc + 1) * sy))
    return ReceptiveField(layer, size, h, w, sy, sx, yc, xc, box)
