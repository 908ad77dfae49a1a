"""The networks a render optimizes through, step by step: precision stages, taps, ReLU redirection, row split.

A render runs the model forward and backward once per step. Which network does it:

* ``fast=False`` (``Engine(fast=False)``, ``engine="plain"``): the model as given.
* otherwise a faster copy (:mod:`neuronscope.optim.engine.fast_copy`), in the ``precision``
  asked for. ``precision="mixed"`` runs the first steps through a bfloat16 copy
  and the last :data:`FLOAT32_TAIL` of them through a float32 one, so the image
  the render returns is refined by float32 gradients (same parameterization and
  Adam state throughout; only the network changes).
* a bfloat16 stage on a multi-core CPU splits the rows over threads
  (:mod:`neuronscope.optim.engine.row_split`), each with its own copy, when the
  caller allowed process-wide tuning (:mod:`neuronscope.optim.engine.process`).

:class:`StagedNetwork` enters each stage's taps (and, for the first
``redirect_steps``, ReLU redirection) when its first step comes, and leaves them
when the stage ends or the block exits, whatever happens.
"""

from __future__ import annotations

import copy
from contextlib import ExitStack
from dataclasses import dataclass

import torch

from ...errors import NeuronscopeError
from ...models import Model
from ...taps import tap
from .fast_copy import PRECISIONS as COPY_PRECISIONS
from .fast_copy import fast_model, native_bf16, resolve_precision
from ...gradient_overrides import rectifier_rules
from .row_split import RowSplitter

#: with precision="mixed", the share of the steps (the last ones) run in float32. Chosen on 31 ImageNet
#: classes outside benchmarks/classes.py (Lite0 class logits, 224 px, 128 steps, judged by Lite1/Lite2):
#: Lite2 top-1 float32 0.61, tail 1/4 0.71, tail 1/2 0.68, bfloat16 throughout 0.65 (Lite1: 0.77, 0.77,
#: 0.81, 0.81). Within the noise of 31 classes none is worse than float32; a float32 tail keeps the
#: last refinements on exact gradients for part of the time bfloat16 saves (docs/render-speed.md).
FLOAT32_TAIL = 0.25

#: what render(precision=...) takes: the fast copy's precisions, and the staged "mixed"
PRECISIONS = (*COPY_PRECISIONS, "mixed")


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise NeuronscopeError(f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}")
    return precision


def precision_plan(device: torch.device | str, precision: str, steps: int) -> list[tuple[int, str]]:
    """``(first step, precision)`` of each stage of a render through the faster copy: ``mixed`` is bfloat16
    and then float32 for the last :data:`FLOAT32_TAIL` of the steps on a device with native bfloat16,
    float32 alone elsewhere (or when the tail would be every step); any other precision is one stage."""
    if precision == "mixed":
        tail = max(1, round(steps * FLOAT32_TAIL))
        if not native_bf16(device) or tail >= steps:
            return [(0, "float32")]
        return [(0, "bfloat16"), (steps - tail, "float32")]
    return [(0, check_precision(precision))]


def arithmetic(dtypes: list[str]) -> str:
    """One label for what a render computes in, from its stages' dtypes in step order (``Stage.describe()``'s
    ``dtype``): ``float32``, ``bfloat16``, or ``mixed (bfloat16 steps, float32 tail)``."""
    names = list(dict.fromkeys(dtypes))
    if not names:
        raise NeuronscopeError("a render has at least one stage")
    return names[0] if len(names) == 1 else f"mixed ({names[0]} steps, {names[-1]} tail)"


@dataclass
class Stage:
    start: int  # first step of this stage
    copies: list[Model]  # one network per thread (the first is the shared cached copy)
    info: dict  # what the copy is (FastInfo.as_dict()), for the render metadata

    def describe(self) -> dict:
        return {"from_step": self.start, "dtype": self.info.get("dtype", "float32") if self.info else "float32",
                "threads": len(self.copies)}


def _split_threads(device: torch.device, dtype: torch.dtype, batch: int) -> int:
    """How many row chunks a stage runs as: only bfloat16 on a multi-core CPU gained from it (see row_split)."""
    if device.type != "cpu" or dtype != torch.bfloat16:
        return 1
    return max(1, min(torch.get_num_threads(), batch))


def plan_stages(model: Model, layers: list[str], *, fast: bool, precision: str, steps: int,
                batch: int, split_rows: bool = False) -> list[Stage]:
    """The stages of a render of ``steps`` steps. ``split_rows``: a bfloat16 stage on a multi-core CPU
    runs its rows on parallel threads (threads started while it runs begin with one intra-op thread,
    see :mod:`.row_split`, so only when the caller allowed process tuning, see :mod:`.process`)."""
    plan = precision_plan(model.device, precision, steps)
    if not fast:
        return [Stage(0, [model], {})]
    stages = []
    for start, prec in plan:
        net, info = fast_model(model, layers, precision=prec)
        dtype = resolve_precision(prec, model.device)
        # fast_model hands back the model itself when it cannot be copied: never share it between threads
        n = _split_threads(model.device, dtype, batch) if split_rows and net is not model else 1
        copies = [net] + [copy.deepcopy(net) for _ in range(n - 1)]
        stages.append(Stage(start, copies, info.as_dict()))
    return stages


class StagedNetwork:
    """``run(step, x)``: the tapped layers (float32) of ``x`` through the network of ``step``'s stage."""

    def __init__(self, stages: list[Stage], layers: list[str], redirect_steps: int = -1):
        self.stages, self.layers, self.redirect_steps = stages, layers, redirect_steps
        self._current: Stage | None = None
        self._stack: ExitStack | None = None
        self._redirects: ExitStack | None = None
        self._taps = []
        self._splitter: RowSplitter | None = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._leave()

    def _leave(self):
        try:
            if self._redirects is not None:
                self._redirects.close()
            if self._stack is not None:
                self._stack.close()
        finally:
            self._current, self._stack, self._redirects, self._splitter, self._taps = None, None, None, None, []

    def _enter(self, stage: Stage, step: int):
        self._leave()
        stack = ExitStack()
        self._stack, self._current = stack, stage
        self._taps = [stack.enter_context(tap(net, self.layers, stop_early=True)) for net in stage.copies]
        if len(stage.copies) > 1 and self.layers:
            self._splitter = RowSplitter(self._taps, self.layers)
            stack.callback(self._splitter.close)
        if step <= self.redirect_steps:
            self._redirects = ExitStack()
            for net in stage.copies:
                self._redirects.enter_context(rectifier_rules(net.net, "redirect"))

    def stage_at(self, step: int) -> Stage:
        return [s for s in self.stages if s.start <= step][-1]

    def run(self, step: int, x: torch.Tensor) -> dict:
        stage = self.stage_at(step)
        if stage is not self._current:
            self._enter(stage, step)
        if self._redirects is not None and step > self.redirect_steps:
            self._redirects.close()
            self._redirects = None
        if not self.layers:
            return {}
        if self._splitter is not None:
            values = self._splitter.run(x)
        else:
            self._taps[0].run(x)
            values = self._taps[0].values
        return _float32(values)


def _float32(values: dict) -> dict:
    """Tapped tensors of a reduced-precision copy, as float32 (the objective is computed in float32)."""
    return {k: v.float() if isinstance(v, torch.Tensor) and v.is_floating_point() and v.dtype != torch.float32
            else v for k, v in values.items()}
