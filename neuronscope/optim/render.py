"""The render loop: optimize a batch of images so each row maximizes its objective.

One call renders many targets at once (one row each): the loss is the *sum* of
per-row values, Adam is elementwise and every post-step operator works per row,
so rows never interact except through an explicit diversity term.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch

from .engine.heap import roomy_heap
from ..errors import NeuronscopeError
from ..models import Model
from ..notebook import RenderDisplay
from ..taps import layer_shapes, tap
from .engine.adam import Adam
from .engine.fast_copy import use_fast
from .objectives import Objective, as_objective
from .params import ImageParam, RawCaffeParam, make_param
from .presets import DEFAULT_PRESET, Preset, get_preset
from .regularizers import deepvis_update, step_size
from .engine.stages import StagedNetwork, plan_stages


#: A post-step image operator: ``op(param, step, frozen)``, called after every optimizer step
#: under ``torch.no_grad()``, in the order given. ``param`` is the render's
#: :class:`~neuronscope.optim.params.ImageParam` (edit its tensors in place, e.g. through
#: ``param.row_parameters()``), ``step`` the step just taken (0-based), ``frozen`` a (B,) bool
#: tensor on the render's device marking rows that have stopped. Whatever an operator does to
#: a frozen row is undone after the last operator, so frozen rows stay exactly as they were.
PostStep = Callable[[ImageParam, int, torch.Tensor], None]


@dataclass
class RenderResult(RenderDisplay):  # shows itself in Jupyter (neuronscope.notebook)
    images: torch.Tensor  # (B, 3, H, W) in [0, 1], CPU
    values: torch.Tensor  # (B,) objective per row on the returned images (no transforms)
    trace: np.ndarray  # (steps, B) objective per row at each step (under transforms)
    snapshots: dict[int, torch.Tensor] = field(default_factory=dict)
    steps_run: np.ndarray | None = None  # (B,) steps each row ran before it stopped
    seconds: float = 0.0
    meta: dict = field(default_factory=dict)


def _rowwise_objective(objectives) -> tuple[Objective, int]:
    if isinstance(objectives, (Objective, str)):
        obj = as_objective(objectives)
        return obj, obj.rows_needed()
    objectives = list(objectives)
    if not objectives:
        raise NeuronscopeError("nothing to render: no objectives given")
    return Objective.sum(as_objective(o).on(i) for i, o in enumerate(objectives)), len(objectives)


def evaluate(model: Model, objective: Objective, images: torch.Tensor) -> torch.Tensor:
    """Objective per row on images as given (no transforms), without gradients."""
    layers = [n for n in objective.layers if n != "input"]
    with torch.inference_mode(), tap(model, layers, stop_early=True) as taps:
        x = images.to(model.device)
        if layers:
            taps.run(x)
        return objective(taps.values, x).float().cpu()


def render(
    model: Model,
    objectives,
    *,
    batch: int | None = None,
    size: int | None = None,
    steps: int | None = None,
    preset: str | Preset = DEFAULT_PRESET,
    seed: int | Sequence[int] = 0,
    init: torch.Tensor | None = None,
    lr: float | None = None,
    transforms=None,
    param: ImageParam | None = None,
    thresholds: Sequence[int] = (),
    target_value: float | None = None,
    device: str | torch.device | None = None,
    progress: bool = True,
    callback: Callable[[int, torch.Tensor, torch.Tensor], bool | None] | None = None,
    description: str = "render",
    fast: bool | None = None,
    precision: str = "mixed",
    post_steps: Sequence[PostStep] = (),
    prior=None,
) -> RenderResult:
    """Synthesize the inputs that maximize ``objectives``.

    ``objectives``: one Objective (rows given by its ``.on`` bindings, or
    ``batch``), or a list with one objective per row. ``seed``: one seed per row,
    or an int: with a list, every row uses it; with one objective, row i uses
    seed + i. Row i's start depends only on its own seed.
    ``init``: (B, 3, H, W) images in [0, 1] to start from. ``thresholds``: steps
    at which to keep snapshots. ``target_value``: a row stops (is frozen) once its
    objective reaches it. ``callback(step, images, values)`` may return True to stop.
    ``fast``: optimize through a faster copy of the model (BatchNorm folded into
    convolutions, channels-last on CPU; the same function up to float rounding, see
    :mod:`neuronscope.optim.engine.fast_copy`); ``None`` does so on CPU for renders big enough
    to repay building the copy. ``precision`` of that copy: ``mixed`` (default: on a
    device with native bfloat16, the first steps in bfloat16 and the last quarter in
    float32, see :mod:`neuronscope.optim.engine.stages`; float32 elsewhere), ``float32``,
    ``bfloat16`` (fastest; its input gradient is only ~0.92 cosine-similar to
    float32's), or ``auto`` (bfloat16 where native, else float32). Measured in
    benchmarks/render_vs_lucent.py and docs/render-speed.md.
    ``post_steps``: post-step image operators, ``op(param, step, frozen)`` called in
    order after every optimizer step under ``torch.no_grad()`` (see :data:`PostStep`).
    The returned values always use the model as given, in float32.
    ``prior``: the learned natural-image prior's step, the first post-step operator (a
    :class:`~neuronscope.priors.DenoisingPrior`, a dict of its settings, or False for
    none); default: the preset's (the default preset ``natural`` has one).
    """
    p = get_preset(preset)
    objective, rows = _rowwise_objective(objectives)
    batch = batch or rows
    if batch < rows:
        raise NeuronscopeError(f"batch={batch} is smaller than the {rows} rows the objective is bound to")
    if device is not None:
        from ..models import resolve_device

        model = model.to(resolve_device(device))
    dev = model.device
    steps = p.steps if steps is None else int(steps)
    size = int(size or model.input_size)
    if steps < 1:
        raise NeuronscopeError(f"steps must be at least 1, got {steps}")
    if size < 16:
        raise NeuronscopeError(f"size must be at least 16 px, got {size}")
    objective.check(layer_shapes(model, objective.layers, size), batch)
    if isinstance(seed, (int, np.integer)):
        # one objective over several rows means replicates (e.g. a diversity group): give
        # each row its own start, or identical rows could never separate. A list of
        # objectives gives every row the same seed, so a unit renders the same alone or batched.
        replicate = isinstance(objectives, (Objective, str))
        seeds = [int(seed) + (i if replicate else 0) for i in range(batch)]
    else:
        seeds = [int(s) for s in seed]
    if len(seeds) != batch:
        raise NeuronscopeError(f"got {len(seeds)} seeds for {batch} rows")
    if init is not None:
        init = torch.as_tensor(init, dtype=torch.float32)
        if init.dim() == 3:
            init = init.unsqueeze(0)
        if init.shape[0] == 1 and batch > 1:
            init = init.expand(batch, -1, -1, -1)
        if init.shape[0] != batch or init.shape[1] != 3:
            raise NeuronscopeError(f"init must be (B, 3, H, W) with B = {batch}, got {tuple(init.shape)}")
        if not torch.isfinite(init).all():
            raise NeuronscopeError("init images contain NaN or infinite values")

    param = param or make_param(p.param, batch, size, seeds, init=init, **p.param_kw)
    param = param.to(dev)
    tfm = (transforms if transforms is not None else p.transforms()).to(dev)
    gen = torch.Generator().manual_seed(seeds[0])
    layers = [n for n in objective.layers if n != "input"]
    if fast is None:
        fast = use_fast(dev, batch, size, steps)
    stages = plan_stages(model, layers, fast=fast, precision=precision, steps=steps, batch=batch)

    deepvis = p.optimizer == "deepvis"
    if deepvis and not isinstance(param, RawCaffeParam):
        raise NeuronscopeError(f"preset {p.name} needs the 'caffe' pixel parameterization")
    opt = None if deepvis else Adam(param.parameters(), lr=lr or p.lr)
    prior_step = _prior(p.prior if prior is None else prior, steps, dev)
    post_steps = ([prior_step] if prior_step is not None else []) + list(post_steps)
    caffe_mean = RawCaffeParam.MEAN.to(dev).view(1, 3, 1, 1)

    trace = np.zeros((steps, batch), dtype=np.float32)
    done = torch.zeros(batch, dtype=torch.bool)
    steps_run = np.full(batch, steps)
    snapshots: dict[int, torch.Tensor] = {}
    best_val = torch.full((batch,), -float("inf"))
    best_img: torch.Tensor | None = None
    wanted = set(int(t) for t in thresholds)
    bar = _progress(steps, description, progress)
    start = time.perf_counter()
    eta0 = None
    # the whole render, including the final evaluation, keeps freed memory in the process:
    # returning it between the loop and the evaluation made the evaluation fault ~500 MB back in
    with roomy_heap():
        try:
            with StagedNetwork(stages, layers, p.redirect_steps) as network:
                for step in range(steps):
                    image = param()
                    x = tfm(image, gen)
                    values = objective(network.run(step, x), x)
                    if not torch.isfinite(values).all():
                        raise NeuronscopeError(
                            f"the objective became NaN/inf at step {step}; lower the learning rate or check the model"
                        )
                    v = values.detach().float().cpu()
                    trace[step] = v.numpy()
                    if p.keep == "best":
                        better = v > best_val
                        if bool(better.any()):
                            img = image.detach().cpu()
                            best_img = img.clone() if best_img is None else torch.where(better.view(-1, 1, 1, 1), img, best_img)
                            best_val = torch.where(better, v, best_val)
                    if step in wanted:
                        snapshots[step] = image.detach().cpu()
                    if target_value is not None:
                        newly = (v >= target_value) & ~done
                        steps_run[newly.numpy()] = step
                        done |= newly
                    if callback is not None and callback(step, image.detach(), v):
                        steps_run[:] = np.minimum(steps_run, step)
                        trace = trace[: step + 1]
                        break
                    if bool(done.all()):
                        trace = trace[: step + 1]
                        break
                    if step == steps - 1 and deepvis:
                        break  # the paper's loop does not update after the last forward pass
                    loss = -values.sum()
                    param.zero_grad(set_to_none=True)
                    loss.backward()
                    frozen = done.to(dev)
                    saved = [t.detach().clone() for t in param.row_parameters()] if bool(frozen.any()) else None
                    if deepvis:
                        with torch.no_grad():
                            g = param.pixels.grad.clone()
                            # sign: we minimized -V, so the ascent direction is -grad
                            if p.deepvis.lr_policy == "calibrated" and eta0 is None:
                                eta0 = step_size(-g, p.deepvis)
                            param.pixels.copy_(deepvis_update(param.pixels, -g, step, p.deepvis, caffe_mean, eta0))
                    else:
                        opt.step()
                    with torch.no_grad():
                        # the post-step image operators, in order; then frozen rows are put back as they were
                        for op in post_steps:
                            op(param, step, frozen)
                        if saved is not None:
                            for t, s in zip(param.row_parameters(), saved):
                                t.copy_(torch.where(frozen.view(-1, *([1] * (t.dim() - 1))), s, t))
                    bar.update(1)
                    bar.set_postfix_str(f"objective {v.mean():.3g}", refresh=False)
            seconds = time.perf_counter() - start
            with torch.no_grad():
                final = param().detach().cpu()
            if p.keep == "best" and best_img is not None:
                final = best_img
            values = evaluate(model, objective, final)
        finally:
            bar.close()
    meta = {"preset": p.name, "param": p.param, "size": size, "steps": int(trace.shape[0]), "seeds": seeds,
            "lr": lr or p.lr, "device": str(dev), "redirect_steps": p.redirect_steps, "keep": p.keep,
            "fast": stages[0].info or None, "stages": [s.describe() for s in stages],
            "prior": prior_step.describe() if prior_step is not None else None}
    return RenderResult(final, values, trace, snapshots, steps_run, seconds, meta)


def _prior(spec, steps: int, device):
    """The prior step a render takes: None, or a DenoisingPrior bound to this render."""
    if spec is None or spec is False:
        return None
    from ..priors import DenoisingPrior

    if isinstance(spec, dict):
        spec = DenoisingPrior(**spec)
    if not isinstance(spec, DenoisingPrior):
        raise NeuronscopeError(f"prior must be a DenoisingPrior, a dict of its settings or False, got {spec!r}")
    return spec.start(steps, device)


class _NoBar:
    def update(self, n=1):
        pass

    def set_postfix_str(self, *a, **k):
        pass

    def close(self):
        pass


def _progress(total: int, desc: str, enabled: bool):
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="step", leave=False, dynamic_ncols=True)
