"""Activation layouts: how a layer's output tensor maps to channels and space.

Everything downstream of :mod:`neuronscope.taps` (objectives, the viewer, top-k
max patches, dissection, the atlas) reads a layer as ``(B, C, H, W)`` maps or
``(B, C)`` vectors. Networks do not all produce those:

* **Tokens** ``(B, N, C)`` (ViTs, CLIP image towers, DeiT): ``N`` is a few
  *prefix* tokens (the class token, a distillation token, registers) followed
  by a grid of patch tokens. Tapping such a layer gives the patch tokens as a
  map ``(B, C, gh, gw)``, so a unit's ``channel`` is the mean over patch tokens
  of one feature, a ``neuron`` at ``(x, y)`` is one patch token, and maps are
  drawn, upsampled and cropped on the patch grid. The prefix tokens are
  addressed by name in brackets: ``blocks.3[cls]`` is the class token
  ``(B, C)``; ``blocks.3[tokens]`` is the raw ``(B, N, C)`` tensor.
* **Channels-last maps** ``(B, H, W, C)`` (ConvNeXt's LayerNorm and pointwise
  ``Linear`` layers, which run on permuted tensors): tapping gives them
  permuted back to ``(B, C, H, W)``.

Inference, when nothing is declared: a 3-D output with ``N`` a perfect square
is a grid without prefix; with ``N - 1`` a perfect square, one prefix token
named ``cls``; anything else stays raw ``(B, N, C)`` (channels are then
averaged over all its tokens). A 4-D output is channels-last when it comes from
an ``nn.LayerNorm`` or ``nn.Linear`` (which act on the last dimension), from a
permutation of a channels-first input, or from an element-wise module (same
shape: GELU, dropout) fed by a channels-last tensor; these are found once per
model by one forward pass at its input size.

Declaring the layout, when inference cannot know it (non-square grids, two or
more prefix tokens)::

    load_model(net, preprocess="imagenet", token_grid=(14, 14), prefix_tokens=1)
    load_model(net, ..., prefix_tokens=("cls", "dist"))          # DeiT-distilled
    load_model(net, ..., layouts={"blocks.*.mlp.act": "channels_last", "head.*": "raw"})

``layouts`` maps ``fnmatch`` patterns of layer addresses to ``tokens``,
``channels_last``, ``channels_first`` or ``raw`` (leave the tensor as it is).
"""

from __future__ import annotations

import dataclasses
import math
import threading
from fnmatch import fnmatchcase
from typing import Any, Iterator, Sequence

import torch
from torch import nn

from .errors import NeuronscopeError

TOKENS, CHANNELS_LAST, CHANNELS_FIRST, RAW = "tokens", "channels_last", "channels_first", "raw"
KINDS = (TOKENS, CHANNELS_LAST, CHANNELS_FIRST, RAW)
#: bracket key of the untouched token tensor
RAW_TOKENS_KEY = "tokens"
_LOCK = threading.Lock()


@dataclasses.dataclass(frozen=True)
class LayoutSpec:
    """What a user declared about a model's layouts (all optional)."""

    token_grid: tuple[int, int] | None = None
    prefix: tuple[str, ...] | None = None  # None: inferred per tensor (0 or 1 'cls')
    layers: tuple[tuple[str, str], ...] = ()  # (fnmatch pattern, kind)

    def kind_for(self, address: str) -> str | None:
        path = address.split("[", 1)[0]
        for pattern, kind in self.layers:
            if fnmatchcase(address, pattern) or fnmatchcase(path, pattern):
                return kind
        return None


