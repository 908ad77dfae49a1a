"""Render-time speedups: a copy of a model that computes the same function faster.

Activation maximization runs the model forward *and* backward hundreds of times
on the same frozen network, so a one-off rewrite of the network pays for itself
within a step or two. :func:`fast_model` returns such a rewrite:

* **BatchNorm folding.** An eval-mode ``BatchNorm2d`` that directly follows a
  convolution (and is that convolution's only reader) is folded into the
  convolution's weight and bias, and replaced by ``nn.Identity`` so every layer
  address still resolves (tapping the BN gives the same tensor as before). A
  convolution whose *own* output is tapped is left alone, since folding would
  change what the tap sees. Pairs are found by tracing the network with
  ``torch.fx`` (convolutions and norms as leaves); a network that cannot be
  traced is simply not folded.
* **input-gradient-only convolutions**: every remaining plain convolution
  becomes a :class:`~neuronscope.optim.engine.fast_conv.FastConv2d`, whose backward
  computes the image gradient with forward convolutions (see that module).
* **fused activations**: a ``ReLU``/``ReLU6`` module that reads only a fast
  convolution's output (through nothing but folded-away BatchNorms) is fused
  into that convolution, one oneDNN kernel with the clamp as a post-op; the
  activation's address stays, as an ``nn.Identity`` that passes the result on.
  A convolution (or BatchNorm) whose output is tapped keeps its activation apart.
* **precision** (opt-in): ``bfloat16`` weights and activations.
* **channels-last memory format** (on CPU): oneDNN's convolutions, depthwise
  ones especially, run faster on NHWC tensors, and folding removes the NCHW
  BatchNorm kernels that made the layout change costly.

The copy's parameters are new tensors; the original model is never modified.
Values and input gradients agree with the original to float32 rounding
(tests/optim/engine/test_fast_copy.py checks 1e-4 relative). See ``benchmarks/render_vs_lucent.py``
for what it buys.
"""

from __future__ import annotations

import copy
import time
import weakref
from dataclasses import dataclass, field
from typing import Iterable

import torch
from torch import nn

from ...errors import NeuronscopeError
from ...models import Model
from ...taps import parse_address
from .fast_conv import FastConv2d
from ...gradient_overrides import activation_kind


@dataclass
class FastInfo:
    """What :func:`fast_model` changed, for the render metadata."""

    folded: list[str] = field(default_factory=list)  # conv addresses that absorbed their BatchNorm
    kept: list[str] = field(default_factory=list)  # conv+BN pairs left alone because the conv is tapped
    input_grad_convs: int = 0  # convolutions running the fast input-gradient backward (fast_conv.py)
    fused_activations: list[str] = field(default_factory=list)  # ReLU/ReLU6 addresses fused into their conv
    sensitive: list[str] = field(default_factory=list)  # addresses whose being tapped prevents a fusion
    channels_last: bool = False
    dtype: str = "float32"  # what the copy computes in (bfloat16 on CPUs with native bf16, see precision)
    reason: str = ""  # why nothing was folded, when nothing was
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return {"folded": len(self.folded), "kept": self.kept, "input_grad_convs": self.input_grad_convs,
                "fused_activations": len(self.fused_activations),
                "channels_last": self.channels_last, "dtype": self.dtype, "reason": self.reason,
                "seconds": round(self.seconds, 3)}


# ---------------------------------------------------------------- finding conv -> BN pairs

class _LeafTracer(torch.fx.Tracer):
    """Keeps convolutions and norms as single call_module nodes, whatever their Python forward does."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        if isinstance(m, (nn.Conv2d, nn.modules.batchnorm._BatchNorm, FastConv2d)):
            return True
        return super().is_leaf_module(m, qualname)


def conv_bn_pairs(net: nn.Module) -> tuple[list[tuple[str, str]], str]:
    """``[(conv address, bn address)]`` where the BN reads the conv's output and nothing else does.

    Returns the pairs and, when none could be looked for, the reason (tracing failed).
    """
    try:
        graph = _LeafTracer().trace(net)
    except Exception as e:  # noqa: BLE001 - any tracing failure just means "no folding"
        return [], f"the network could not be traced with torch.fx ({type(e).__name__}: {str(e)[:120]})"
    modules = dict(net.named_modules())
    pairs = []
    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(modules.get(node.target), nn.BatchNorm2d):
            continue
        src = node.args[0] if node.args else None
        if not isinstance(src, torch.fx.Node) or src.op != "call_module" or len(node.args) != 1 or node.kwargs:
            continue
        if not isinstance(modules.get(src.target), nn.Conv2d) or len(src.users) != 1:
            continue
        pairs.append((src.target, node.target))
    # a module called at several places (weight sharing) must not be folded
    calls: dict[str, int] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    return [(c, b) for c, b in pairs if calls[c] == 1 and calls[b] == 1], ""


# ---------------------------------------------------------------- folding

def _folded(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias of ``bn(conv(x))`` as one convolution (eval-mode statistics)."""
    var, mean = bn.running_var.double(), bn.running_mean.double()
    gamma = bn.weight.double() if bn.weight is not None else torch.ones_like(var)
    beta = bn.bias.double() if bn.bias is not None else torch.zeros_like(var)
    scale = gamma / torch.sqrt(var + bn.eps)
    w = conv.weight.double() * scale.view(-1, *([1] * (conv.weight.dim() - 1)))
    b = conv.bias.double() if conv.bias is not None else torch.zeros_like(mean)
    b = (b - mean) * scale + beta
    dtype = conv.weight.dtype
    return w.to(dtype), b.to(dtype)


