"""What a render will do, decided before its first step: the :class:`RenderPlan`.

:func:`plan_render` checks the request and builds every part the render loop
(:mod:`neuronscope.optim.render`) runs: the image parameterization, the
transforms, the optimizer, the network stages of the engine, the post-step
image operators and the stopping criteria. Nothing here runs the optimization.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch

from ..errors import NeuronscopeError
from ..models import Model
from ..taps import layer_shapes
from .criteria import AllRowsDone, Callback, Criterion, KeepBest, NoUpdateAfterLastStep, TargetValue
from .engine import Engine, Stage, plan_network, process_tuning_wanted
from .engine.adam import Adam
from .objectives import Objective, as_objective
from .params import ImageParam, RawCaffeParam, make_param
from .presets import DEFAULT_PRESET, Preset, get_preset
from .regularizers import DeepVisAscent
from .transforms import Compose

#: A post-step image operator: ``op(param, step, frozen)``, called after every optimizer step
#: under ``torch.no_grad()``, in the order given. ``param`` is the render's
#: :class:`~neuronscope.optim.params.ImageParam` (edit its tensors in place, e.g. through
#: ``param.row_parameters()``), ``step`` the step just taken (0-based), ``frozen`` a (B,) bool
#: tensor on the render's device marking rows that have stopped. Whatever an operator does to
#: a frozen row is undone after the last operator, so frozen rows stay exactly as they were.
PostStep = Callable[[ImageParam, int, torch.Tensor], None]


@dataclass
class RenderPlan:
    preset: Preset
    objective: Objective
    batch: int
    size: int
    steps: int
    seeds: list[int]
    lr: float
    param: ImageParam
    transforms: Compose
    generator: torch.Generator  # draws the random transforms
    optimizer: object  # step() / zero_grad(): engine.adam.Adam or regularizers.DeepVisAscent
    layers: list[str]  # the tapped layers
    stages: list[Stage]  # which network runs each step (engine.stages)
    redirect_steps: int  # ReLU gradient redirection while step <= this
    post_steps: list[PostStep] = field(default_factory=list)
    criteria: list[Criterion] = field(default_factory=list)
    snapshot_steps: frozenset[int] = frozenset()
    tune_process: bool = False  # process-wide settings for speed (engine.process)
    prior: object | None = None  # the learned image prior's step (neuronscope.priors), also the first post_step
    progress: bool = True  # a progress bar while running
    description: str = "render"  # the progress bar's label

    def meta(self, model: Model, steps_done: int) -> dict:
        p = self.preset
        return {"preset": p.name, "param": p.param, "size": self.size, "steps": steps_done, "seeds": self.seeds,
                "lr": self.lr, "device": str(model.device), "redirect_steps": self.redirect_steps, "keep": p.keep,
                "fast": self.stages[0].info or None, "stages": [s.describe() for s in self.stages],
                "prior": self.prior.describe() if self.prior is not None else None}


def _rowwise_objective(objectives) -> tuple[Objective, int]:
    if isinstance(objectives, (Objective, str)):
        obj = as_objective(objectives)
        return obj, obj.rows_needed()
    objectives = list(objectives)
    if not objectives:
        raise NeuronscopeError("nothing to render: no objectives given")
    return Objective.sum(as_objective(o).on(i) for i, o in enumerate(objectives)), len(objectives)


def _seeds(seed, objectives, batch: int) -> list[int]:
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
    return seeds


def _init_images(init, batch: int) -> torch.Tensor | None:
    if init is None:
        return None
    init = torch.as_tensor(init, dtype=torch.float32)
    if init.dim() == 3:
        init = init.unsqueeze(0)
    if init.shape[0] == 1 and batch > 1:
        init = init.expand(batch, -1, -1, -1)
    if init.shape[0] != batch or init.shape[1] != 3:
        raise NeuronscopeError(f"init must be (B, 3, H, W) with B = {batch}, got {tuple(init.shape)}")
    if not torch.isfinite(init).all():
        raise NeuronscopeError("init images contain NaN or infinite values")
    return init


def _prior(spec, steps: int, device, dtype):
    """The prior step a render takes: None, or a DenoisingPrior bound to this render."""
    from ..priors import as_prior

    prior = as_prior(spec)
    return prior.start(steps, device, dtype) if prior is not None else None


def make_optimizer(preset: Preset, param: ImageParam, lr: float):
    """The preset's optimizer over ``param``: Adam, or the regularized ascent of Yosinski et al. 2015."""
    if preset.optimizer == "deepvis":
        if not isinstance(param, RawCaffeParam):
            raise NeuronscopeError(f"preset {preset.name} needs the 'caffe' pixel parameterization")
        return DeepVisAscent(param.pixels, preset.deepvis, RawCaffeParam.MEAN)
    return Adam(param.parameters(), lr=lr)


