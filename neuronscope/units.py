"""Units: the one way to name what a method looks at, and the one parser of those names.

A unit is a class (one logit of the model's output), a channel of a layer (read as
its mean over positions or tokens) or a neuron (one channel at one position). Every
command reads units written the same way::

    class:ostrich   class:9           a class, by (partial) name or index; logits:9 is the same
    blocks.10:5                       channel 5 of blocks.10
    blocks.10:0-7   blocks.10:1,4,9   several channels (ranges and lists mix: 0-7,12)
    blocks.10:5@3,4                   channel 5 at column 3, row 4 of the map (a neuron)
    blocks.10                         every channel (only where whole layers make sense)

:func:`parse_units` checks names, indices and positions against the model with one
short forward pass. A unit's value is never computed here: :meth:`Unit.objective`
gives the objective term of :mod:`neuronscope.optim.objectives` that defines it, and
:meth:`Unit.value` evaluates that term on tapped activations.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Mapping

import torch

from .errors import NeuronscopeError
from .models.adapter import Model
from .optim import objectives as O
from .taps import channel_count, layer_shapes, resolve

KINDS = ("class", "channel", "neuron")
FORMS = (
    "valid forms: class:NAME, class:INDEX, LAYER:C, LAYER:A-B, LAYER:C,D, LAYER:C@X,Y "
    "(e.g. class:ostrich, class:9, blocks.10:5, blocks.10:0-7, blocks.10:5@3,4)"
)


@dataclass(frozen=True)
class Unit:
    """One unit. ``layer`` is ``logits`` for a class; ``index`` is the class or the channel."""

    kind: str  # one of KINDS
    layer: str
    index: int
    x: int | None = None  # a neuron's column (or token), None = the centre
    y: int | None = None  # a neuron's row
    class_name: str | None = None  # the model's label of a class

    @property
    def is_class(self) -> bool:
        return self.kind == "class"

    @property
    def position(self) -> tuple[int, int] | None:
        return None if self.x is None else (self.x, self.y)

    @property
    def name(self) -> str:
        """The unit written as users write it: ``class:9``, ``blocks.10:5``, ``blocks.10:5@3,4``."""
        if self.is_class:
            return f"class:{self.index}"
        pos = f"@{self.x},{self.y}" if self.kind == "neuron" and self.x is not None else ""
        return f"{self.layer}:{self.index}{pos}"

    @property
    def label(self) -> str:
        """A title: ``goldfish (class 1)`` for a class, the name otherwise."""
        if self.is_class:
            return f"{self.class_name} (class {self.index})" if self.class_name else self.name
        return self.name

    @property
    def slug(self) -> str:
        """A file-name-safe name: ``class_1_goldfish``, ``blocks.10_5``, ``blocks.10_5_at_3_4``."""
        if self.is_class:
            name = re.sub(r"[^A-Za-z0-9]+", "_", self.class_name or "").strip("_")
            return f"class_{self.index}" + (f"_{name}" if name else "")
        at = f"_at_{self.x}_{self.y}" if self.kind == "neuron" and self.x is not None else ""
        return f"{self.layer}_{self.index}{at}"

    def objective(self, log_prob: bool = False, compat: bool = False) -> O.Objective:
        """The objective term that defines this unit's value.

        A class is its logit, a channel its mean over positions, a neuron its value at
        one position. With ``log_prob`` the value is a log-probability: log p(class) for
        a class, the log-softmax over the layer's channels at the unit's position
        (default the centre) otherwise, as PPGN conditions on them; ``compat`` gives
        that term the released PPGN gradient (:class:`~neuronscope.optim.objectives.LogSoftmax`).
        """
        if log_prob:
            return O.log_softmax(self.layer, self.index, self.x, self.y, compat)
        if self.is_class:
            return O.class_logit(self.index)
        if self.kind == "neuron":
            return O.neuron(self.layer, self.index, self.x, self.y)
        return O.channel(self.layer, self.index)

    def value(self, acts: Mapping[str, torch.Tensor], log_prob: bool = False) -> torch.Tensor:
        """The unit per batch row from tapped activations (``acts[self.layer]``), differentiable."""
        ((_, term, _),) = self.objective(log_prob).terms
        return term.value(acts, None)


@dataclass(frozen=True)
class _Spec:
    text: str
    layer: str  # "logits" for classes
    indices: tuple[int, ...] | None  # None: every channel of the layer
    x: int | None = None
    y: int | None = None
    class_text: str | None = None  # class:NAME as written


_POSITION = re.compile(r"^\s*(-?\d+)\s*,\s*(-?\d+)\s*$")


def channel_indices(text: str, spec: str | None = None) -> tuple[int, ...]:
    """The channels of a list such as ``5``, ``0-7``, ``1,4,9`` or ``0-7,12``, in order.

    ``spec`` is the whole target the list came from (``blocks.10:0-7``), named in
    errors; without it the list stands alone (e.g. an option's value). Whether the
    channels exist is checked by :func:`parse_units`, against the model.
    """
    in_spec = f" in target {spec!r}" if spec else ""
    of_spec = f" of target {spec!r}" if spec else ""
    examples = ("blocks.10:5, blocks.10:0-15 or blocks.10:1,4,9", "blocks.10:5 or blocks.10:0-15") if spec else (
        "5, 0-63, 1,5,9 or 0-7,12", "5 or 0-63")
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if part.startswith("-") and part[1:].strip().isdigit():
            raise NeuronscopeError(f"channel {part}{in_spec} is negative; channels count from 0")
        a, dash, b = part.partition("-")
        a, b = a.strip(), b.strip()
        if not a.isdigit() or (dash and (not b.isdigit() or int(b) < int(a))):
            raise NeuronscopeError(f"cannot read the channels {text.strip()!r}{of_spec}; write e.g. {examples[0]}")
        out.extend(range(int(a), int(b) + 1) if dash else [int(a)])
    if not out:
        raise NeuronscopeError(f"no channels{in_spec or ' in ' + repr(text)}; write e.g. {examples[1]}")
    return tuple(out)


def _read(model: Model, spec: str, whole_layers: bool) -> _Spec:
    """The syntax of one target, with its layer checked against the model."""
    text = str(spec).strip()
    if text.lower().startswith("class:"):
        what = text.split(":", 1)[1].strip()
        if not what:
            raise NeuronscopeError("empty class in target 'class:'; write class:NAME or class:INDEX, e.g. class:ostrich")
        return _Spec(text, "logits", None, class_text=what)
    layer, sep, rest = text.rpartition(":")
    if not sep:
        layer, rest = text, ""
    layer = layer.strip()
    if not layer or (not sep and not whole_layers):
        raise NeuronscopeError(f"cannot read the target {text!r}; {FORMS}")
    resolve(model, layer)
    if layer == "input":
        raise NeuronscopeError("'input' is the image, not a layer of units; choose a network layer (e.g. blocks.10) or class:NAME")
    if not sep:
        return _Spec(text, layer, None)
    chans, at, pos = rest.partition("@")
    x = y = None
    if at:
        m = _POSITION.match(pos)
        if not m:
            raise NeuronscopeError(f"cannot read the position {pos.strip()!r} of target {text!r}; write LAYER:C@X,Y, e.g. blocks.10:5@3,4")
        x, y = int(m[1]), int(m[2])
        if x < 0 or y < 0:
            raise NeuronscopeError(f"position ({x},{y}) in target {text!r} is negative; x and y count from 0")
    return _Spec(text, layer, channel_indices(chans, text), x, y)


def parse_units(model: Model, specs: str | Iterable[str], *, size: int | None = None,
                whole_layers: bool = False) -> list[Unit]:
    """Units from target strings, in order; a range or list gives several units.

    Layers, channel ranges and positions are checked against the model at ``size``
    px (default its input size) with one forward pass for all layers. With
    ``whole_layers`` a bare layer name stands for every channel of the layer.
    """
    specs = [specs] if isinstance(specs, str) else list(specs)
    read = [_read(model, s, whole_layers) for s in specs]
    if not read:
        raise NeuronscopeError("no targets given; e.g. class:ostrich or blocks.10:5")
    shapes = layer_shapes(model, [r.layer for r in read if r.class_text is None], size)
    units: list[Unit] = []
    for r in read:
        if r.class_text is not None:
            k = model.class_index(r.class_text)
            units.append(Unit("class", "logits", k, class_name=model.label(k)))
            continue
        shape = shapes[r.layer]
        n = channel_count(shape)
        if n is None:
            raise NeuronscopeError(f"layer {r.layer!r} has output shape {shape}; it has no channels to read units from")
        if r.layer == "logits" and r.x is not None:
            raise NeuronscopeError(f"target {r.text!r}: a class has no position; write class:INDEX, e.g. class:9")
        for c in r.indices if r.indices is not None else range(n):
            if r.layer == "logits":
                unit = Unit("class", "logits", c, class_name=model.label(c))
            elif r.x is not None:
                unit = Unit("neuron", r.layer, c, r.x, r.y)
            else:
                unit = Unit("channel", r.layer, c)
            unit.objective().check(shapes, 1)
            units.append(unit)
    return units


def parse_unit(model: Model, spec: str, *, size: int | None = None) -> Unit:
    """Exactly one unit (``class:NAME``, ``LAYER:C`` or ``LAYER:C@X,Y``), for commands that study one."""
    units = parse_units(model, [spec], size=size)
    if len(units) != 1:
        raise NeuronscopeError(
            f"target {spec!r} names {len(units)} units; this command takes one, e.g. {units[0].name}"
        )
    return units[0]