class BiasAfter(nn.Module):
    """``conv(x) + bias`` for a convolution whose forward ignores ``self.bias`` (the slow but safe form)."""

    def __init__(self, conv: nn.Module, bias: torch.Tensor):
        super().__init__()
        self.conv = conv
        self.register_buffer("bias", bias.view(1, -1, 1, 1))

    def forward(self, x):
        return self.conv(x) + self.bias


def _fast_equivalent(conv: nn.Module, weight=None, bias=None) -> FastConv2d | None:
    """A :class:`FastConv2d` for a convolution whose forward is known (plain ``nn.Conv2d``, ``Conv2dSame``)."""
    from ...models.efficientnet_lite import Conv2dSame

    if not isinstance(conv, nn.Conv2d) or tuple(conv.dilation) != (1, 1) or conv.padding_mode != "zeros":
        return None
    w = conv.weight if weight is None else weight
    b = conv.bias if bias is None else bias
    if type(conv) is Conv2dSame:
        return FastConv2d(w, b, conv.stride, "tf_same", conv.groups)
    if type(conv) is nn.Conv2d and not isinstance(conv.padding, str):
        return FastConv2d(w, b, conv.stride, tuple(conv.padding), conv.groups)
    return None


def _probe_input(conv: nn.Conv2d) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    # odd, unequal sides exercise the asymmetric padding paths
    return torch.randn(1, conv.weight.shape[1] * conv.groups, 9, 7, generator=g).to(conv.weight)


def _same_function(a: nn.Module, b: nn.Module, x: torch.Tensor) -> bool:
    with torch.no_grad():
        ya, yb = a(x), b(x)
    if ya.shape != yb.shape:
        return False
    scale = ya.double().norm().clamp(min=1e-12)
    return bool((ya.double() - yb.double()).norm() / scale < 1e-5)  # float32 rounding is ~1e-7


def _fold_into(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Module | None:
    """A module computing ``bn(conv(x))`` with one convolution, checked numerically against the pair.

    Tries, in order: neuronscope's SAME-padding conv with a bias; a copy of the
    conv with folded weight and bias (any conv whose forward uses ``self.bias``);
    the folded conv followed by a bias add (a forward that ignores ``self.bias``).
    None when no candidate reproduces the pair.
    """
    w, b = _folded(conv, bn)
    reference = nn.Sequential(conv, bn)
    x = _probe_input(conv)

    def candidates():
        fast = _fast_equivalent(conv, w, b)
        if fast is not None:
            yield fast
        plain = copy.deepcopy(conv)
        plain.weight = nn.Parameter(w.clone(), requires_grad=False)
        plain.bias = nn.Parameter(b.clone(), requires_grad=False)
        yield plain
        plain.bias = None
        yield BiasAfter(plain, b.clone())
        if conv.bias is not None:  # a forward that ignores self.bias never added the conv's own bias
            yield BiasAfter(plain, _folded(_without_bias(conv), bn)[1])

    for cand in candidates():
        if _same_function(reference, cand, x):
            return cand
    return None


def _without_bias(conv: nn.Conv2d) -> nn.Conv2d:
    c = copy.deepcopy(conv)
    c.bias = None
    return c


def _has_hooks(m: nn.Module) -> bool:
    return bool(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks
                or getattr(m, "_backward_pre_hooks", None))


def _set(root: nn.Module, address: str, module: nn.Module) -> None:
    parent, _, name = address.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, name, module)


