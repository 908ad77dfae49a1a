"""The facet sheet: one HTML page and one PNG per unit.

Each facet is a row: the synthetic image (MFV schedule from the mean image),
the preset render, the mean image, and the 15 real views nearest the cluster
centre, captioned with the cluster size and the activation each image reaches
next to the best and mean activation of the cluster's real views. A scatter of
the reduced embedding coloured by cluster closes the sheet. In diversity mode
the row holds the k renders and their activations.
"""

from __future__ import annotations

import colorsys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ..images import save_png
from ..sheets import Figure, Link, Section, as_pil, caption_block, mosaic, stack, write_html_page
from ..text import draw_line, font
from .pipeline import Facet, FacetResult
from ..notebook import FacetSheet

CELL = 160


def _colour(j: int, k: int) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb((j / max(k, 1)) % 1.0, 0.75, 0.85)
    return int(r * 255), int(g * 255), int(b * 255)


def facet_numbers(result: FacetResult) -> dict[int, int]:
    """k-means cluster label -> the facet's number as shown (1 = largest; duplicates after the kept facets).

    The sheet names and colours facets only by these numbers, so "facet 1" in a
    row, in the scatter and in the JSON summary are one thing.
    """
    order = list(result.facets) + list(result.duplicates)
    return {f.cluster: i + 1 for i, f in enumerate(order)}


def scatter(result: FacetResult, size: int = 320) -> Image.Image | None:
    """The first two reduced coordinates of the examples, coloured by facet number."""
    cl = result.clustering
    if cl is None or cl.coords.shape[1] < 2 or len(cl.coords) < 2:
        return None
    xy = cl.coords[:, :2]
    lo, hi = xy.min(0), xy.max(0)
    xy = (xy - lo) / np.maximum(hi - lo, 1e-9) * (size - 16) + 8
    img = Image.new("RGB", (size, size), (255, 255, 255))
    d = ImageDraw.Draw(img)
    face = font(11)
    number = facet_numbers(result)
    for (x, y), j in zip(xy, cl.labels):
        d.ellipse((x - 3, y - 3, x + 3, y + 3), fill=_colour(number.get(int(j), 0) - 1, cl.k))
    for j, n in sorted(number.items(), key=lambda t: t[1]):  # a legend in the corner: the facets' numbers
        d.rectangle((6, 6 + 14 * (n - 1), 16, 16 + 14 * (n - 1)), fill=_colour(n - 1, cl.k))
        draw_line(d, (20, 5 + 14 * (n - 1)), f"facet {n}", face, 11, (30, 30, 30))
    return img


def _fmt(v: float) -> str:
    return "-" if v is None or not np.isfinite(v) else f"{v:.2f}"