def make_spec(token_grid=None, prefix_tokens=None, layouts=None) -> LayoutSpec | None:
    """Validate a declaration; ``None`` when nothing was declared."""
    if token_grid is None and prefix_tokens is None and not layouts:
        return None
    grid = None
    if token_grid is not None:
        try:
            gh, gw = (int(v) for v in token_grid)
        except (TypeError, ValueError) as e:
            raise NeuronscopeError(f"token_grid must be (rows, columns), e.g. (14, 14); got {token_grid!r}") from e
        if gh < 1 or gw < 1:
            raise NeuronscopeError(f"token_grid must be positive, got {token_grid!r}")
        grid = (gh, gw)
    prefix = None
    if prefix_tokens is not None:
        if isinstance(prefix_tokens, bool) or not isinstance(prefix_tokens, (int, list, tuple)):
            raise NeuronscopeError(f"prefix_tokens must be a count or a list of names, got {prefix_tokens!r}")
        if isinstance(prefix_tokens, int):
            if prefix_tokens < 0:
                raise NeuronscopeError(f"prefix_tokens must be >= 0, got {prefix_tokens}")
            prefix = tuple(["cls"][:prefix_tokens] + [f"prefix{i}" for i in range(1, prefix_tokens)])
        else:
            prefix = tuple(str(n) for n in prefix_tokens)
            bad = [n for n in prefix if not n or n == RAW_TOKENS_KEY or n.lstrip("-").isdigit() or "[" in n or "]" in n]
            if bad or len(set(prefix)) != len(prefix):
                raise NeuronscopeError(
                    f"prefix token names must be distinct, non-numeric and not {RAW_TOKENS_KEY!r}; got {list(prefix_tokens)}"
                )
    layers = ()
    if layouts:
        if not isinstance(layouts, dict):
            raise NeuronscopeError(f"layouts must be a dict of layer pattern -> kind, got {type(layouts).__name__}")
        for pattern, kind in layouts.items():
            if kind not in KINDS:
                raise NeuronscopeError(f"unknown layout {kind!r} for {pattern!r}; valid: {', '.join(KINDS)}")
        layers = tuple((str(p), k) for p, k in layouts.items())
    return LayoutSpec(grid, prefix, layers)


def spec_of(model) -> LayoutSpec:
    info = getattr(model, "info", None)
    spec = info.extra.get("layout") if info is not None else None
    return spec if isinstance(spec, LayoutSpec) else LayoutSpec()


# ---------------------------------------------------------------- tokens

def _square(n: int) -> int | None:
    r = math.isqrt(n) if n > 0 else 0
    return r if r > 0 and r * r == n else None


def token_split(spec: LayoutSpec, n: int, declared_tokens: bool = False) -> tuple[tuple[str, ...], tuple[int, int]] | None:
    """(prefix names, (gh, gw)) for ``n`` tokens, or None when they do not form a grid."""
    candidates = [spec.prefix] if spec.prefix is not None else [(), ("cls",)]
    for prefix in candidates:
        m = n - len(prefix)
        if m < 1:
            continue
        if spec.token_grid is not None and spec.token_grid[0] * spec.token_grid[1] == m:
            return prefix, spec.token_grid
        side = _square(m)
        if side:
            return prefix, (side, side)
    if declared_tokens or spec.token_grid is not None or spec.prefix is not None:
        grid = f"a {spec.token_grid[0]}x{spec.token_grid[1]} grid" if spec.token_grid else "a square grid"
        prefix = len(spec.prefix) if spec.prefix is not None else "0 or 1"
        raise NeuronscopeError(
            f"{n} tokens are not {prefix} prefix token(s) plus {grid}; declare the layout with "
            "load_model(..., token_grid=(rows, cols), prefix_tokens=K)"
        )
    return None


def tokens_to_map(t: torch.Tensor, prefix: int, grid: tuple[int, int]) -> torch.Tensor:
    """(B, N, C) tokens -> (B, C, gh, gw) map of the patch tokens (row-major, as patch embeddings flatten)."""
    b, _, c = t.shape
    return t[:, prefix:].transpose(1, 2).reshape(b, c, grid[0], grid[1])


# ---------------------------------------------------------------- channels-last and call counts, by one probe


