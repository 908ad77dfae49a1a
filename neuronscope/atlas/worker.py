"""Render one batch of units in one optimization (the work every backend does).

Row layout of a batch of n units with K diversity images each: rows 0..n-1
are the units' visualizations (``channel(layer, u).on(i)``); then unit i owns
rows n + i*K .. n + i*K + K - 1, each maximizing the same channel minus
``weight * diversity(layer)`` bound to that group only, so groups never
interact (docs/design.md section 3). A row's seed depends only on its unit, never on the
batch it landed in.
"""

from __future__ import annotations

import threading
import time
from typing import Sequence

import torch

from ..errors import NeuronscopeError
from ..images import png_bytes
from ..models import Model
from .plan import Job
from .settings import AtlasSettings
from .store import UnitResult


class Stopped(Exception):
    """The batch was abandoned because a stop was requested; nothing of it is recorded."""


def unit_objective(layer: str, unit: int):
    from ..optim import objectives as O

    return O.class_logit(unit) if layer == "logits" else O.channel(layer, unit)


def diversity_layer(model: Model, layer: str, shape: Sequence[int]) -> str:
    """Where the diversity term compares renders: the unit's own layer when it has space."""
    if len(shape) == 3:
        return layer
    from ..facets.pipeline import default_diversity_layer  # facets choose a spatial block for layers without space
    from ..units import Unit

    return default_diversity_layer(model, Unit("class" if layer == "logits" else "channel", layer, 0))


def row_seed(settings: AtlasSettings, unit: int, image: int = 0) -> int:
    """Seed of a unit's visualization (image 0) or its diversity image ``image`` >= 1."""
    return settings.seed + 7919 * image + int(unit)


def build_objective(batch: Sequence[Job], settings: AtlasSettings, div_layer: str | None):
    """The per-row objective list (one per row) and the row seeds of a batch."""
    from ..optim import objectives as O

    n, k = len(batch), settings.diversity
    terms, seeds = [], []
    for i, (layer, unit) in enumerate(batch):
        terms.append(unit_objective(layer, unit).on(i))
        seeds.append(row_seed(settings, unit))
    for i, (layer, unit) in enumerate(batch):
        if k:
            rows = list(range(n + i * k, n + (i + 1) * k))
            obj = unit_objective(layer, unit) - settings.diversity_weight * O.diversity(div_layer)
            terms.append(obj.on(rows))
            seeds += [row_seed(settings, unit, j + 1) for j in range(k)]
    return O.Objective.sum(terms), seeds


def render_batch(
    model: Model,
    batch: Sequence[Job],
    settings: AtlasSettings,
    *,
    shape: Sequence[int] = (),
    stop: threading.Event | None = None,
) -> list[UnitResult]:
    """Render the units of ``batch`` (all of one layer) and return them as PNG bytes.

    ``stop`` (an Event) abandons the optimization at the next step and raises
    :class:`Stopped`; a half-optimized image is never returned.
    """
    from ..optim import render

    if not batch:
        return []
    layers = {layer for layer, _ in batch}
    if len(layers) != 1:
        raise NeuronscopeError(f"a batch must hold units of one layer, got {sorted(layers)}")
    layer = batch[0][0]
    n, k = len(batch), settings.diversity
    div_layer = diversity_layer(model, layer, shape) if k else None
    objective, seeds = build_objective(batch, settings, div_layer)

    def check_stop(step, images, values):
        return stop is not None and stop.is_set()

    t0 = time.perf_counter()
    res = render(model, objective, batch=n * (1 + k), size=settings.size, steps=settings.steps,
                 preset=settings.preset, engine=settings.engine(model.device), seed=seeds, progress=False,
                 callback=check_stop)
    if stop is not None and stop.is_set():
        raise Stopped()
    seconds = time.perf_counter() - t0
    values = _unit_values(model, batch, res.images)
    out = []
    for i, (lay, unit) in enumerate(batch):
        div = [(png_bytes(res.images[n + i * k + j]), float(values[n + i * k + j])) for j in range(k)]
        out.append(UnitResult(lay, int(unit), png_bytes(res.images[i]), float(values[i]), div,
                              seconds / n, n * (1 + k)))
    return out


def _unit_values(model: Model, batch: Sequence[Job], images: torch.Tensor) -> torch.Tensor:
    """Each row's own unit (without the diversity term) on the final images."""
    from ..optim import evaluate
    from ..optim import objectives as O

    n = len(batch)
    k = (images.shape[0] // n) - 1
    rows = [unit_objective(layer, unit).on(i) for i, (layer, unit) in enumerate(batch)]
    for i, (layer, unit) in enumerate(batch):
        if k:
            rows.append(unit_objective(layer, unit).on(list(range(n + i * k, n + (i + 1) * k))))
    return evaluate(model, O.Objective.sum(rows), images)