def _facet_row(result: FacetResult, rank: int, f: Facet) -> tuple[Image.Image, list[Figure], str]:
    ex = result.examples
    tiles, figs = [], []
    if f.image is not None:
        below = result.mode == "data" and not f.value >= f.best_real
        note = (f"+{f.refine_iterations} refine its" if f.refine_iterations else "schedule only") + (" - BELOW best real" if below else "")
        tiles.append(caption_block(as_pil(f.image).resize((CELL, CELL), Image.LANCZOS), ["MFV render", f"unit {_fmt(f.value)}"]
                                   + ([note] if result.mode == "data" else [])))
        extra = (f"\n{f.refine_iterations} extra last-octave iterations (refinement)" if f.refine_iterations else "")
        figs.append(Figure(f.image, f"MFV render (mean-image init)\nactivation {_fmt(f.value)}{extra}"
                           + ("\nBELOW the cluster's best real view" if below else ""), CELL, f"facet{rank}_mfv"))
    if f.preset_image is not None:
        tiles.append(caption_block(as_pil(f.preset_image).resize((CELL, CELL), Image.LANCZOS),
                                   [f"{result.meta.get('preset')} render", f"unit {_fmt(f.preset_value)}"]
                                   + ([f"anchor {result.meta.get('anchor'):g}" if f.anchored else "no anchor"]
                                      if result.mode == "data" else [])))
        figs.append(Figure(f.preset_image, f"{result.meta.get('preset')} preset from the mean image\nactivation {_fmt(f.preset_value)}",
                           CELL, f"facet{rank}_preset"))
    if f.mean_image is not None:
        tiles.append(caption_block(as_pil(f.mean_image).resize((CELL, CELL), Image.LANCZOS), ["mean image", f"unit {_fmt(f.mean_value)}"]))
        figs.append(Figure(f.mean_image, f"mean of the {len(f.nearest)} nearest views\nactivation {_fmt(f.mean_value)}",
                           CELL, f"facet{rank}_mean"))
    if ex is not None and len(f.nearest):
        reals = [as_pil(ex.float([i])[0]) for i in f.nearest]
        grid = mosaic(reals, 5, (CELL - 8) // 3, rows=3)
        tiles.append(caption_block(grid, [f"{len(f.nearest)} nearest real views",
                                          f"best {_fmt(f.best_real)}  mean {_fmt(f.mean_real)}"]))
        for n, i in enumerate(f.nearest):
            src = Path(ex.paths[ex.photo[i]]).name
            figs.append(Figure(ex.float([i])[0], f"{src} v{ex.view[i]}\n{_fmt(float(ex.values[i]))}", 72, f"facet{rank}_real{n}"))
    colour = (_colour(facet_numbers(result).get(f.cluster, rank + 1) - 1, result.clustering.k)
              if result.clustering is not None else (60, 60, 60))
    if result.mode == "data":
        head = f"facet {rank + 1}: {f.size} views of {f.images} images"
    else:
        head = f"render {rank + 1}"
    row = stack(tiles) if tiles else Image.new("RGB", (CELL, CELL), (255, 255, 255))
    bar = Image.new("RGB", (8, row.size[1]), colour)
    row = caption_block(stack([bar, row], gap=4), [head], font_size=13)
    return row, figs, head


def write_facet_sheet(result: FacetResult, out: str | Path, name: str | None = None) -> FacetSheet:
    """Write ``<out>/<unit>.html`` and ``<out>/<unit>.png``; returns (html, png)."""
    out = Path(out)
    name = name or result.unit.slug
    u, m = result.unit, result.meta
    if result.mode == "data":
        title = f"Facets of {u.label} — {result.model}"
        about = (f"{len(result.facets)} facets ({m.get('k_rule')}), {len(result.duplicates)} near-duplicates dropped.\n"
                 f"Examples: {m.get('examples')}.\nEmbedding: {m.get('embed_layer')} features, reduced with {m.get('reduce')}, "
                 f"k-means; facet images: {m.get('schedule')} schedule (x{m.get('iter_scale')} iterations) from each mean image"
                 + (f", and the {m.get('preset')} preset" if m.get('preset') else "")
                 + (f" with the cluster anchor (weight {m.get('anchor'):g} on cos(features - mean, centroid - mean) at "
                    f"{m.get('anchor_layer')})" if m.get('anchor_layer') else (", no cluster anchor" if m.get('preset') else ""))
                 + (f".\nRefinement: MFV renders still below their cluster's best real view repeat the schedule's last octave "
                    f"(at most {m.get('refine_budget')} extra iterations; the number each ran is under its image)"
                    if m.get('refine') else ".\nNo refinement: the MFV schedule as published")
                 + ".\nActivations are the unit's value on each image at the model's input size; facets are ordered by cluster size.")
    else:
        title = f"Diverse renders of {u.label} — {result.model} (no data)"
        about = (f"{len(result.facets)} renders with objective {u.label} - {m.get('weight')} x diversity({m.get('diversity_layer')}), "
                 f"{m.get('preset')} preset, {m.get('size')} px, {m.get('steps')} steps; ordered by activation.")
    rows, sections = [], [Section("About", about)]
    for rank, f in enumerate(result.facets):
        row, figs, head = _facet_row(result, rank, f)
        rows.append(row)
        sections.append(Section(head, "", figs))
    if result.mode == "diversity":
        tiles = [caption_block(as_pil(f.image).resize((CELL, CELL), Image.LANCZOS), [f"render {i + 1}", f"unit {_fmt(f.value)}"])
                 for i, f in enumerate(result.facets)]
        rows = [stack(tiles)]
    sc = scatter(result)
    if sc is not None:
        rows.append(caption_block(sc, [f"{m.get('reduce')} of the examples, coloured by facet"]))
        sections.append(Section("Embedding", f"{m.get('reduce')} coordinates of every example view; colours match the bars of the PNG sheet.",
                                [Figure(sc, "", None, "scatter")]))
    if result.duplicates:
        sections.append(Section("Near-duplicates dropped", "", [
            Figure(f.image, f"{f.size} views; duplicates facet {f.duplicate_of + 1}\nactivation {_fmt(f.value)}", CELL, f"dup{i}")
            for i, f in enumerate(result.duplicates) if f.image is not None]))
    sheet = caption_block(stack(rows, direction="vertical", gap=10), [title.replace("—", "-")], font_size=15)
    png = save_png(sheet, out / f"{name}.png")
    sections[0].links.append(Link("The whole sheet as one picture: ", png.name, png.name))
    page = write_html_page(out / f"{name}.html", title, sections)
    return FacetSheet(page, png)
