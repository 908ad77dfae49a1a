"""Conditions: what a code search maximizes, one unit per batch row.

Units are written as for every other command (:mod:`neuronscope.units`):
``class:ostrich``, ``class:9``, ``blocks.10:5`` (channel 5, mean over positions),
``blocks.10:0-7`` or ``blocks.10:5@3,4`` (the neuron at column 3, row 4).
:class:`Condition` turns a list of units (one per row) into a callable on [0, 1]
image batches that returns one value per row, computed in a single forward pass
from the units' objective terms (:mod:`neuronscope.optim.objectives`):

* ``kind="activation"``: the unit's value (class logit or channel/neuron
  activation) -- DGN-AM's objective;
* ``kind="logprob"``: log p(y | x) -- the PPGN condition. For classes the
  exact log-softmax over the 1,000 logits; for hidden units the log-softmax
  over channels at the unit's position (PPGN's hidden-unit condition).
  ``compat=True`` reproduces the released PPGN gradient, which backpropagates
  only (1 - p_y) into logit y and drops the -p_j terms.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import NeuronscopeError
from ..optim.objectives import Objective
from ..taps import tap
from ..units import Unit, parse_units


class Condition:
    """Per-row values of the targets on [0, 1] images (resized to ``size`` px).

    ``targets`` has one entry per batch row (or a single target for all rows).
    """

    def __init__(self, model, targets, *, size: int | None = None, kind: str = "activation", compat: bool = False):
        if kind not in ("activation", "logprob"):
            raise NeuronscopeError(f"unknown condition kind {kind!r}; valid: activation, logprob")
        self.model = model
        self.size = size or model.input_size
        given = list(targets) if isinstance(targets, (list, tuple)) else [targets]
        texts = [t for t in given if not isinstance(t, Unit)]
        parsed = parse_units(model, texts, size=self.size) if texts else []
        if len(parsed) != len(texts):
            raise NeuronscopeError("a condition takes one unit per target; expand ranges such as blocks.10:0-7 first")
        read = iter(parsed)
        self.targets: list[Unit] = [t if isinstance(t, Unit) else next(read) for t in given]
        self.kind, self.compat = kind, compat
        self.layers = sorted({t.layer for t in self.targets})
        self._objectives: dict[tuple[int, str, bool], Objective] = {}

    def rows(self, B: int) -> list[Unit]:
        if len(self.targets) == 1:
            return self.targets * B
        if len(self.targets) != B:
            raise NeuronscopeError(f"{len(self.targets)} targets for a batch of {B} rows")
        return self.targets

    def _resize(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.size or x.shape[-2] != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return x

    def objective(self, B: int) -> Objective:
        """Each row's unit term bound to its row, for the current kind."""
        key = (B, self.kind, self.compat)
        if key not in self._objectives:
            log_prob = self.kind == "logprob"
            self._objectives[key] = Objective.sum(
                t.objective(log_prob, self.compat and log_prob).on(i) for i, t in enumerate(self.rows(B))
            )
        return self._objectives[key]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        objective = self.objective(x.shape[0])
        x = self._resize(x).to(self.model.device)
        with tap(self.model, self.layers, stop_early=True) as taps:
            taps.run(x)
            acts = {name: taps[name] for name in self.layers}
        objective.check({name: tuple(a.shape[1:]) for name, a in acts.items()}, x.shape[0])
        return objective(acts, x)

    @torch.no_grad()
    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """p(y | x) per row (softmax over classes or channels), for reporting."""
        old, self.kind, oc, self.compat = self.kind, "logprob", self.compat, False
        try:
            return self(x).exp()
        finally:
            self.kind, self.compat = old, oc
