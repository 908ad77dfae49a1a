"""Layer taps: address layers by dotted name and capture their outputs.

An address is a ``named_modules()`` name of the wrapped network (``blocks.5``,
``blocks.5.dw_act``), optionally followed by bracket indexes into a tuple or dict
output (``enc.3[0]``, ``heads[logits]``). Two pseudo-layers exist: ``input`` (the
[0, 1] image batch given to the model) and ``logits`` (the model's output).

Only the requested layers are hooked, and the hooks are removed when the
``with tap(...)`` block ends, whatever happens inside it.
"""

from __future__ import annotations

import re
import shlex
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

import torch
from torch import nn

from . import layouts
from .errors import NeuronscopeError, closest
from .models.adapter import Model

PSEUDO_LAYERS = ("input", "logits")
_ADDRESS = re.compile(r"^(?P<path>[^\[\]]*)(?P<index>(\[[^\[\]]+\])*)$")


@dataclass(frozen=True)
class Address:
    """A parsed layer address: the module path and the indexes into its output."""

    text: str
    path: str
    index: tuple[int | str, ...] = ()

    @property
    def pseudo(self) -> bool:
        return self.path in PSEUDO_LAYERS


def parse_address(text: str) -> Address:
    m = _ADDRESS.match(text.strip())
    if not m:
        raise NeuronscopeError(f"malformed layer address {text!r}; expected e.g. 'blocks.5' or 'enc.3[0]'")
    index = tuple(int(k) if k.lstrip("-").isdigit() else k for k in re.findall(r"\[([^\[\]]+)\]", m["index"]))
    return Address(text.strip(), m["path"], index)


def module_names(model: Model) -> list[str]:
    """Every module address inside the model's network (the root excluded)."""
    return [n for n, _ in model.net.named_modules() if n]


def _preprocess_name(model: Model) -> str | None:
    """The ``--preprocess`` value that gives the model's preprocessing, or None when it is not a named one."""
    from .models.adapter import PREPROCESSING, Normalize

    pre = model.preprocess
    if type(pre) is nn.Identity:
        return "none"
    if type(pre) is Normalize:
        for name, make in PREPROCESSING.items():
            ref = make()
            if (isinstance(ref, Normalize) and ref.mean.shape == pre.mean.shape
                    and torch.allclose(ref.mean, pre.mean.detach().cpu()) and torch.allclose(ref.std, pre.std.detach().cpu())):
                return name
    return None


def layers_command(model: Model) -> str | None:
    """A ``neuronscope layers ...`` command that loads ``model`` as it was loaded, or None when there is none.

    A model by name (embedded, ``torchvision:``, ``timm:``) needs only its name; your own model
    (``package.module:factory``, ``./file.py:factory``, ``onnx:PATH``) also its preprocessing and input
    size, which a factory need not declare. A module wrapped in Python has no command line.
    """
    from .model_import import is_factory_spec

    info = model.info
    if info.source in ("embedded", "torchvision", "timm"):
        return f"neuronscope layers {shlex.quote(model.name)}"
    own = (info.source == "onnx" and model.name.startswith("onnx:")) or (
        info.source == "user" and is_factory_spec(model.name))
    if not own:
        return None
    words = ["neuronscope", "layers", model.name]
    pre = _preprocess_name(model)
    if pre is not None:
        words += ["--preprocess", pre]
    if info.input_size != 224:
        words += ["--input-size", str(info.input_size)]
    return " ".join(shlex.quote(w) for w in words)


def list_layers_hint(model: Model, count: int | None = None) -> str:
    """The sentence that says how to list ``model``'s layers: a command that works for it, or the Python call."""
    what = f"all {count} layers" if count is not None else "its layers"
    command = layers_command(model)
    if command is not None:
        return f"Run `{command}` to list {what}."
    return f"`neuronscope.describe_layers(model)` lists {what}."


def resolve(model: Model, text: str) -> Address:
    """Check an address against the model; unknown names list the closest valid ones."""
    addr = parse_address(text)
    if addr.pseudo:
        return addr
    names = module_names(model)
    if addr.path not in set(names):
        hits = closest(addr.path, names + list(PSEUDO_LAYERS))
        raise NeuronscopeError(
            f"model {model.name!r} has no layer {addr.path!r}. "
            + (f"Closest valid names: {', '.join(hits)}. " if hits else "")
            + list_layers_hint(model, len(names) + len(PSEUDO_LAYERS))
        )
    return addr


