"""Which units an atlas covers, and how they are cut into optimizations.

``--layers blocks.4 blocks.6:0-15`` selects every channel of ``blocks.4`` and
channels 0..15 of ``blocks.6``; without ``--layers`` the atlas covers the
outputs of the network's blocks (:func:`default_layers`). Batches never mix
layers: a batch of ``blocks.4`` units stops the forward pass at ``blocks.4``,
and a mixed batch would make every row pay for the deepest layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from ..errors import NeuronscopeError
from ..models import Model

Job = tuple[str, int]  # (layer, unit)


@dataclass(frozen=True)
class LayerPlan:
    name: str
    channels: int
    shape: tuple[int, ...]  # per image, at the model's input size
    units: tuple[int, ...]  # the units asked for


def parse_units(text: str, spec: str) -> list[int]:
    """``0-15``, ``1,5,9`` or ``0-7,12`` as unit indices."""
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        a, dash, b = part.partition("-")
        if not a.strip().isdigit() or (dash and not b.strip().isdigit()) or (dash and int(b) < int(a)):
            raise NeuronscopeError(f"bad unit list {text!r} in {spec!r}; write e.g. blocks.4:0-15 or blocks.4:1,5,9")
        out.extend(range(int(a), int(b) + 1) if dash else [int(a)])
    if not out:
        raise NeuronscopeError(f"no units in {spec!r}; write e.g. blocks.4 (all channels) or blocks.4:0-15")
    return out


def default_layers(model: Model) -> list[str]:
    """The outputs of the network's blocks, the atlas's default.

    Top-level sequences whose items are themselves blocks (``blocks`` of
    EfficientNet, ``layer1``.. of a ResNet) contribute each item; other
    top-level modules with a spatial output (a stem, a head) contribute
    themselves when they are containers. Pooling, classifier and flattening
    layers are left out (``--layers`` can name them).
    """
    from torch import nn

    from ..optim.render import _layer_shapes

    children = [(n, m) for n, m in model.net.named_children()]
    names: list[str] = []
    for name, mod in children:
        items = list(mod.named_children())
        if isinstance(mod, (nn.Sequential, nn.ModuleList)) and items and all(any(True for _ in c.children()) for _, c in items):
            names += [f"{name}.{i}" for i, _ in items]
        elif items:
            names.append(name)
    shapes = _layer_shapes(model, names, model.input_size) if names else {}
    chosen = [n for n in names if len(shapes.get(n, ())) == 3]
    if not chosen:
        raise NeuronscopeError(
            f"could not find block outputs in {model.name!r}; name the layers with --layers "
            f"(see `neuronscope layers {model.name}`)"
        )
    return chosen


def plan_layers(model: Model, specs: Sequence[str] | None) -> list[LayerPlan]:
    """Validate ``LAYER`` / ``LAYER:UNITS`` specs against the model (default: :func:`default_layers`)."""
    from ..optim.render import _layer_shapes
    from ..taps import channel_count, resolve

    specs = list(specs) if specs else default_layers(model)
    parsed: dict[str, list[int] | None] = {}
    for spec in specs:
        spec = spec.strip()
        layer, sep, units = spec.rpartition(":") if ":" in spec else (spec, "", "")
        if not layer:
            raise NeuronscopeError(f"bad layer {spec!r}; write e.g. blocks.4 or blocks.4:0-15")
        if layer in ("input",):
            raise NeuronscopeError("the input is not a layer of units; choose e.g. blocks.4")
        resolve(model, layer)
        chosen = parse_units(units, spec) if sep else None
        if layer in parsed and parsed[layer] is not None and chosen is not None:
            parsed[layer] = sorted(set(parsed[layer]) | set(chosen))
        elif layer in parsed:
            parsed[layer] = None
        else:
            parsed[layer] = chosen
    shapes = _layer_shapes(model, list(parsed), model.input_size)
    plans = []
    for layer, units in parsed.items():
        shape = shapes[layer]
        n = channel_count(tuple(shape))
        if not n:
            raise NeuronscopeError(f"layer {layer!r} has output shape {tuple(shape)}; it has no channels to render")
        if units is not None:
            bad = [u for u in units if not 0 <= u < n]
            if bad:
                raise NeuronscopeError(f"unit {bad[0]} is out of range for layer {layer!r}, which has units 0..{n - 1}")
        plans.append(LayerPlan(layer, int(n), tuple(shape), tuple(units if units is not None else range(n))))
    return plans


def make_batches(pending: Sequence[Job], units_per_batch: int) -> list[list[Job]]:
    """Consecutive units of one layer per batch, in the order given."""
    batches: list[list[Job]] = []
    for job in pending:
        if batches and len(batches[-1]) < units_per_batch and batches[-1][0][0] == job[0]:
            batches[-1].append(job)
        else:
            batches.append([job])
    return batches
