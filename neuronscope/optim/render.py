"""The render loop: optimize a batch of images so each row maximizes its objective.

One call renders many targets at once (one row each): the loss is the *sum* of
per-row values, the optimizers are elementwise and every post-step operator works
per row, so rows never interact except through an explicit diversity term.

:func:`render` builds a :class:`~neuronscope.optim.plan.RenderPlan` first (the
parameterization, transforms, optimizer, network stages, post-step operators and
stopping criteria) and :func:`run_plan` runs it. Each step: the image, its
transforms, the objective through the step's network; the criteria (which may
freeze rows or stop); the backward pass; the optimizer's step; then the
**post-step image operators** (:data:`~neuronscope.optim.plan.PostStep`), after
which frozen rows are put back as they were.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import NeuronscopeError
from ..models import Model
from ..notebook import RenderDisplay
from ..signatures import takes_arguments_of
from ..taps import tap
from .criteria import LoopState
from .engine import StagedNetwork, tuned_process
from .objectives import Objective
from .plan import PostStep, RenderPlan, plan_render

__all__ = ["PostStep", "RenderPlan", "RenderResult", "evaluate", "plan_render", "render", "run_plan"]


@dataclass
class RenderResult(RenderDisplay):  # shows itself in Jupyter (neuronscope.notebook)
    images: torch.Tensor  # (B, 3, H, W) in [0, 1], CPU
    values: torch.Tensor  # (B,) objective per row on the returned images (no transforms)
    trace: np.ndarray  # (steps, B) objective per row at each step (under transforms)
    snapshots: dict[int, torch.Tensor] = field(default_factory=dict)
    steps_run: np.ndarray | None = None  # (B,) steps each row ran before it stopped
    seconds: float = 0.0
    meta: dict = field(default_factory=dict)


def evaluate(model: Model, objective: Objective, images: torch.Tensor) -> torch.Tensor:
    """Objective per row on images as given (no transforms), without gradients."""
    layers = [n for n in objective.layers if n != "input"]
    with torch.inference_mode(), tap(model, layers, stop_early=True) as taps:
        x = images.to(model.device)
        if layers:
            taps.run(x)
        return objective(taps.values, x).float().cpu()


@takes_arguments_of(plan_render)
def render(model: Model, objectives, **settings) -> RenderResult:
    """Synthesize the inputs that maximize ``objectives``.

    ``objectives``: one Objective (rows given by its ``.on`` bindings, or
    ``batch``), or a list with one objective per row. ``seed``: one seed per row,
    or an int: with a list, every row uses it; with one objective, row i uses
    seed + i. Row i's start depends only on its own seed.
    ``init``: (B, 3, H, W) images in [0, 1] to start from. ``thresholds``: steps
    at which to keep snapshots. ``target_value``: a row stops (is frozen) once its
    objective reaches it. ``callback(step, images, values)`` may return True to stop.
    ``engine``: how the network is computed, an :class:`~neuronscope.optim.engine.Engine`
    or a name (``"plain"``, ``"fast"``, ``"mixed"``, ``"float32"``, ``"bfloat16"``,
    ``"auto"``); default: a faster copy of the model for renders big enough to repay
    it, in mixed precision (docs/render-speed.md). ``tune_process``: allow settings
    that affect the whole process for speed (glibc heap, threads; restored after):
    ``None`` follows the process default, off unless the application turned it on
    (:mod:`neuronscope.optim.engine.process`; the command line does).
    ``post_steps``: post-step image operators, ``op(param, step, frozen)`` called in
    order after every optimizer step under ``torch.no_grad()`` (see
    :data:`~neuronscope.optim.plan.PostStep`). ``criteria``: more stopping rules
    (:class:`~neuronscope.optim.criteria.Criterion`), asked after the target value and the
    callback. ``prior``: the learned natural-image prior's step, the first post-step
    operator (a :class:`~neuronscope.priors.DenoisingPrior`, a dict of its settings, or
    False for none); default: the preset's (the default preset ``natural`` has one).
    ``size``: default the model's input size. ``device``: move the model there first.
    ``progress``: show a progress bar labelled ``description``. The returned values
    always use the model as given, in float32.

    The settings are declared once, by :func:`~neuronscope.optim.plan.plan_render`:
    ``render(model, objectives, **settings)`` plans with them and runs the plan.
    """
    plan = plan_render(model, objectives, **settings)
    return run_plan(model, plan)


def run_plan(model: Model, plan: RenderPlan, *, progress: bool | None = None, description: str | None = None) -> RenderResult:
    """Run a plan (once: its optimizer and criteria keep state) on ``model``, the model it was planned for.

    ``progress`` and ``description`` default to the plan's.
    """
    progress = plan.progress if progress is None else progress
    description = plan.description if description is None else description
    param, dev = plan.param, model.device
    trace = np.zeros((plan.steps, plan.batch), dtype=np.float32)
    state = LoopState.start(plan.batch, plan.steps)
    snapshots: dict[int, torch.Tensor] = {}
    bar = _progress(plan.steps, description, progress)
    start = time.perf_counter()
    # process settings (when allowed) hold for the final evaluation too: returning freed memory
    # between the loop and the evaluation made the evaluation fault ~500 MB back in
    with tuned_process(plan.tune_process):
        try:
            with StagedNetwork(plan.stages, plan.layers, plan.redirect_steps) as network:
                for step in range(plan.steps):
                    image = param()
                    x = plan.transforms(image, plan.generator)
                    values = plan.objective(network.run(step, x), x)
                    if not torch.isfinite(values).all():
                        raise NeuronscopeError(f"the objective became NaN/inf at step {step}; "
                                               "lower the learning rate or check the model")
                    v = values.detach().float().cpu()
                    trace[step] = v.numpy()
                    if step in plan.snapshot_steps:
                        snapshots[step] = image.detach().cpu()
                    if any(c.observe(step, image, v, state) for c in plan.criteria):
                        trace = trace[: step + 1]
                        break
                    param.zero_grad(set_to_none=True)
                    (-values.sum()).backward()
                    _update(plan, step, state.done.to(dev))
                    bar.update(1)
                    bar.set_postfix_str(f"objective {v.mean():.3g}", refresh=False)
            seconds = time.perf_counter() - start
            with torch.no_grad():
                final = param().detach().cpu()
            for c in plan.criteria:
                final = c.final(final)
            values = evaluate(model, plan.objective, final)
        finally:
            bar.close()
    return RenderResult(final, values, trace, snapshots, state.steps_run, seconds, plan.meta(model, trace.shape[0]))


def _update(plan: RenderPlan, step: int, frozen: torch.Tensor) -> None:
    """The optimizer's step, then the post-step image operators in order; frozen rows are put back as they were."""
    saved = [t.detach().clone() for t in plan.param.row_parameters()] if bool(frozen.any()) else None
    plan.optimizer.step()
    with torch.no_grad():
        for op in plan.post_steps:
            op(plan.param, step, frozen)
        if saved is not None:
            for t, s in zip(plan.param.row_parameters(), saved):
                t.copy_(torch.where(frozen.view(-1, *([1] * (t.dim() - 1))), s, t))


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