def select(output: Any, addr: Address) -> Any:
    value = output
    for key in addr.index:
        try:
            value = value[key]
        except (KeyError, IndexError, TypeError) as e:
            kind = type(value).__name__
            valid = list(value.keys()) if isinstance(value, dict) else f"0..{len(value) - 1}" if isinstance(value, (tuple, list)) else "none"
            raise NeuronscopeError(f"layer {addr.text!r}: output {kind} has no element [{key}] (valid: {valid})") from e
    return value


def element_hint(name: str, value: Any) -> str:
    """Why ``value``, the output of layer ``name``, is no tensor, and how to address one of its elements:
    a dict's keys or a tuple's indexes, in brackets after the name, with an example that works."""
    kind = type(value).__name__
    if isinstance(value, dict) and value:
        keys = [str(k) for k in value]
        example = next((str(k) for k, v in value.items() if isinstance(v, torch.Tensor)), keys[0])
        return (f"layer {name!r} outputs a {kind} with keys {', '.join(keys)}; address one by its key in "
                f"brackets, e.g. {name}[{example}]")
    if isinstance(value, (tuple, list)) and value:
        last = len(value) - 1
        return (f"layer {name!r} outputs a {kind} of {len(value)} elements; address one by its index in "
                f"brackets: {name}[0]" + (f" to {name}[{last}]" if last else ""))
    return f"layer {name!r} outputs a {kind}, not a tensor, and has no element to address"


class _StopForward(Exception):
    """Raised inside a hook to skip the rest of the network once all taps fired."""


class Taps:
    """The captured outputs of one forward pass, by address."""

    def __init__(self, model: Model, addresses: list[Address], stop_early: bool):
        self.model = model
        self.addresses = addresses
        self.stop_early = stop_early and not any(a.path == "logits" for a in addresses)
        self.values: dict[str, Any] = {}
        self.kinds: dict[str, str] = {}  # address -> layout applied (neuronscope.layouts)
        self._pending: set[str] = set()
        self._calls_left: dict[str, int] = {}  # a module run several times (a shared ReLU): its last call counts
        self._running = False  # stop early only inside run(), never in a user's own model(x)

    def __getitem__(self, name: str) -> torch.Tensor:
        if name not in self.values:
            known = [a.text for a in self.addresses]
            if name not in known:
                raise NeuronscopeError(f"layer {name!r} is not tapped here; tapped: {', '.join(known)}")
            raise NeuronscopeError(f"layer {name!r} did not run in the last forward pass")
        value = self.values[name]
        if not isinstance(value, torch.Tensor):
            raise NeuronscopeError(element_hint(name, value))
        return value

    def __contains__(self, name: str) -> bool:
        return name in self.values

    def _store(self, addr: Address, output: Any) -> None:
        self.values[addr.text], self.kinds[addr.text] = layouts.view(self.model, addr, output, select)
        left = self._calls_left.get(addr.text, 1) - 1
        self._calls_left[addr.text] = left
        if left <= 0:
            self._pending.discard(addr.text)
        if self.stop_early and self._running and not self._pending:
            raise _StopForward

    def run(self, x: torch.Tensor) -> torch.Tensor | None:
        """Forward ``x`` and fill the taps; returns the logits when they were computed."""
        self.values.clear()
        self._pending = {a.text for a in self.addresses}
        self._calls_left = {a.text: layouts.calls(self.model, a.path) for a in self.addresses if not a.pseudo}
        self._running = True
        try:
            return self.model(x)
        except _StopForward:
            return None
        finally:
            self._running = False


