"""The viewer's short layer list: one rectified output per block, then the logits.

A network lists every convolution, normalization and activation (Lite0: 157
layers); the 2015 toolbox offered a short list of layers that look like
something. :func:`curated_layers` keeps, for each block of the network (each
numbered child of a top-level sequence, e.g. ``blocks.0`` .. ``blocks.15``, and
each other top-level module), its *last rectified* sub-layer (a ReLU-like
activation: non-negative maps whose structure shows in the grid), or the block
itself when it has none; then ``logits``. The full list stays one toggle away.
"""

from __future__ import annotations

import re

from ..taps import LayerInfo

RECTIFIERS = {"ReLU", "ReLU6", "SiLU", "GELU", "Hardswish", "LeakyReLU", "ELU", "Mish", "Hardtanh", "Swish", "PReLU"}


def _blocks(layers: list[LayerInfo]) -> list[str]:
    """Top-level modules, with numbered sequences expanded into their children."""
    names = [l.name for l in layers]
    out = []
    for l in layers:
        if l.kind == "pseudo" or "." in l.name or "[" in l.name:
            continue
        children = [n for n in names if re.fullmatch(re.escape(l.name) + r"\.\d+", n)]
        out += children if len(children) > 2 else [l.name]
    return out


def curated_layers(layers: list[LayerInfo]) -> list[str]:
    """Names from ``layers`` worth showing first, in network order (see the module doc)."""
    by_name = {l.name: l for l in layers}
    picked: list[str] = []
    for block in _blocks(layers):
        info = by_name[block]
        inside = [
            l for l in layers
            if l.name.startswith(block + ".") and l.kind in RECTIFIERS and l.shape is not None and len(l.shape) == 3
        ]
        if info.kind in RECTIFIERS or not inside:
            if info.shape is not None and len(info.shape) == 3:
                picked.append(block)
        else:
            picked.append(inside[-1].name)
    if "logits" in by_name:
        picked.append("logits")
    order = {l.name: i for i, l in enumerate(layers)}
    return sorted(dict.fromkeys(picked), key=order.__getitem__)


def first_layer(layers: list[LayerInfo], curated: list[str], input_size: int) -> str:
    """The layer the viewer opens on: the deepest curated map layer at least input/8 wide.

    For Lite0 at 224 px that is ``blocks.4.dw_act`` (240 maps of 28 x 28): fine
    enough that a photo's shapes show in every tile, deep enough to be more than edges.
    """
    by_name = {l.name: l for l in layers}
    maps = [n for n in curated if by_name[n].shape is not None and len(by_name[n].shape) == 3]
    wide = [n for n in maps if by_name[n].shape[-1] >= max(1, input_size // 8)]
    if wide:
        return wide[-1]
    if maps:
        return maps[len(maps) // 2]
    return curated[0] if curated else layers[0].name
