"""The unit whose facets are found: a class logit, a channel or a neuron.

``parse_unit(model, "class:goldfish")`` / ``"blocks.10:5"`` / ``"blocks.10:5@3,4"``
gives a :class:`Unit`, which knows its objective (for the render API), how to
read its value from tapped activations, and its place in a store.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping

import torch

from ..errors import NeuronscopeError
from ..models.adapter import Model
from ..taps import describe_layers, resolve

_UNIT = re.compile(r"^(?P<layer>.+):(?P<c>\d+)(@(?P<x>\d+),(?P<y>\d+))?$")


@dataclass(frozen=True)
class Unit:
    """One unit: ``kind`` is ``class``, ``channel`` or ``neuron``."""

    kind: str
    layer: str  # "logits" for a class
    index: int  # class index or channel
    label: str  # for titles: "goldfish (class 1)", "blocks.10:5"
    x: int | None = None
    y: int | None = None

    @property
    def is_class(self) -> bool:
        return self.kind == "class"

    @property
    def slug(self) -> str:
        """A file-name-safe name: ``class_1_goldfish``, ``blocks.10_5``."""
        if self.is_class:
            name = re.sub(r"[^A-Za-z0-9]+", "_", self.label.split(" (")[0]).strip("_")
            return f"class_{self.index}_{name}"
        return f"{self.layer}_{self.index}" + (f"_at_{self.x}_{self.y}" if self.kind == "neuron" else "")

    def objective(self):
        """The objective of the render API (neuronscope.optim) for this unit."""
        from ..optim import objectives as O

        if self.is_class:
            return O.class_logit(self.index)
        if self.kind == "neuron":
            return O.neuron(self.layer, self.index, self.x, self.y)
        return O.channel(self.layer, self.index)

    def value(self, acts: Mapping[str, torch.Tensor], log_prob: bool = False) -> torch.Tensor:
        """The unit per batch row from tapped activations (differentiable).

        A class gives its logit, or its log-probability with ``log_prob``; a
        channel its mean over positions; a neuron one position (default the centre).
        """
        a = acts[self.layer]
        if self.is_class:
            return a.log_softmax(-1)[:, self.index] if log_prob else a[:, self.index]
        if a.dim() == 2:
            return a[:, self.index]
        if a.dim() == 3:  # tokens (B, N, C)
            return a[:, :, self.index].mean(1) if self.kind == "channel" else a[:, a.shape[1] // 2, self.index]
        if self.kind == "neuron":
            h, w = a.shape[-2:]
            x = w // 2 if self.x is None else self.x
            y = h // 2 if self.y is None else self.y
            return a[:, self.index, y, x]
        return a[:, self.index].mean(dim=(1, 2))


def parse_unit(model: Model, text: str) -> Unit:
    """``class:NAME``, ``class:K``, ``LAYER:C`` or ``LAYER:C@X,Y`` as a :class:`Unit`."""
    text = text.strip()
    if text.startswith("class:"):
        k = model.class_index(text.split(":", 1)[1])
        return Unit("class", "logits", k, f"{model.label(k)} (class {k})")
    m = _UNIT.match(text)
    if not m:
        raise NeuronscopeError(
            f"cannot read the unit {text!r}; use class:NAME, class:K, LAYER:C or LAYER:C@X,Y "
            "(e.g. class:goldfish, blocks.10:5, blocks.10:5@7,7)"
        )
    layer, c = m["layer"], int(m["c"])
    resolve(model, layer)
    if layer == "logits":
        k = model.class_index(c)
        return Unit("class", "logits", k, f"{model.label(k)} (class {k})")
    shapes = {r.name: r for r in describe_layers(model)}
    row = shapes.get(layer)
    if row is None or row.channels is None:
        raise NeuronscopeError(f"layer {layer!r} has no channels (output shape {row.shape if row else 'unknown'})")
    if not 0 <= c < row.channels:
        raise NeuronscopeError(f"channel {c} is out of range for {layer!r} (valid: 0..{row.channels - 1})")
    if m["x"] is not None:
        x, y = int(m["x"]), int(m["y"])
        if len(row.shape) == 3 and not (0 <= x < row.shape[2] and 0 <= y < row.shape[1]):
            raise NeuronscopeError(
                f"position ({x},{y}) is outside {layer!r}'s {row.shape[2]}x{row.shape[1]} map at {model.input_size} px"
            )
        return Unit("neuron", layer, c, f"{layer}:{c}@{x},{y}", x, y)
    return Unit("channel", layer, c, f"{layer}:{c}")