def plan_render(
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
    callback: Callable[[int, torch.Tensor, torch.Tensor], bool | None] | None = None,
    engine: Engine | str | None = None,
    tune_process: bool | None = None,
    post_steps: Sequence[PostStep] = (),
    criteria: Sequence[Criterion] = (),
    prior=None,
    device: str | torch.device | None = None,
    progress: bool = True,
    description: str = "render",
) -> RenderPlan:
    """Check a render request and build its plan.

    The one declaration of a render's settings: :func:`~neuronscope.optim.render.render`
    takes exactly these arguments (its docstring describes them). ``device`` moves
    ``model`` there first (in place, as ``nn.Module.to`` does).
    """
    if device is not None:
        from ..models import resolve_device

        model = model.to(resolve_device(device))
    p = get_preset(preset)
    engine = Engine(precision=p.precision) if engine is None else Engine.parse(engine)
    objective, rows = _rowwise_objective(objectives)
    batch = batch or rows
    if batch < rows:
        raise NeuronscopeError(f"batch={batch} is smaller than the {rows} rows the objective is bound to")
    dev = model.device
    steps = p.steps if steps is None else int(steps)
    size = int(size or model.input_size)
    if steps < 1:
        raise NeuronscopeError(f"steps must be at least 1, got {steps}")
    if size < 16:
        raise NeuronscopeError(f"size must be at least 16 px, got {size}")
    objective.check(layer_shapes(model, objective.layers, size), batch)
    seeds = _seeds(seed, objectives, batch)
    init = _init_images(init, batch)

    param = (param or make_param(p.param, batch, size, seeds, init=init, **p.param_kw)).to(dev)
    tfm = (transforms if transforms is not None else p.transforms()).to(dev)
    lr = lr or p.lr
    optimizer = make_optimizer(p, param, lr)
    # the engine as this render decides it: a render too small for the fast copy runs the model as given,
    # in float32, and so does the prior's denoiser
    engine = engine.resolved(dev, batch=batch, size=size, steps=steps)
    prior_step = _prior(p.prior if prior is None else prior, steps, dev, engine.prior_dtype(dev))
    post_steps = ([prior_step] if prior_step is not None else []) + list(post_steps)
    layers = [n for n in objective.layers if n != "input"]
    tune = process_tuning_wanted(tune_process)
    stages = plan_network(model, layers, engine, batch=batch, size=size, steps=steps, split_rows=tune)

    extra_criteria, criteria = criteria, []
    if p.keep == "best":
        criteria.append(KeepBest())
    if target_value is not None:
        criteria.append(TargetValue(target_value))
    if callback is not None:
        criteria.append(Callback(callback))
    criteria += list(extra_criteria)
    criteria.append(AllRowsDone())
    if not getattr(optimizer, "updates_after_last_step", True):
        criteria.append(NoUpdateAfterLastStep(steps))
    return RenderPlan(p, objective, batch, size, steps, seeds, lr, param, tfm, torch.Generator().manual_seed(seeds[0]),
                      optimizer, layers, stages, p.redirect_steps, post_steps, criteria,
                      frozenset(int(t) for t in thresholds), tune, prior_step, progress, description)
