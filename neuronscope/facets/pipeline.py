"""Multifaceted feature visualization end to end.

``multifaceted(model, unit, images)``: collect the unit's example views, embed
them, reduce and cluster them into facets, average the 15 views nearest each
centre into a mean image, render each facet from its mean image (the paper's
mean-init schedule, with a bounded target-driven refinement for facets still
below their cluster's best real view, and optionally neuronscope's default
preset with a cluster anchor that keeps each render near its own cluster in the
embedding), then rank the facets by cluster size and drop near-duplicates.

``diverse_facets(model, unit, k)``: without data, k renders of the unit that
a Gram-matrix diversity term pushes apart.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import NeuronscopeError
from ..models.adapter import Model
from ..notebook import FacetDisplay
from .cluster import Clustering, cluster, nearest_members
from .embed import embed
from .examples import Examples, collect_examples
from .mfv import SCHEDULES, measure, render_mfv
from .progress import MFV_WEIGHT, VIEW_WEIGHT, Overall, render_weight
from ..units import Unit
from ..optim.presets import DEFAULT_PRESET

DUPLICATE_COSINE = 0.95  # facet images whose features are closer than this are one facet
# Weight of the cluster anchor in facet renders with the preset: unit + ANCHOR * cos(f(x) - m, c_j - m),
# f the embedding, c_j the facet's centroid, m the mean of all examples. Chosen once on a class outside
# the facet-diversity benchmark (daisy; benchmarks/facet_anchor_sweep.py, docs/facets.md) and frozen.
ANCHOR = 30.0
# The MFV schedule's start: the mean image stretched to photo contrast and colourfulness, held there
# during the schedule (facets/colour.py; docs/facets.md, "Why the paper's renders came out pale").
MFV_COLOUR = "photo"
MFV_PRIOR = None
CANDIDATES_GUESS = 80  # photos a class unit's scan expects to view more closely, until it knows (for the ETA)


@dataclass
class Facet:
    cluster: int  # k-means label (data mode) or row (diversity mode)
    size: int  # examples in the cluster (0 in diversity mode)
    members: np.ndarray  # example indices of the cluster
    nearest: np.ndarray  # up to 15 members nearest the centre, nearest first
    mean_image: torch.Tensor | None  # (3, S, S)
    mean_value: float = float("nan")  # the unit on the mean image
    best_real: float = float("nan")  # the unit on the cluster's best real view
    mean_real: float = float("nan")  # mean over the cluster's views
    images: int = 0  # distinct source images in the cluster
    image: torch.Tensor | None = None  # (3, W, W) the MFV render
    value: float = float("nan")  # the unit on ``image`` through the evaluation transform (mfv.eval_view)
    preset_image: torch.Tensor | None = None
    preset_value: float = float("nan")
    duplicate_of: int | None = None  # rank of the facet this one duplicates
    centroid: np.ndarray | None = None  # mean embedding of the cluster's members (the clustering's feature space)
    refine_iterations: int = 0  # extra MFV iterations of the target-driven refinement
    anchored: bool = False  # whether the preset render had the cluster anchor


@dataclass
class FacetResult(FacetDisplay):  # shows itself in Jupyter (neuronscope.notebook)
    unit: Unit
    model: str
    mode: str  # "data" or "diversity"
    facets: list[Facet]  # ranked, duplicates removed
    duplicates: list[Facet] = field(default_factory=list)
    examples: Examples | None = None
    clustering: Clustering | None = None
    meta: dict = field(default_factory=dict)


def discover_facets(
    model: Model,
    unit: Unit,
    images: str | os.PathLike | Sequence[str | os.PathLike] | Examples,
    *,
    k: int | None = None,
    max_k: int | None = None,
    reduce: str = "tsne",
    views: int = 8,
    n_max: int | None = None,
    n_nearest: int = 15,
    embed_layer: str | None = None,
    labels: Mapping[str, int] | None = None,
    size: int | None = None,
    seed: int = 0,
    progress: bool = True,
) -> tuple[list[Facet], Examples, Clustering]:
    """Facets of ``unit`` among real images: clusters with their mean images (not rendered yet).

    ``k`` facets, or (``None``) as many as the silhouette criterion finds, at most ``max_k``."""
    ex = images if isinstance(images, Examples) else collect_examples(
        model, unit, images, views=views, n_max=n_max, size=size, labels=labels, seed=seed, progress=progress
    )
    emb = embed(model, ex.images, embed_layer)
    cl = cluster(emb, k, method=reduce, seed=seed, max_k=max_k)
    facets = []
    for j, near in enumerate(nearest_members(cl, n_nearest)):
        members = np.nonzero(cl.labels == j)[0]
        mean = ex.float(near).mean(0)
        facets.append(Facet(
            cluster=j, size=len(members), members=members, nearest=near, mean_image=mean,
            best_real=float(ex.values[members].max()), mean_real=float(ex.values[members].mean()),
            images=len(set(ex.photo[members].tolist())), centroid=emb[members].mean(0),
        ))
    if facets:
        means = torch.stack([f.mean_image for f in facets])
        mv = measure(model, unit, means, size=means.shape[-1])
        for f, v in zip(facets, mv):
            f.mean_value = float(v)
    return facets, ex, cl


def render_facets(
    model: Model,
    unit: Unit,
    facets: list[Facet],
    *,
    schedule: str = "mean",
    iter_scale: float = 1.0,
    preset: str | None = DEFAULT_PRESET,
    preset_steps: int | None = None,
    preset_size: int | None = None,
    size: int | None = None,
    seed: int = 1,
    anchor: float = ANCHOR,
    embed_layer: str | None = None,
    refine: bool = True,
    refine_budget: int | None = None,
    mfv_colour: str | None = MFV_COLOUR,
    mfv_prior=MFV_PRIOR,
    progress: bool = True,
) -> dict:
    """Render every facet from its mean image (in place): the MFV schedule, then the preset.

    ``mfv_colour``: ``"photo"`` (default) stretches each mean image to the offline photos'
    contrast and colourfulness before the MFV schedule and holds the crop there during it
    (:func:`~neuronscope.facets.mfv.render_mfv`); ``None`` runs the schedule on the mean image
    as it is, as published (a pale, grey start). ``mfv_prior``: the learned prior's step in the
    MFV schedule (a :class:`~neuronscope.priors.DenoisingPrior`, a dict of its settings, or None).

    ``refine``: MFV rows still below their cluster's best real view after the schedule
    repeat its last octave (at most ``refine_budget`` extra iterations, default as many
    as the schedule ran; :func:`render_mfv`); ``Facet.refine_iterations`` records them.
    ``anchor`` > 0 adds ``anchor * cosine(embedding - m, centroid - m)`` to each facet's
    preset objective, m the mean over all examples: the render stays near its own cluster
    relative to the others in the clustering's feature space (``embed_layer``). It needs
    at least two facets with centroids; otherwise the plain objective is used. Returns
    what ran (for the result's meta).
    """
    if not np.isfinite(anchor) or anchor < 0:
        raise NeuronscopeError(f"anchor weight must be a finite number >= 0, got {anchor}")
    if not facets:
        return {}
    init = torch.stack([f.mean_image for f in facets])
    targets = [f.best_real for f in facets] if refine else None
    if targets is not None and not all(np.isfinite(targets)):
        targets = None
    prior = mfv_prior
    if isinstance(prior, dict):
        from ..priors import DenoisingPrior

        prior = DenoisingPrior(**prior)
    res = render_mfv(model, unit, init, schedule=schedule, size=size, iter_scale=iter_scale, seed=seed,
                     targets=targets, refine_budget=refine_budget, progress=progress, colour=mfv_colour, prior=prior)
    for f, img, v, n in zip(facets, res.images, res.values, res.meta["refine_iterations"]):
        f.image, f.value, f.refine_iterations = img, float(v), int(n)
    ran = {"refine": targets is not None, "refine_budget": res.meta["refine_budget"],
           "mfv_iterations": res.meta["iterations"], "mfv_colour": mfv_colour, "mfv_prior": res.meta["prior"],
           "anchor": 0.0, "anchor_layer": None}
    if preset:
        from ..optim import render

        objectives, layer = facet_objectives(model, unit, facets, anchor, embed_layer)
        if layer is not None:
            ran.update(anchor=float(anchor), anchor_layer=layer)
        s = int(preset_size or size or model.input_size)
        init_s = F.interpolate(init, size=(s, s), mode="bilinear", align_corners=False, antialias=True).clamp(0.02, 0.98)
        kw = {}
        if isinstance(progress, Overall):
            from ..optim.presets import get_preset

            n = int(preset_steps or get_preset(preset).steps)
            bar = progress.phase(f"{preset} render", n, render_weight(s, model.input_size, _prior_share(preset)) * len(facets))
            kw = {"progress": False, "callback": lambda step, images, values: bar.update(1)}
        else:
            kw = {"progress": progress}
        r = render(model, objectives, size=s, steps=preset_steps, preset=preset,
                   seed=[seed + i for i in range(len(facets))], init=init_s,
                   description=f"{preset} {unit.label}", **kw)
        if isinstance(progress, Overall):
            bar.close()
        pv = measure(model, unit, r.images, size=init.shape[-1])
        for f, img, v in zip(facets, r.images, pv):
            f.preset_image, f.preset_value = img, float(v)
    return ran


def _plan(overall: Overall, model: Model, unit: Unit, images, views: int, k: int, schedule: str, iter_scale: float,
          preset: str | None, preset_steps: int | None, size: int | None) -> None:
    """Reserve each phase's estimated work on the one bar (``images=None``: keep the examples estimate)."""
    if images is not None:
        if isinstance(images, Examples):
            n = 0
        elif isinstance(images, (str, os.PathLike)):
            from ..images import list_images

            n = len(list_images(images))
        else:
            n = len(images)
        if unit.is_class and views > 1:  # the crop of every photo, then more views of the candidates (examples.py)
            overall.plan("examples", n * VIEW_WEIGHT)
            overall.plan("more views", min(n, CANDIDATES_GUESS) * (views - 1) * VIEW_WEIGHT)  # replanned when known
        else:
            overall.plan("examples", n * views * VIEW_WEIGHT)
    if schedule in SCHEDULES:
        iters = sum(max(1, round(o.iters * iter_scale)) for o in SCHEDULES[schedule])
        overall.plan(f"mfv {unit.label}", iters * k * MFV_WEIGHT)
    if preset:
        from ..optim.presets import get_preset

        s = int(size or model.input_size)
        overall.plan(f"{preset} render", int(preset_steps or get_preset(preset).steps)
                     * render_weight(s, model.input_size, _prior_share(preset)) * k)


def _prior_share(preset: str) -> float:
    """The share of the preset's steps that run the learned prior's step (for the bar's weights)."""
    from ..optim.presets import get_preset

    prior = get_preset(preset).prior
    return 1.0 / max(1, int(prior.get("every", 1))) if prior else 0.0


def facet_objectives(model: Model, unit: Unit, facets: list[Facet], anchor: float = ANCHOR,
                     embed_layer: str | None = None):
    """One preset objective per facet: the unit, plus ``anchor * cosine(embedding - m, centroid - m)``
    when ``anchor`` > 0 and there are at least two facets with centroids (m = the size-weighted
    mean of the centroids = the mean of all examples). Returns (objectives, anchor layer or None);
    marks the anchored facets."""
    from ..optim import objectives as O
    from .embed import embed_address

    objectives = [unit.objective() for _ in facets]
    cents = [f.centroid for f in facets]
    if not (anchor > 0 and len(facets) >= 2 and all(c is not None for c in cents)):
        return objectives, None
    sizes = np.array([max(f.size, 1) for f in facets], dtype=np.float64)
    centre = (np.stack(cents) * sizes[:, None]).sum(0) / sizes.sum()
    layer = embed_address(model, embed_layer)
    objectives = [o + anchor * O.cosine(layer, c, centre) for o, c in zip(objectives, cents)]
    for f in facets:
        f.anchored = True
    return objectives, layer


def rank_and_dedup(model: Model, facets: list[Facet], *, threshold: float = DUPLICATE_COSINE,
                   embed_layer: str | None = None) -> tuple[list[Facet], list[Facet]]:
    """Facets ordered by cluster size (then activation), and the near-duplicates dropped.

    Two rendered facets are duplicates when the cosine similarity of their
    features (the same embedding as the clustering) exceeds ``threshold``; the
    lower-ranked one is dropped and remembers which facet it duplicates.
    """
    order = sorted(facets, key=lambda f: (-f.size, -(f.value if np.isfinite(f.value) else -np.inf)))
    imgs = [f.image if f.image is not None else f.mean_image for f in order]
    if len(order) < 2 or any(i is None for i in imgs):
        return order, []
    s = imgs[0].shape[-1]
    x = torch.stack([F.interpolate(i[None], size=(s, s), mode="bilinear", align_corners=False)[0] for i in imgs])
    x = F.interpolate(x, size=(model.input_size, model.input_size), mode="bilinear", align_corners=False, antialias=True)
    e = torch.from_numpy(embed(model, x.clamp(0, 1), embed_layer))
    e = e / (e.norm(dim=1, keepdim=True) + 1e-8)
    sim = (e @ e.T).numpy()
    kept, dropped = [], []
    for i, f in enumerate(order):
        dup = next((j for j in range(len(kept)) if sim[i, kept[j][0]] > threshold), None)
        if dup is None:
            kept.append((i, f))
        else:
            f.duplicate_of = dup
            dropped.append(f)
    return [f for _, f in kept], dropped


def multifaceted(
    model: Model,
    unit: Unit,
    images,
    *,
    k: int | None = None,
    max_k: int | None = None,
    reduce: str = "tsne",
    views: int = 8,
    n_max: int | None = None,
    embed_layer: str | None = None,
    labels: Mapping[str, int] | None = None,
    schedule: str = "mean",
    iter_scale: float = 1.0,
    preset: str | None = DEFAULT_PRESET,
    preset_steps: int | None = None,
    size: int | None = None,
    seed: int = 0,
    anchor: float = ANCHOR,
    refine: bool = True,
    refine_budget: int | None = None,
    mfv_colour: str | None = MFV_COLOUR,
    mfv_prior=MFV_PRIOR,
    progress: bool = True,
    tune_process: bool | None = None,
) -> FacetResult:
    """Find, render, rank and deduplicate the facets of ``unit`` among ``images``.

    ``progress=True`` shows one bar for the whole run with an overall ETA
    (:class:`~neuronscope.facets.progress.Overall`); an ``Overall`` may be passed in.
    ``tune_process``: keep freed memory in the process for the whole run (a glibc setting,
    restored after; ``None`` follows the process default, on under the command line;
    :mod:`neuronscope.optim.engine.process`): measured on the example scan, it cut the system
    time per view from 0.02-0.07 s (more than the forward's own user time) to 0.005 s.
    """
    from ..optim.engine.process import process_tuning_wanted, tuned_process

    with tuned_process(process_tuning_wanted(tune_process)):
        return _multifaceted(model, unit, images, k=k, max_k=max_k, reduce=reduce, views=views, n_max=n_max,
                             embed_layer=embed_layer, labels=labels, schedule=schedule, iter_scale=iter_scale,
                             preset=preset, preset_steps=preset_steps, size=size, seed=seed, anchor=anchor,
                             refine=refine, refine_budget=refine_budget, mfv_colour=mfv_colour, mfv_prior=mfv_prior,
                             progress=progress)


def _multifaceted(model, unit, images, *, k, max_k, reduce, views, n_max, embed_layer, labels, schedule, iter_scale,
                  preset, preset_steps, size, seed, anchor, refine, refine_budget, mfv_colour, mfv_prior,
                  progress) -> FacetResult:
    overall = progress if isinstance(progress, Overall) else None
    own = progress is True
    if own:
        overall = Overall(f"facets {unit.label}")
    if overall is not None:
        _plan(overall, model, unit, images, views, k or min(3, max_k or 3), schedule, iter_scale, preset, preset_steps, size)
    try:
        facets, ex, cl = discover_facets(model, unit, images, k=k, max_k=max_k, reduce=reduce, views=views, n_max=n_max,
                                         embed_layer=embed_layer, labels=labels, size=size, seed=seed,
                                         progress=overall if overall is not None else progress)
        if overall is not None:  # now the number of facets is known
            _plan(overall, model, unit, None, views, len(facets), schedule, iter_scale, preset, preset_steps, size)
        ran = render_facets(model, unit, facets, schedule=schedule, iter_scale=iter_scale, preset=preset,
                            preset_steps=preset_steps, size=size, seed=seed + 1, anchor=anchor,
                            embed_layer=embed_layer, refine=refine, refine_budget=refine_budget,
                            mfv_colour=mfv_colour, mfv_prior=mfv_prior,
                            progress=overall if overall is not None else progress)
    finally:
        if own:
            overall.close()
    kept, dropped = rank_and_dedup(model, facets, embed_layer=embed_layer)
    meta = {"k_rule": cl.k_rule, "k_scores": cl.k_scores, "max_k": max_k, "reduce": reduce, "examples": ex.how, "views": views,
            "schedule": schedule, "iter_scale": iter_scale, "preset": preset, "embed_layer": embed_layer or "penultimate",
            **ran}
    return FacetResult(unit, model.name, "data", kept, dropped, ex, cl, meta)


# ---------------------------------------------------------------- without data

def default_diversity_layer(model: Model, unit: Unit) -> str:
    """Where the diversity term compares rows: the unit's own layer when it has space, else
    the last block (a non-leaf item of a sequence) whose map is at least input/16 wide."""
    from torch import nn

    from ..taps import describe_layers

    rows = {r.name: r for r in describe_layers(model)}
    own = rows.get(unit.layer)
    if own is not None and own.shape is not None and len(own.shape) == 3:
        return unit.layer
    parents = {n: m for n, m in model.net.named_modules()}
    cands = []
    for name, mod in model.net.named_modules():
        if not name or not any(True for _ in mod.children()):
            continue
        parent = parents.get(name.rpartition(".")[0]) if "." in name else None
        if isinstance(parent, (nn.Sequential, nn.ModuleList)):
            r = rows.get(name)
            if r is not None and r.shape is not None and len(r.shape) == 3 and r.shape[-1] >= model.input_size / 16:
                cands.append(name)
    if not cands:  # no blocks: any convolution-like module (activation modules are swapped while rendering)
        skip = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.Hardswish, nn.Identity)
        cands = [n for n, r in rows.items() if r.shape is not None and len(r.shape) == 3 and n in parents
                 and not isinstance(parents[n], skip) and r.shape[-1] >= model.input_size / 16]
    if not cands:
        raise NeuronscopeError(f"no spatial layer in {model.name!r} for the diversity term; give one (--diversity-layer)")
    return cands[-1]


