"""Writing a render to disk: a PNG per unit, a labelled grid, a JSON manifest and an HTML page.

The whole folder is written next to its destination and renamed into place, so
an interrupted run never leaves half an output, and an existing folder is only
replaced when the caller asked for it.
"""

from __future__ import annotations

import html
import os
import shutil
import time
from pathlib import Path
from typing import Sequence

from .. import __version__
from ..errors import NeuronscopeError
from ..images import atomic_write_json, atomic_write_text, fresh_dir, labelled_grid, save_png


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


def check_output_dir(out: str | os.PathLike, overwrite: bool) -> Path:
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise NeuronscopeError(f"output path {out} exists and is a file")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise NeuronscopeError(
            f"output folder {out} already exists and is not empty; choose another --out or pass --overwrite"
        )
    return out


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
    out = check_output_dir(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = fresh_dir(out.parent, f".{out.name}.")
    try:
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
        if out.exists():
            backup = out.with_name(f".{out.name}.old-{os.getpid()}")
            out.rename(backup)
            tmp.rename(out)
            shutil.rmtree(backup, ignore_errors=True)
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _html(title: str, model_name: str, entries: list[dict], extra: dict) -> str:
    cards = []
    for e in entries:
        label = html.escape(e.get("label") or "")
        seed = f" · seed {e['seed']}" if e.get("seed") is not None else ""
        cards.append(
            f'<figure><img src="{html.escape(e["file"])}" alt="{html.escape(e["name"])}">'
            f"<figcaption><b>{html.escape(e['name'])}</b>{seed}<br>{label}<br>"
            f"activation {e['activation']:.4g}</figcaption></figure>"
        )
    info = " · ".join(f"{html.escape(str(k))}: {html.escape(str(v))}" for k, v in extra.items() if not isinstance(v, (list, dict)))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body{{font-family:system-ui,sans-serif;margin:1.5em;background:#fafafa;color:#222}}
.grid{{display:grid;grid-template-columns:repeat(auto-fill,minmax(180px,1fr));gap:14px}}
figure{{margin:0;background:#fff;padding:6px;border-radius:6px;box-shadow:0 1px 3px #0002}}
img{{width:100%;image-rendering:auto;border-radius:4px}} figcaption{{font-size:13px;margin-top:4px}}
</style></head><body>
<h1>{html.escape(title)}</h1><p>model <b>{html.escape(model_name)}</b> · {info}</p>
<div class="grid">{''.join(cards)}</div>
<p><a href="grid.png">grid.png</a> · <a href="manifest.json">manifest.json</a></p>
</body></html>
"""