def fold_batchnorm(net: nn.Module, keep: Iterable[str] = ()) -> FastInfo:
    """Fold eval BatchNorms into the preceding convolutions of ``net`` *in place*.

    ``keep``: layer addresses whose outputs must stay exactly as they are; a conv
    listed there keeps its BN. Returns what was done.
    """
    info = FastInfo()
    if net.training:
        info.reason = "the network is in training mode (BatchNorm uses batch statistics)"
        return info
    pairs, info.reason = conv_bn_pairs(net)
    keep = set(keep)
    for conv_name, bn_name in pairs:
        if conv_name in keep:
            info.kept.append(conv_name)
            continue
        conv, bn = net.get_submodule(conv_name), net.get_submodule(bn_name)
        if bn.running_mean is None or bn.running_var is None:
            continue
        if _has_hooks(conv) or _has_hooks(bn):  # a user's hook (e.g. an ablation) must keep seeing its module
            info.kept.append(conv_name)
            continue
        fused = _fold_into(conv, bn)
        if fused is None:
            continue
        _set(net, conv_name, fused)
        _set(net, bn_name, nn.Identity())
        info.folded.append(conv_name)
    if not pairs and not info.reason:
        info.reason = "no convolution followed directly by a BatchNorm2d"
    return info


def swap_convs(net: nn.Module) -> int:
    """Replace the remaining plain convolutions of ``net`` by :class:`FastConv2d` *in place*.

    Skips convolutions carrying hooks and any whose replacement does not
    reproduce it on a probe input. Returns how many run the fast backward now.
    """
    count = 0
    for name, m in list(net.named_modules()):
        if isinstance(m, FastConv2d):
            count += 1
            continue
        if not name or not isinstance(m, nn.Conv2d) or _has_hooks(m) or m.weight.requires_grad:
            continue
        fast = _fast_equivalent(m)
        if fast is not None and _same_function(m, fast, _probe_input(m)):
            _set(net, name, fast)
            count += 1
    return count


def fuse_activations(net: nn.Module, keep: Iterable[str] = ()) -> tuple[list[str], set[str]]:
    """Fuse each ReLU/ReLU6 module into the :class:`FastConv2d` it reads, *in place*.

    A pair qualifies when the activation's input is the convolution's output,
    possibly through ``nn.Identity`` modules (folded BatchNorms), and nothing else
    reads the convolution or those identities; each module is called once, none
    carries a hook, and neither the convolution nor an identity in between is in
    ``keep`` (their outputs would change). Every fusion is checked numerically.
    Returns the fused activation addresses and the addresses whose being tapped
    would have prevented a fusion (for the copy cache).
    """
    keep = set(keep)
    try:
        graph = _LeafTracer().trace(net)
    except Exception:  # noqa: BLE001 - untraceable: nothing fused
        return [], set()
    modules = dict(net.named_modules())
    calls: dict[str, int] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    fused, sensitive = [], set()
    for node in graph.nodes:
        if node.op != "call_module" or len(node.args) != 1 or node.kwargs:
            continue
        act = modules.get(node.target)
        kind = activation_kind(act) if act is not None else None
        if kind is None:
            continue
        chain, src = [], node.args[0]
        while (isinstance(src, torch.fx.Node) and src.op == "call_module"
               and type(modules.get(src.target)) is nn.Identity and len(src.args) == 1 and len(src.users) == 1):
            chain.append(src.target)
            src = src.args[0]
        if not isinstance(src, torch.fx.Node) or src.op != "call_module" or len(src.users) != 1:
            continue
        conv = modules.get(src.target)
        if not isinstance(conv, FastConv2d) or conv.fused_activation is not None:
            continue
        names = [src.target, *chain, node.target]
        if any(calls[n] != 1 or _has_hooks(modules[n]) for n in names):
            continue
        between = {src.target, *chain}
        sensitive |= between
        if between & keep:
            continue
        candidate = copy.deepcopy(conv)
        candidate.fused_activation = kind
        if not _same_function(nn.Sequential(conv, act), candidate, _probe_input(conv)):
            continue
        _set(net, src.target, candidate)
        _set(net, node.target, nn.Identity())
        fused.append(node.target)
    return fused, sensitive


# ---------------------------------------------------------------- the fast copy

class ChannelsLast(nn.Module):
    """Puts a 4-D batch in channels-last memory format (values unchanged)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x


class ToDtype(nn.Module):
    """Casts the (preprocessed) batch to the network's dtype; the gradient flows back in float32."""

    def __init__(self, dtype: torch.dtype):
        super().__init__()
        self.dtype = dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(self.dtype)

    def extra_repr(self) -> str:
        return str(self.dtype)


def native_bf16(device: torch.device | str = "cpu") -> bool:
    """Whether the device computes bfloat16 natively (CPU: AVX512-BF16 or AMX; CUDA: compute capability 8+)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    probes = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(bool(p()) for p in probes if callable(p))


PRECISIONS = ("auto", "float32", "bfloat16")


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.bfloat16`` -> ``"bfloat16"``: how render metadata names a dtype."""
    return str(dtype).replace("torch.", "")