def diverse_facets(
    model: Model,
    unit: Unit,
    k: int = 4,
    *,
    layer: str | None = None,
    weight: float = 100.0,
    preset: str = DEFAULT_PRESET,
    size: int = 128,
    steps: int | None = None,
    seed: int = 0,
    progress: bool = True,
) -> FacetResult:
    """k renders of ``unit`` made different by ``- weight * diversity(layer)`` (no data needed)."""
    from ..optim import objectives as O
    from ..optim import render

    if k < 2:
        raise NeuronscopeError(f"diversity needs at least 2 images, got k={k}")
    layer = layer or default_diversity_layer(model, unit)
    obj = unit.objective() - weight * O.diversity(layer)
    r = render(model, obj, batch=k, size=size, steps=steps, preset=preset, seed=[seed + i for i in range(k)],
               progress=progress, description=f"diverse {unit.label}")
    values = measure(model, unit, r.images, size=size)
    facets = [Facet(cluster=i, size=0, members=np.zeros(0, int), nearest=np.zeros(0, int), mean_image=None,
                    image=img, value=float(v)) for i, (img, v) in enumerate(zip(r.images, values))]
    facets.sort(key=lambda f: -f.value)
    meta = {"diversity_layer": layer, "weight": weight, "preset": preset, "size": size, "steps": r.meta.get("steps")}
    return FacetResult(unit, model.name, "diversity", facets, [], None, None, meta)
