"""Top-k sheets in the style of the 2015 deep-visualization toolbox.

For each unit of a layer: its top-9 max patches in a 3x3 grid (best at the top
left), captioned with the unit index and its best value. One PNG holds every
unit of the layer; one HTML page shows the same tiles and each unit's values.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

from PIL import Image

from ..errors import NeuronscopeError
from ..images import save_png
from ..sheets import Figure, Link, Section, caption_block, mosaic, stack, write_html_page
from .store import Store


def unit_tile(store: Store, layer: str, unit: int, *, n: int = 9, cell: int = 40, _views: dict | None = None) -> Image.Image:
    """The unit's top-``n`` max patches in a near-square grid (grey where fewer exist)."""
    views = {} if _views is None else _views
    rf = store.receptive_field(layer)
    patches = []
    for e in store.entries(layer, unit)[:n]:
        if e.image_id not in views:
            views[e.image_id] = store.view(e.image_id)
        patches.append(rf.crop(views[e.image_id], e.x, e.y))
    cols = max(1, math.ceil(math.sqrt(n)))
    return mosaic(patches, cols, cell, rows=math.ceil(n / cols))


def write_topk_sheet(
    store: Store,
    layer: str,
    out: str | Path,
    *,
    units: Sequence[int] | None = None,
    n: int = 9,
    cell: int = 40,
    columns: int | None = None,
) -> tuple[Path, Path]:
    """Write ``<out>/<layer>.png`` and ``<out>/<layer>.html``; returns both paths."""
    out = Path(out)
    total = store.units(layer)
    n = max(1, min(n, store.k(layer)))
    units = list(range(total)) if units is None else list(units)
    bad = [u for u in units if not 0 <= u < total]
    if bad:
        raise NeuronscopeError(f"units {bad[:5]} are out of range for layer {layer!r} (valid: 0..{total - 1})")
    if not units:
        raise NeuronscopeError(f"no units selected for layer {layer!r}")
    views: dict = {}
    rf = store.receptive_field(layer)
    tiles, figures = [], []
    for u in units:
        entries = store.entries(layer, u)
        tile = unit_tile(store, layer, u, n=n, cell=cell, _views=views)
        best = f"{entries[0].value:.2f}" if entries else "-"
        tiles.append(caption_block(tile, [f"{u}  max {best}"], width=tile.size[0]))
        vals = ", ".join(f"{e.value:.2f}" for e in entries[:n])
        figures.append(Figure(tile, f"unit {u}\n{vals}", name=f"unit_{u:05d}"))
    columns = columns or max(1, math.ceil(math.sqrt(len(tiles) * 1.6)))
    rows = [stack(tiles[i : i + columns]) for i in range(0, len(tiles), columns)]
    sheet = stack(rows, direction="vertical")
    png = save_png(sheet, out / f"{layer}.png")
    m = store.meta
    w, h = rf.size
    info = (
        f"model {m['model']}, {m['n_images']} images from {m.get('image_folder')}, input {m['size']} px; "
        f"top-{store.k(layer)} per unit by spatial maximum; patches are the receptive field at the maximum "
        f"({w}x{h} px{', whole image' if not rf.spatial else ''}); "
        f"{store.images_done(layer)}/{m['n_images']} images seen."
    )
    html = write_html_page(
        out / f"{layer}.html",
        f"Top-{n} max patches: {layer}",
        [
            Section("About", info, [], [Link("Whole layer as one picture: ", png.name, png.name)]),
            Section(f"{len(units)} units", "", figures),
        ],
    )
    return png, html
