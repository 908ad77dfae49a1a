"""When a render stops: small criteria the render loop consults after every forward pass.

Each criterion sees the step, the images of that step (before transforms), the
objective per row and the loop's :class:`LoopState`, and returns True to stop
the render there (``observe``). It may freeze rows (``state.done``: a frozen
row's image is no longer changed) and record how many steps a row ran
(``state.steps_run``). ``final`` may choose the images the render returns. The
loop asks the criteria in order and stops at the first that says so; the
plan (:mod:`neuronscope.optim.plan`) puts them in this order: keep-best,
target value, callback, the caller's own (``render(..., criteria=[...])``), all
rows done, then the optimizer's last-step rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch


@dataclass
class LoopState:
    """What the render loop knows about its rows: which are frozen, and the steps each ran."""

    done: torch.Tensor  # (B,) bool, on the CPU: rows that stopped
    steps_run: np.ndarray  # (B,) steps each row ran before it stopped

    @classmethod
    def start(cls, batch: int, steps: int) -> "LoopState":
        return cls(torch.zeros(batch, dtype=torch.bool), np.full(batch, steps))


class Criterion:
    """Base: never stops, returns the last images."""

    def observe(self, step: int, images: torch.Tensor, values: torch.Tensor, state: LoopState) -> bool:
        return False

    def final(self, images: torch.Tensor) -> torch.Tensor:
        return images


class KeepBest(Criterion):
    """Return each row's image of its best objective value (on the CPU) instead of the last one."""

    def __init__(self):
        self.values: torch.Tensor | None = None
        self.images: torch.Tensor | None = None

    def observe(self, step, images, values, state):
        if self.values is None:
            self.values = torch.full_like(values, -float("inf"))
        better = values > self.values
        if bool(better.any()):
            img = images.detach().cpu()
            self.images = img.clone() if self.images is None else torch.where(better.view(-1, 1, 1, 1), img, self.images)
            self.values = torch.where(better, values, self.values)
        return False

    def final(self, images):
        return images if self.images is None else self.images


class TargetValue(Criterion):
    """Freeze a row once its objective reaches ``target`` (the row's steps_run is that step)."""

    def __init__(self, target: float):
        self.target = float(target)

    def observe(self, step, images, values, state):
        newly = (values >= self.target) & ~state.done
        state.steps_run[newly.numpy()] = step
        state.done |= newly
        return False


class AllRowsDone(Criterion):
    """Stop once every row is frozen."""

    def observe(self, step, images, values, state):
        return bool(state.done.all())


class Callback(Criterion):
    """``fn(step, images, values)`` returning True stops every row at this step."""

    def __init__(self, fn: Callable[[int, torch.Tensor, torch.Tensor], bool | None]):
        self.fn = fn

    def observe(self, step, images, values, state):
        if self.fn(step, images.detach(), values):
            state.steps_run[:] = np.minimum(state.steps_run, step)
            return True
        return False


class NoUpdateAfterLastStep(Criterion):
    """Stop after the last forward pass, before its update (the loop of Yosinski et al. 2015)."""

    def __init__(self, steps: int):
        self.last = steps - 1

    def observe(self, step, images, values, state):
        return step == self.last