def resolve_precision(precision: str, device: torch.device | str) -> torch.dtype:
    """``auto``: bfloat16 where the device has native bf16 arithmetic, else float32."""
    if precision not in PRECISIONS:
        raise NeuronscopeError(f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}")
    if precision == "auto":
        return torch.bfloat16 if native_bf16(device) else torch.float32
    return getattr(torch, precision)


#: renders with fewer pixel-steps (rows x size^2 x steps) than this do not repay building a copy
AUTO_MIN_WORK = 2 ** 21


def use_fast(device: torch.device | str, batch: int, size: int | tuple[int, int], steps: int) -> bool:
    """The automatic choice of ``Engine(fast=None)``: on CPU (where it was measured), for non-trivial renders."""
    h, w = (size, size) if isinstance(size, int) else size
    return torch.device(device).type == "cpu" and batch * h * w * steps >= AUTO_MIN_WORK


_CACHE: "weakref.WeakKeyDictionary[Model, dict]" = weakref.WeakKeyDictionary()


def _fingerprint(model: Model) -> tuple:
    """Changes whenever a parameter or buffer is replaced, moved or edited in place, or a module or hook changes."""
    tensors = tuple((id(t), t._version, t.data_ptr(), t.device.type) for t in (*model.parameters(), *model.buffers()))
    modules = tuple((id(m), tuple(m._forward_hooks), tuple(m._forward_pre_hooks)) for m in model.modules())
    return tensors + modules


def fast_model(model: Model, layers: Iterable[str] = (), *, fold: bool = True,
               channels_last: bool | None = None, precision: str = "float32") -> tuple[Model, FastInfo]:
    """A faster copy of ``model`` for optimizing images; ``layers`` are the addresses that will be tapped.

    ``channels_last=None`` uses it on CPU only (where it was measured to help).
    The copy has the same layer addresses, labels and preprocessing. It is cached
    per model and rebuilt whenever the model's weights or modules change (even
    in place), so edits such as ablating a channel are always seen.
    ``precision``: ``float32``, ``bfloat16`` (weights and activations in bf16,
    the input gradient returned in float32), or ``auto`` (bf16 where the device
    has native bf16 arithmetic; see docs/render-speed.md for what it costs in accuracy).
    """
    if channels_last is None:
        channels_last = model.device.type == "cpu"
    dtype = resolve_precision(precision, model.device)
    keep = frozenset(parse_address(a).path for a in layers)
    fingerprint = _fingerprint(model)
    entry = _CACHE.get(model)
    if entry is None or entry["fingerprint"] != fingerprint:
        entry = _CACHE[model] = {"fingerprint": fingerprint, "sensitive": None, "copies": {}}
    # only taps on a folded or fused convolution (or what lies between it and its activation) change the copy
    if entry["sensitive"] is not None:
        key = (keep & entry["sensitive"], fold, channels_last, dtype)
        if key in entry["copies"]:
            return entry["copies"][key]
    fast, info = build_fast_model(model, keep, fold=fold, channels_last=channels_last, dtype=dtype)
    # addresses whose tapping changes the copy; accumulated, since a copy built with some taps can miss others
    entry["sensitive"] = (entry["sensitive"] or frozenset()) | frozenset(info.folded) | frozenset(info.kept) | frozenset(info.sensitive)
    entry["copies"][(keep & entry["sensitive"], fold, channels_last, dtype)] = (fast, info)
    return fast, info


def build_fast_model(model: Model, keep: Iterable[str] = (), *, fold: bool = True,
                     channels_last: bool = True, dtype: torch.dtype = torch.float32) -> tuple[Model, FastInfo]:
    """The uncached :func:`fast_model`: a new copy, with ``keep`` the module paths that must stay exact."""
    start = time.perf_counter()
    try:
        fast = copy.deepcopy(model)
    except Exception as e:  # noqa: BLE001 - a model that cannot be copied is used as it is
        return model, FastInfo(reason=f"the model could not be copied ({type(e).__name__}: {str(e)[:120]})")
    for p in fast.parameters():
        p.requires_grad_(False)
    info = fold_batchnorm(fast.net, keep) if fold else FastInfo(reason="folding turned off")
    info.input_grad_convs = swap_convs(fast.net)
    info.fused_activations, sensitive = fuse_activations(fast.net, keep)
    info.sensitive = sorted(sensitive)
    if channels_last:
        fast.net.to(memory_format=torch.channels_last)
        fast.preprocess = nn.Sequential(ChannelsLast(), fast.preprocess)
        info.channels_last = True
    if dtype != torch.float32:
        fast.net.to(dtype)
        fast.preprocess = nn.Sequential(fast.preprocess, ToDtype(dtype))
        info.dtype = dtype_name(dtype)
    fast.eval()
    info.seconds = time.perf_counter() - start
    return fast, info