def _walk(name: str, out: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(out, torch.Tensor):
        yield name, out
    elif isinstance(out, (tuple, list)):
        for i, o in enumerate(out):
            yield from _walk(f"{name}[{i}]", o)
    elif isinstance(out, dict):
        for k, o in out.items():
            yield from _walk(f"{name}[{k}]", o)


def _is_channels_last(module: nn.Module, inp: Any, out: torch.Tensor, tagged: dict[int, torch.Tensor]) -> bool:
    if out.dim() != 4:
        return False
    last = out.shape[-1]
    if isinstance(module, nn.LayerNorm) and tuple(module.normalized_shape) == (last,):
        return True
    if isinstance(module, nn.Linear) and module.out_features == last:
        return True
    if isinstance(inp, torch.Tensor) and inp.dim() == 4:
        if id(inp) in tagged and inp.shape == out.shape:  # element-wise after a channels-last layer
            return True
        b, c, h, w = inp.shape
        if tuple(out.shape) == (b, h, w, c) and c != h:  # a permutation to channels-last
            return True
    return False


@dataclasses.dataclass(frozen=True)
class Probe:
    """What one forward pass at the model's input size tells about its layers."""

    kinds: dict[str, str]  # address -> channels_last, for the channels-last outputs
    calls: dict[str, int]  # module path -> times it runs in one forward pass (a ResNet's shared relu: 3)


def _probe(model) -> Probe:
    net = model.net
    found: dict[str, str] = {}
    calls: dict[str, int] = {}
    tagged: dict[int, torch.Tensor] = {}  # id -> tensor, kept alive so ids are not reused during the pass

    def hook(name):
        def record(module, args, out):
            calls[name] = calls.get(name, 0) + 1
            inp = args[0] if args else None
            for addr, t in _walk(name, out):
                if addr not in found and _is_channels_last(module, inp, t, tagged):
                    found[addr] = CHANNELS_LAST
                    tagged[id(t)] = t
        return record

    handles = [m.register_forward_hook(hook(n)) for n, m in net.named_modules() if n]
    try:
        with torch.inference_mode():
            size = model.input_size
            model(torch.full((1, 3, size, size), 0.5, device=model.device))
    except Exception:  # noqa: BLE001 - a network that cannot run at its declared size: nothing inferred
        return Probe({}, {})
    finally:
        for h in handles:
            h.remove()
    return Probe(found, calls)


def probe(model) -> Probe:
    """Cached per model object (the forward pass runs once)."""
    cached = model.__dict__.get("_neuronscope_probe")
    if cached is None:
        with _LOCK:
            cached = model.__dict__.get("_neuronscope_probe")
            if cached is None:
                cached = _probe(model)
                model.__dict__["_neuronscope_probe"] = cached
    return cached


_NOTHING = Probe({}, {})


def known(model) -> Probe:
    """The cached probe, without running one (safe inside a forward pass, where hooks are live)."""
    return model.__dict__.get("_neuronscope_probe") or _NOTHING


def calls(model, path: str) -> int:
    """How often module ``path`` runs per forward pass (after :func:`probe`); its address means its *last* call."""
    return known(model).calls.get(path, 1)


# ---------------------------------------------------------------- the view taps give

def _kind(model, address: str, t: torch.Tensor, spec: LayoutSpec) -> str:
    declared = spec.kind_for(address)
    if declared is not None:
        return declared
    if t.dim() == 3:
        return TOKENS
    if t.dim() == 4 and known(model).kinds.get(address) == CHANNELS_LAST:  # tap() probed before hooking
        return CHANNELS_LAST
    return CHANNELS_FIRST


def as_map(model, address: str, t: torch.Tensor) -> tuple[torch.Tensor, str]:
    """The tensor as the rest of neuronscope reads it, and the layout applied."""
    spec = spec_of(model)
    kind = _kind(model, address, t, spec)
    if kind == TOKENS:
        if t.dim() != 3:
            raise NeuronscopeError(f"layer {address!r} is declared as tokens but outputs shape {tuple(t.shape)}")
        split = token_split(spec, t.shape[1], declared_tokens=spec.kind_for(address) == TOKENS)
        if split is None:
            return t, RAW
        prefix, grid = split
        return tokens_to_map(t, len(prefix), grid), TOKENS
    if kind == CHANNELS_LAST:
        if t.dim() != 4:
            raise NeuronscopeError(f"layer {address!r} is declared channels-last but outputs shape {tuple(t.shape)}")
        return t.permute(0, 3, 1, 2), CHANNELS_LAST
    return t, RAW if kind == RAW else CHANNELS_FIRST


def token_part(model, address: str, t: torch.Tensor, key: str) -> torch.Tensor:
    """``layer[cls]`` (one prefix token, (B, C)) or ``layer[tokens]`` (the raw (B, N, C) tensor)."""
    if key == RAW_TOKENS_KEY:
        return t
    spec = spec_of(model)
    split = token_split(spec, t.shape[1])
    names = split[0] if split else ()
    if key not in names:
        valid = ", ".join(f"[{n}]" for n in (*names, RAW_TOKENS_KEY))
        raise NeuronscopeError(f"layer {address!r} outputs {t.shape[1]} tokens with no token named [{key}]; valid: {valid}")
    return t[:, names.index(key)]


def view(model, addr, output: Any, select) -> tuple[Any, str]:
    """Select ``addr``'s element of a module output and give it its map layout.

    ``select(output, addr)`` is the plain bracket selection of :mod:`neuronscope.taps`.
    Returns (value, kind); kind is ``tokens``, ``channels_last``, ``channels_first``,
    ``raw`` or ``prefix`` (one named prefix token).
    """
    if addr.index and isinstance(addr.index[-1], str) and not addr.pseudo:
        parent = dataclasses.replace(addr, index=addr.index[:-1])
        base = select(output, parent)
        if isinstance(base, torch.Tensor):
            if base.dim() != 3:
                raise NeuronscopeError(
                    f"layer {addr.text!r}: [{addr.index[-1]}] names a token, but {parent.text or addr.path!r} "
                    f"outputs shape {tuple(base.shape)}, not tokens (B, N, C)"
                )
            key = addr.index[-1]
            return token_part(model, addr.text, base, key), (RAW if key == RAW_TOKENS_KEY else "prefix")
    value = select(output, addr)
    if isinstance(value, torch.Tensor) and not addr.pseudo:
        return as_map(model, addr.text, value)
    return value, RAW


def expand(model, address: str, t: torch.Tensor) -> list[tuple[str, tuple[int, ...], str]]:  # outside any forward
    """Layer-listing rows for one tapped tensor: (address, per-image shape, layout note).

    A token layer lists its patch-token map and each named prefix token
    (``layer[cls]``); its raw ``layer[tokens]`` is addressable but not listed.
    """
    probe(model)
    mapped, kind = as_map(model, address, t)
    rows = [(address, tuple(mapped.shape[1:]), kind)]
    if kind == TOKENS:
        prefix, grid = token_split(spec_of(model), t.shape[1])
        rows[0] = (address, rows[0][1], f"{len(prefix)}+{grid[0]}x{grid[1]} tokens")
        rows += [(f"{address}[{n}]", (t.shape[2],), "prefix token") for n in prefix]
    return rows


def describe(spec: LayoutSpec | None) -> dict:
    """A JSON-able description (run metadata)."""
    if spec is None:
        return {}
    return {"token_grid": list(spec.token_grid) if spec.token_grid else None,
            "prefix_tokens": list(spec.prefix) if spec.prefix is not None else None,
            "layers": dict(spec.layers)}


def check_names(spec: LayoutSpec, names: Sequence[str]) -> None:
    """Every declared pattern must match some layer (a typo would silently do nothing)."""
    for pattern, _ in spec.layers:
        if not any(fnmatchcase(n, pattern) for n in names):
            raise NeuronscopeError(f"layouts pattern {pattern!r} matches no layer of the model")


def channel_axis(model, address: str, out: torch.Tensor) -> int:
    """The axis of a raw module output that holds the channels, per its layout."""
    kind = _kind(model, address, out, spec_of(model))
    return -1 if kind in (TOKENS, CHANNELS_LAST) and out.dim() >= 3 else 1


def shift_channels(model, address: str, out: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """``out`` (one image, raw layout) repeated ``len(shift)`` times, row i plus ``shift[i]`` (C,) on every position.

    For tokens only the patch tokens move (a channel is their mean); the prefix tokens stay.
    """
    b, c = shift.shape
    axis = channel_axis(model, address, out)
    rows = out.expand(b, *out.shape[1:])
    if axis == 1:
        return rows + shift.view(b, c, *([1] * (out.dim() - 2)))
    add = shift.view(b, *([1] * (out.dim() - 2)), c)
    if out.dim() == 3 and _kind(model, address, out, spec_of(model)) == TOKENS:
        split = token_split(spec_of(model), out.shape[1])
        if split is not None and split[0]:
            keep = torch.ones(1, out.shape[1], 1, dtype=out.dtype, device=out.device)
            keep[:, : len(split[0])] = 0
            add = add * keep
    return rows + add
