"""Writing a render to disk: a PNG per unit, a labelled grid, a JSON manifest and an HTML page.

The whole folder is written next to its destination and renamed into place
(:func:`neuronscope.outdir.building_output_dir`), so an interrupted run never
leaves half an output, an existing folder is only replaced when the caller asked
for it, and of two runs racing for one new folder the second fails cleanly.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Sequence

from .. import __version__
from ..images import atomic_write_json, atomic_write_text, labelled_grid, save_png
from ..outdir import building_output_dir
from ..notebook import Sheet
from ..templating import render_template


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


def check_output_dir(out: str | os.PathLike, overwrite: bool) -> Path:
    """Fail early (before rendering) if ``out`` cannot receive a render; see :mod:`neuronscope.outdir`."""
    from ..outdir import check_output_dir as check

    return check(out, overwrite=overwrite, in_place=False)


def write_render(
    out: str | os.PathLike,
    *,
    model_name: str,
    rows: Sequence[dict],
    images,
    overwrite: bool = False,
    title: str = "neuronscope render",
    extra: dict | None = None,
) -> Path:
    """Write images (B,3,H,W) with one manifest entry per row; returns the folder.

    Each row dict holds at least ``name`` and ``activation``; ``label``,
    ``seed``, ``layer``, ``unit`` and any other fields go into the manifest.
    """
    out = Path(out)
    with building_output_dir(out, overwrite=overwrite) as tmp:
        entries = []
        for i, (row, img) in enumerate(zip(rows, images)):
            seed = row.get("seed")
            fname = f"{i:03d}_{_safe(row['name'])}" + (f"_s{seed}" if seed is not None else "") + ".png"
            save_png(img, tmp / fname)
            entries.append({**row, "file": fname})
        captions = [
            f"{e['name']}" + (f" s{e['seed']}" if e.get("seed") is not None else "")
            + f"\n{(e.get('label') or '')[:18]} {e['activation']:.3g}"
            for e in entries
        ]
        grid = labelled_grid(list(images), captions, cell=min(160, images.shape[-1] * 2))
        grid.save(tmp / "grid.png")
        manifest = {
            "model": model_name, "neuronscope": __version__, "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "units": entries, **(extra or {}),
        }
        atomic_write_json(tmp / "manifest.json", manifest)
        atomic_write_text(tmp / "index.html", _html(title, model_name, entries, extra or {}))
    return Sheet(out)  # a Path that shows its grid.png in Jupyter


def _html(title: str, model_name: str, entries: list[dict], extra: dict) -> str:
    info = [f"{k}: {v}" for k, v in extra.items() if not isinstance(v, (list, dict))]
    return render_template("render.html", title=title, model_name=model_name, entries=entries, info=info)
