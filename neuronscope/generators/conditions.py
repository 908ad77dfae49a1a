"""Targets and conditions: what a code search maximizes, one target per batch row.

A target is written like the other commands' targets: ``class:ostrich``,
``class:9``, ``blocks.10:5`` (channel 5, mean over positions) or
``blocks.10:5@3,4`` (the neuron at column 3, row 4). :class:`Condition` turns
a list of targets (one per row) into a callable on [0, 1] image batches that
returns one value per row, computed in a single forward pass:

* ``kind="activation"``: the unit's value (class logit or channel/neuron
  activation) -- DGN-AM's objective;
* ``kind="logprob"``: log p(y | x) -- the PPGN condition. For classes the
  exact log-softmax over the 1,000 logits; for hidden units the log-softmax
  over channels at the unit's position (PPGN's hidden-unit condition).
  ``compat=True`` reproduces the released PPGN gradient, which backpropagates
  only (1 - p_y) into logit y and drops the -p_j terms.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import NeuronscopeError, closest
from ..taps import resolve, tap


@dataclass(frozen=True)
class Target:
    """One unit: a class (layer ``logits``) or a channel / neuron of a layer."""

    layer: str
    unit: int
    xy: tuple[int, int] | None = None
    label: str = ""

    @property
    def is_class(self) -> bool:
        return self.layer == "logits"


_UNIT = re.compile(r"^(?P<layer>[^:]+):(?P<unit>\d+)(@(?P<x>\d+),(?P<y>\d+))?$")


def parse_target(model, text: str) -> Target:
    """``class:NAME`` / ``class:K`` / ``LAYER:C`` / ``LAYER:C@X,Y`` -> :class:`Target`."""
    t = text.strip()
    if t.startswith("class:"):
        name = t[len("class:"):].strip()
        n = len(model.labels or []) or None
        if name.isdigit():
            k = int(name)
            if n is not None and not 0 <= k < n:
                raise NeuronscopeError(f"class index {k} out of range; valid: 0..{n - 1}")
        else:
            if not model.labels:
                raise NeuronscopeError(f"model {model.name!r} has no class names; use class:INDEX")
            k = model.class_index(name)
        label = model.label(k) if model.labels else f"class {k}"
        return Target("logits", k, None, f"{label} ({k})")
    m = _UNIT.match(t)
    if not m:
        raise NeuronscopeError(
            f"cannot read target {text!r}; valid forms: class:NAME, class:INDEX, LAYER:CHANNEL, LAYER:CHANNEL@X,Y "
            "(e.g. class:ostrich, blocks.10:5, blocks.10:5@3,4)"
        )
    resolve(model, m["layer"])
    xy = (int(m["x"]), int(m["y"])) if m["x"] is not None else None
    return Target(m["layer"], int(m["unit"]), xy, t)


def parse_targets(model, texts) -> list[Target]:
    """Targets from strings; ``LAYER:A-B`` expands to channels A..B."""
    out = []
    for text in texts:
        m = re.match(r"^([^:]+):(\d+)-(\d+)$", text.strip())
        if m and m[1] != "class":
            out += [parse_target(model, f"{m[1]}:{c}") for c in range(int(m[2]), int(m[3]) + 1)]
        else:
            out.append(parse_target(model, text))
    if not out:
        raise NeuronscopeError("no targets given; e.g. class:ostrich or blocks.10:5")
    return out


class _CompatLogProb(torch.autograd.Function):
    """Value log p_y; gradient (1 - p_y) on logit y only (released PPGN)."""

    @staticmethod
    def forward(ctx, logits, y):
        logp = F.log_softmax(logits, 1)
        ctx.save_for_backward(logp, y)
        return logp.gather(1, y[:, None]).squeeze(1)

    @staticmethod
    def backward(ctx, g):
        logp, y = ctx.saved_tensors
        grad = torch.zeros_like(logp)
        p_y = logp.gather(1, y[:, None]).exp()
        grad.scatter_(1, y[:, None], (1 - p_y))
        return grad * g[:, None], None


class Condition:
    """Per-row values of the targets on [0, 1] images (resized to ``size`` px).

    ``targets`` has one entry per batch row (or a single target for all rows).
    """

    def __init__(self, model, targets, *, size: int | None = None, kind: str = "activation", compat: bool = False):
        if kind not in ("activation", "logprob"):
            raise NeuronscopeError(f"unknown condition kind {kind!r}; valid: activation, logprob")
        self.model = model
        self.targets = [parse_target(model, t) if isinstance(t, str) else t for t in (targets if isinstance(targets, (list, tuple)) else [targets])]
        self.size = size or model.input_size
        self.kind, self.compat = kind, compat
        self.layers = sorted({t.layer for t in self.targets})

    def rows(self, B: int) -> list[Target]:
        if len(self.targets) == 1:
            return self.targets * B
        if len(self.targets) != B:
            raise NeuronscopeError(f"{len(self.targets)} targets for a batch of {B} rows")
        return self.targets

    def _resize(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.size or x.shape[-2] != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return x

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        rows = self.rows(x.shape[0])
        with tap(self.model, self.layers, stop_early=True) as taps:
            taps.run(self._resize(x).to(self.model.device))
            acts = {name: taps[name] for name in self.layers}
        values = []
        for i, t in enumerate(rows):
            a = acts[t.layer][i : i + 1]
            values.append(self._value(a, t))
        return torch.cat(values)

    def _value(self, a: torch.Tensor, t: Target) -> torch.Tensor:
        C = a.shape[1]
        if not 0 <= t.unit < C:
            raise NeuronscopeError(f"unit {t.unit} out of range for layer {t.layer} with {C} channels (valid 0..{C - 1})")
        if a.dim() == 4:
            H, W = a.shape[2:]
            if t.xy is not None:
                x0, y0 = t.xy
                if not (0 <= x0 < W and 0 <= y0 < H):
                    raise NeuronscopeError(f"position {t.xy} outside layer {t.layer}'s {W}x{H} map at {self.size} px")
                vec = a[:, :, y0, x0]
            elif self.kind == "logprob":
                vec = a[:, :, H // 2, W // 2]  # PPGN hidden units: softmax over channels at the centre
            else:
                return a[:, t.unit].mean((1, 2))
        else:
            vec = a.flatten(1)
        if self.kind == "activation":
            return vec[:, t.unit]
        y = torch.tensor([t.unit], device=vec.device)
        if self.compat:
            return _CompatLogProb.apply(vec, y)
        return F.log_softmax(vec, 1)[:, t.unit]

    @torch.no_grad()
    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """p(y | x) per row (softmax over classes or channels), for reporting."""
        old, self.kind, oc, self.compat = self.kind, "logprob", self.compat, False
        try:
            return self(x).exp()
        finally:
            self.kind, self.compat = old, oc
