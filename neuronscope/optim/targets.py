"""Parsing user target strings into objectives, one per rendered row.

``class:9`` and ``class:ostrich`` (pre-softmax logit), ``blocks.10:5`` (channel),
``blocks.10:0-15`` (a range of channels), ``blocks.10:1,4,9`` (a list),
``blocks.10:5@3,4`` (the neuron at column 3, row 4).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import NeuronscopeError
from ..models import Model
from ..taps import resolve
from . import objectives as O


@dataclass
class Target:
    name: str
    objective: O.Objective
    layer: str
    unit: int
    label: str | None = None
    position: tuple[int, int] | None = None

    @property
    def caption(self) -> str:
        return f"{self.name}\n{self.label}" if self.label else self.name


_UNIT = re.compile(r"^(?P<units>[\d,\-\s]+?)(@(?P<x>\d+),(?P<y>\d+))?$")


def _layer_channels(model: Model, layer: str) -> int | None:
    from .render import _layer_shapes

    shape = _layer_shapes(model, [layer], model.input_size)[layer]
    return shape[1] if len(shape) == 2 else shape[0]


def _units(text: str, spec: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part:
            a, _, b = part.partition("-")
            if not (a.strip().isdigit() and b.strip().isdigit()) or int(b) < int(a):
                raise NeuronscopeError(f"bad channel range {part!r} in target {spec!r}; write e.g. 0-15")
            out.extend(range(int(a), int(b) + 1))
        elif part.isdigit():
            out.append(int(part))
        else:
            raise NeuronscopeError(f"bad channel {part!r} in target {spec!r}")
    return out


def parse_target(model: Model, spec: str) -> list[Target]:
    """One target string to one or more targets (a range gives several)."""
    spec = spec.strip()
    if spec.startswith("class:"):
        what = spec[len("class:"):].strip()
        if not what:
            raise NeuronscopeError("empty class in target 'class:'; write class:9 or class:ostrich")
        k = model.class_index(what)
        return [Target(f"class:{k}", O.class_logit(k), "logits", k, model.label(k))]
    layer, sep, unit_text = spec.rpartition(":")
    if not sep or not layer:
        raise NeuronscopeError(
            f"cannot read target {spec!r}; valid forms: class:9, class:ostrich, blocks.10:5, blocks.10:0-15, blocks.10:5@3,4"
        )
    m = _UNIT.match(unit_text.strip())
    if not m:
        raise NeuronscopeError(f"cannot read the unit part {unit_text!r} of target {spec!r}")
    resolve(model, layer)
    n = _layer_channels(model, layer)
    units = _units(m["units"], spec)
    bad = [u for u in units if n is not None and not 0 <= u < n]
    if bad:
        raise NeuronscopeError(f"channel {bad[0]} is out of range for layer {layer!r}, which has channels 0..{n - 1}")
    if layer == "logits":
        return [Target(f"class:{u}", O.class_logit(u), "logits", u, model.label(u)) for u in units]
    pos = (int(m["x"]), int(m["y"])) if m["x"] is not None else None
    out = []
    for u in units:
        if pos:
            out.append(Target(f"{layer}:{u}@{pos[0]},{pos[1]}", O.neuron(layer, u, *pos), layer, u, None, pos))
        else:
            out.append(Target(f"{layer}:{u}", O.channel(layer, u), layer, u))
    return out


def parse_targets(model: Model, specs) -> list[Target]:
    if isinstance(specs, str):
        specs = [specs]
    targets = [t for s in specs for t in parse_target(model, s)]
    if not targets:
        raise NeuronscopeError("no targets given")
    return targets