@contextmanager
def tap(model: Model, layers: Iterable[str], *, stop_early: bool = False) -> Iterator[Taps]:
    """Hook exactly ``layers`` for the duration of the block.

    With ``stop_early=True`` and no ``logits`` among the layers, ``taps.run(x)``
    stops the forward pass as soon as every tapped layer has fired.
    """
    addresses = []
    for name in dict.fromkeys(layers):
        addresses.append(resolve(model, name))
    if any(not a.pseudo for a in addresses):
        layouts.probe(model)  # once per model, before any hook: layouts and call counts (neuronscope.layouts)
    taps = Taps(model, addresses, stop_early)
    handles = []
    try:
        for addr in addresses:
            if addr.path == "input":
                handles.append(model.register_forward_pre_hook(lambda m, args, a=addr: taps._store(a, args[0])))
            elif addr.path == "logits":
                handles.append(model.register_forward_hook(lambda m, args, out, a=addr: taps._store(a, out)))
            else:
                module = model.net.get_submodule(addr.path)
                handles.append(module.register_forward_hook(lambda m, args, out, a=addr: taps._store(a, out)))
        yield taps
    finally:
        for h in handles:
            h.remove()


def activations(model: Model, x: torch.Tensor, layers: Iterable[str]) -> dict[str, torch.Tensor]:
    """One forward pass without gradients; the requested layers' outputs."""
    layers = list(layers)
    with torch.inference_mode(), tap(model, layers, stop_early=True) as taps:
        taps.run(x.to(model.device))
        return {name: taps[name] for name in layers}


@dataclass
class LayerInfo:
    name: str
    kind: str
    shape: tuple[int, ...] | None  # output shape for one image, without the batch dim
    channels: int | None


def _shape_entries(name: str, out: Any) -> list[tuple[str, Any]]:
    if isinstance(out, torch.Tensor):
        return [(name, out)]
    if isinstance(out, (tuple, list)):
        return [e for i, o in enumerate(out) for e in _shape_entries(f"{name}[{i}]", o)]
    if isinstance(out, dict):
        return [e for k, o in out.items() for e in _shape_entries(f"{name}[{k}]", o)]
    return []


def describe_layers(model: Model, size: int | None = None) -> list[LayerInfo]:
    """Every addressable layer with its output shape for one ``size`` px image."""
    size = size or model.input_size
    found: dict[str, tuple[str, Any]] = {}
    handles = []
    try:
        def record(name):
            def hook(module, args, out):
                found[name] = (type(module).__name__, out)  # a module run several times: its last call, as taps see it
            return hook

        for name, module in model.net.named_modules():
            if name:
                handles.append(module.register_forward_hook(record(name)))
        with torch.inference_mode():
            x = torch.full((1, 3, size, size), 0.5, device=model.device)
            logits = model(x)
    finally:
        for h in handles:
            h.remove()
    rows = [LayerInfo("input", "pseudo", (3, size, size), 3)]
    for name, _ in model.net.named_modules():
        if not name:
            continue
        if name not in found:
            rows.append(LayerInfo(name, type(model.net.get_submodule(name)).__name__, None, None))
            continue
        kind, out = found[name]
        for addr, t in _shape_entries(name, out):
            for text, shape, note in layouts.expand(model, addr, t):  # token grids and channels-last as maps
                note = "" if note in (layouts.CHANNELS_FIRST, layouts.RAW) else f" ({note.replace('_', '-')})"
                rows.append(LayerInfo(text, kind + note, shape, channel_count(shape)))
    rows.append(LayerInfo("logits", "pseudo", tuple(logits.shape[1:]), logits.shape[1]))
    return rows


def channel_count(shape: tuple[int, ...]) -> int | None:
    """Channels of a per-image shape: (C,H,W) -> C, (N,C) tokens -> C, (C,) -> C; None for other ranks."""
    if len(shape) in (1, 3):
        return shape[0]
    if len(shape) == 2:
        return shape[1]
    return None


def layer_shapes(model: Model, layers: Iterable[str], size: int | None = None) -> dict[str, tuple[int, ...]]:
    """Per-image output shapes of ``layers`` for one ``size`` px image (default the model's input size).

    One forward pass, stopped after the last of the layers; ``input`` is (3, size, size)
    without running the network.
    """
    size = int(size or model.input_size)
    layers = list(dict.fromkeys(layers))
    needed = [name for name in layers if name != "input"]
    shapes: dict[str, tuple[int, ...]] = {}
    if needed:
        with torch.inference_mode(), tap(model, needed, stop_early=True) as taps:
            taps.run(torch.full((1, 3, size, size), 0.5, device=model.device))
            shapes = {name: tuple(taps[name].shape[1:]) for name in needed}
    return {name: (3, size, size) if name == "input" else shapes[name] for name in layers}
