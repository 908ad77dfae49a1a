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

from torch import nn

from ..errors import NeuronscopeError
from ..models import Model
from ..taps import channel_count, layer_shapes, list_layers_hint
from ..units import parse_units

Job = tuple[str, int]  # (layer, unit)


@dataclass(frozen=True)
class LayerPlan:
    name: str
    channels: int
    shape: tuple[int, ...]  # per image, at the model's input size
    units: tuple[int, ...]  # the units asked for


def default_layers(model: Model) -> list[str]:
    """The outputs of the network's blocks, the atlas's default.

    Top-level sequences whose items are themselves blocks (``blocks`` of
    EfficientNet, ``layer1``.. of a ResNet) contribute each item; other
    top-level modules with a spatial output (a stem, a head) contribute
    themselves when they are containers. Pooling, classifier and flattening
    layers are left out (``--layers`` can name them).
    """
    children = [(n, m) for n, m in model.net.named_children()]
    names: list[str] = []
    for name, mod in children:
        items = list(mod.named_children())
        if isinstance(mod, (nn.Sequential, nn.ModuleList)) and items and all(any(True for _ in c.children()) for _, c in items):
            names += [f"{name}.{i}" for i, _ in items]
        elif items:
            names.append(name)
    shapes = layer_shapes(model, names) if names else {}
    chosen = [n for n in names if len(shapes.get(n, ())) == 3]
    if not chosen:
        raise NeuronscopeError(
            f"could not find block outputs in {model.name!r}; name the layers with --layers. "
            + list_layers_hint(model)
        )
    return chosen


def plan_layers(model: Model, specs: Sequence[str] | None) -> list[LayerPlan]:
    """Validate ``LAYER`` / ``LAYER:UNITS`` specs against the model (default: :func:`default_layers`).

    A layer named several times gets the union of its units, each once, in the order first named.
    """
    per_layer: dict[str, dict[int, None]] = {}
    for unit in parse_units(model, list(specs) if specs else default_layers(model), whole_layers=True):
        per_layer.setdefault(unit.layer, {})[unit.index] = None
    shapes = layer_shapes(model, per_layer)
    return [LayerPlan(layer, int(channel_count(shapes[layer])), shapes[layer], tuple(units))
            for layer, units in per_layer.items()]


def make_batches(pending: Sequence[Job], units_per_batch: int) -> list[list[Job]]:
    """Consecutive units of one layer per batch, in the order given."""
    batches: list[list[Job]] = []
    for job in pending:
        if batches and len(batches[-1]) < units_per_batch and batches[-1][0][0] == job[0]:
            batches[-1].append(job)
        else:
            batches.append([job])
    return batches
