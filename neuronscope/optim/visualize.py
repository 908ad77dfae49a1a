"""``visualize``: targets in, a folder of pictures out (the library side of ``neuronscope render``)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

import torch

from ..models import Model
from ..units import Unit, parse_units
from .outputs import check_output_dir, write_render
from .presets import DEFAULT_PRESET, get_preset
from .render import render
from .engine.stages import check_precision


def render_targets(
    model: Model,
    targets: Sequence[str | Unit],
    *,
    seeds: int = 1,
    batch_size: int = 32,
    progress: bool = True,
    **render_kw,
):
    """Render every target with ``seeds`` seeds, ``batch_size`` rows per optimization.

    Returns (rows, images): one manifest dict per rendered row and a (N,3,H,W) tensor.
    """
    parsed: list[Unit] = []
    for t in targets:
        parsed += [t] if isinstance(t, Unit) else parse_units(model, [t], size=render_kw.get("size"))
    jobs = [(t, s) for t in parsed for s in range(seeds)]
    rows, images = [], []
    for start in range(0, len(jobs), batch_size):
        chunk = jobs[start : start + batch_size]
        t0 = time.perf_counter()
        desc = f"render {start + 1}-{start + len(chunk)}/{len(jobs)}"
        res = render(model, [t.objective() for t, _ in chunk], seed=[s for _, s in chunk],
                     progress=progress, description=desc, **render_kw)
        seconds = time.perf_counter() - t0
        for i, (t, s) in enumerate(chunk):
            rows.append({"name": t.name, "layer": t.layer, "unit": t.index, "label": t.class_name, "seed": s,
                         "position": t.position, "activation": float(res.values[i]),
                         "preset": res.meta["preset"], "size": res.meta["size"], "steps": res.meta["steps"],
                         "seconds": round(seconds, 2), "batch_rows": len(chunk)})
        images.append(res.images)
    return rows, torch.cat(images)


def visualize(
    model: Model,
    targets: Sequence[str | Unit],
    out: str | Path,
    *,
    preset: str = DEFAULT_PRESET,
    size: int | None = None,
    steps: int | None = None,
    seeds: int = 1,
    batch_size: int = 32,
    overwrite: bool = False,
    progress: bool = True,
    title: str | None = None,
    precision: str | None = None,
) -> Path:
    """Render targets and write PNGs, a labelled grid, manifest.json and index.html to ``out``.

    ``precision``: the engine's (see :class:`~neuronscope.optim.engine.Engine`); None: the preset's."""
    check_output_dir(out, overwrite)  # fail before the long work, not after
    p = get_preset(preset)
    precision = check_precision(p.precision if precision is None else precision)
    rows, images = render_targets(model, targets, seeds=seeds, batch_size=batch_size, progress=progress,
                                  preset=p, size=size, steps=steps, engine=precision)
    extra = {"preset": p.name, "size": size or model.input_size, "steps": steps or p.steps, "seeds": seeds, "batch_size": batch_size,
             "device": str(model.device), "precision": precision}
    return write_render(out, model_name=model.name, rows=rows, images=images, overwrite=overwrite,
                        title=title or f"neuronscope · {model.name}", extra=extra)
