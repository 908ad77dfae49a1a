"""The classes a unit most drives: d logit_k / d (the unit's channel mean), exact or averaged.

For channel c of a layer with map A, raise the whole map of c by delta (every
position, so its mean rises by delta) and watch the logits: the derivative

    J[c, k] = d logit_k / d delta = sum over positions of d logit_k / d A[c, y, x]

is the effect of one more unit of mean activation on class k. When the rest of
the network is linear in the channel means (EfficientNet-Lite0 from ``head``
onwards: ReLU6 output -> global mean pool -> ``fc``), J equals the classifier
weights and does not depend on the input: it is *exact*. Elsewhere it depends
on the input, so it is averaged over reference inputs (the top dataset images
of the layer when a top-k store exists, else the atlas's own renders of the
layer, resized to the model's input size); this is a local, first-order
attribution, stated as such on every page.

J is computed with forward-mode AD: one pass per reference input where row c
of a batch carries a dual perturbation of channel c only (rows never mix in an
``eval()`` model), so a layer of C channels costs C/chunk forward passes of the
network's tail per input instead of 1000 backward passes. The network's head
before the layer runs once per input (the hook expands the batch at the layer).
Linearity is detected, not assumed: J of the first 64 channels is computed at a
second, different input and the layer is declared exact when the two agree to
1e-5 (relative); otherwise every channel is averaged over all the inputs.

A layer address may name one element of a module's output: a token of a
token layer (``blocks.3[cls]``, shifted on that token only; ``[tokens]`` on
all of them) or a tuple/dict element (``heads[embedding]``; the other elements
pass unchanged). An element the logits do not depend on drives no class (zeros).

Attention runs on kernels forward-mode AD goes through: PyTorch's fused
``scaled_dot_product_attention`` CPU kernel and ``nn.MultiheadAttention``'s fast
path have no forward derivative, so the passes use the math kernel with the
fast path off (same values; restored afterwards). An operation that still has no
forward derivative is named in a NeuronscopeError, with ``--classes 0`` as the
way to build the atlas without class attribution.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Sequence

import torch
import torch.autograd.forward_ad as fwAD
import torch.nn.functional as F

from .. import layouts
from ..errors import NeuronscopeError
from ..models import Model
from ..taps import activations, element_hint, layer_shapes, parse_address

TOP = 5  # classes kept per unit, in each direction
LINEAR_RTOL = 1e-5
LINEAR_PROBE = 64  # channels compared at a second input to detect a linear tail


@contextmanager
def _forward_ad_attention():
    """Attention kernels with forward derivatives: SDPA's math kernel, nn.MultiheadAttention without its fast path."""
    mha = getattr(torch.backends, "mha", None)
    fast = mha.get_fastpath_enabled() if mha is not None else None
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
        kernel = sdpa_kernel([SDPBackend.MATH])
    except ImportError:  # torch < 2.3: the math kernel is the only one forward AD is offered anyway
        from contextlib import nullcontext
        kernel = nullcontext()
    if mha is not None:
        mha.set_fastpath_enabled(False)
    try:
        with kernel:
            yield
    finally:
        if mha is not None:
            mha.set_fastpath_enabled(fast)


def _repeat(value, b: int):
    """A module output (tensor, or tuple/list/dict of them) with its one image repeated to ``b`` rows."""
    if isinstance(value, torch.Tensor):
        return value.expand(b, *value.shape[1:])
    if isinstance(value, dict):
        return type(value)((k, _repeat(v, b)) for k, v in value.items())
    if isinstance(value, (tuple, list)):
        return type(value)(_repeat(v, b) for v in value)
    return value


def _shifted(model: Model, addr, value, keys: tuple, shift: torch.Tensor, idx: torch.Tensor):
    """``value`` repeated to one row per channel in ``idx``, the element at ``keys`` shifted in row i by
    ``shift[i]`` on channel ``idx[i]``: a whole map or token layer in its own layout, one named token of a
    ``(B, N, C)`` output (``[cls]``; ``[tokens]``: every token), or one tuple/dict element."""
    b = len(idx)
    if not keys:
        if not isinstance(value, torch.Tensor):
            raise NeuronscopeError(element_hint(addr.text, value))
        channels = value.shape[layouts.channel_axis(model, addr.text, value)]  # tokens, channels-last: last axis
        onehot = F.one_hot(idx, channels).to(value.dtype)
        return layouts.shift_channels(model, addr.text, value, shift[:, None] * onehot)
    key, rest = keys[0], keys[1:]
    if isinstance(value, torch.Tensor) and isinstance(key, str) and value.dim() == 3 and not rest:
        onehot = F.one_hot(idx, value.shape[-1]).to(value.dtype)
        if key == layouts.RAW_TOKENS_KEY:
            mask = torch.ones(1, value.shape[1], 1, dtype=value.dtype, device=value.device)
        else:
            layouts.token_part(model, addr.text, value, key)  # a NeuronscopeError naming the valid tokens
            names = layouts.token_split(layouts.spec_of(model), value.shape[1])[0]
            mask = torch.zeros(1, value.shape[1], 1, dtype=value.dtype, device=value.device)
            mask[:, names.index(key)] = 1
        return value.expand(b, *value.shape[1:]) + (shift[:, None] * onehot)[:, None, :] * mask
    if isinstance(value, dict) and key in value:
        return type(value)((k, _shifted(model, addr, v, rest, shift, idx) if k == key else _repeat(v, b))
                           for k, v in value.items())
    if isinstance(value, (tuple, list)) and isinstance(key, int) and -len(value) <= key < len(value):
        pos = key % len(value)
        return type(value)(_shifted(model, addr, v, rest, shift, idx) if i == pos else _repeat(v, b)
                           for i, v in enumerate(value))
    raise NeuronscopeError(f"layer {addr.text!r}: cannot shift element [{key}] of a {type(value).__name__}")


def _jacobian_one(model: Model, layer: str, x: torch.Tensor, channels: Sequence[int]) -> torch.Tensor:
    """(len(channels), classes): d logits / d (uniform shift of each channel) at input x (1,3,H,W)."""
    addr = parse_address(layer)
    module = model.net.get_submodule(addr.path)
    b = len(channels)
    idx = torch.as_tensor(list(channels), device=model.device)
    with fwAD.dual_level():
        shift = fwAD.make_dual(torch.zeros(b, device=model.device), torch.ones(b, device=model.device))

        fired = []

        def hook(mod, args, out):
            fired.append(True)
            return _shifted(model, addr, out, addr.index, shift, idx)

        handle = module.register_forward_hook(hook)
        try:
            with torch.no_grad(), _forward_ad_attention():
                logits = model(x.to(model.device))
            tangent = fwAD.unpack_dual(logits).tangent
        except NotImplementedError as e:
            raise NeuronscopeError(
                f"the classes of layer {layer!r} are computed by forward-mode AD through the rest of {model.name}, "
                f"and an operation after it has no forward derivative ({e}); build the atlas without them (--classes 0)"
            ) from e
        finally:
            handle.remove()
    if not fired:
        raise NeuronscopeError(f"layer {layer!r} did not run in {model.name}'s forward pass")
    if tangent is None:  # the logits do not depend on this element (e.g. another head's output): no class effect
        return torch.zeros(b, logits.shape[1])
    if tangent.shape[0] != b:
        raise NeuronscopeError(f"could not differentiate the logits through layer {layer!r}")
    return tangent.float().cpu()


def _chunk_rows(model: Model, layer: str, x: torch.Tensor, shape: Sequence[int] | None = None,
                budget: int = 32 * 2**20) -> int:
    """Rows per forward pass so the layer's dual output stays near ``budget`` floats."""
    if shape is None:
        shape = layer_shapes(model, [layer], x.shape[-1])[layer]
    per_row = 2 * max(1, int(torch.tensor(shape).prod()))
    return int(min(1024, max(16, budget // per_row)))


def layer_jacobian(model: Model, layer: str, x: torch.Tensor, channels: Sequence[int] | int,
                   chunk: int | None = None) -> torch.Tensor:
    """(channels, classes) at one input, in chunks of channels sized to a memory budget."""
    chans = list(range(channels)) if isinstance(channels, int) else list(channels)
    if chunk is None:
        with torch.no_grad():
            shape = tuple(activations(model, x, [layer])[layer].shape[1:])
        chunk = _chunk_rows(model, layer, x, shape)
    parts = [_jacobian_one(model, layer, x, chans[s:s + chunk]) for s in range(0, len(chans), chunk)]
    return torch.cat(parts)


def attribute_layer(model: Model, layer: str, channels: int, references: torch.Tensor, *, top: int = TOP,
                    size: int | None = None) -> dict:
    """Top classes per unit of ``layer`` (JSON-ready), from reference inputs (N,3,S,S) in [0, 1].

    The inputs are resized to ``size`` (default: the model's input size) first.

    Returns ``{"method": "linear"|"gradient", "inputs": n, "top": {unit: [[class, score], ...]},
    "bottom": {...}}``; "linear" means the path to the logits is linear and the
    scores are exact (the same at every input).
    """
    if references.shape[0] < 1:
        raise NeuronscopeError(f"no reference inputs to attribute {layer!r} to classes")
    size = int(size or model.input_size)
    refs = F.interpolate(references.float(), size=(size, size), mode="bilinear", align_corners=False,
                         antialias=True).clamp(0, 1) if references.shape[-1] != size else references.float()
    first = layer_jacobian(model, layer, refs[:1], channels)
    method, used, total = "gradient", 1, first.clone()
    if refs.shape[0] > 1:
        # Linearity is a property of the network's tail: compare a probe of channels at a second input
        # (all of them when the layer is small), then either stop (exact) or finish the average.
        probe = list(range(min(channels, LINEAR_PROBE)))
        second_probe = layer_jacobian(model, layer, refs[1:2], probe)
        scale = max(first[probe].abs().max().item(), 1e-12)
        if (first[probe] - second_probe).abs().max().item() <= LINEAR_RTOL * scale:
            method = "linear"
        else:
            rest = list(range(len(probe), channels))
            second = torch.cat([second_probe] + ([layer_jacobian(model, layer, refs[1:2], rest)] if rest else []))
            total += second
            used = 2
            for i in range(2, refs.shape[0]):
                total += layer_jacobian(model, layer, refs[i:i + 1], channels)
                used += 1
    mean = first if method == "linear" else total / used
    k = min(top, mean.shape[1])
    hi_v, hi_i = mean.topk(k, dim=1)
    lo_v, lo_i = (-mean).topk(k, dim=1)
    return {
        "method": method,
        "inputs": 1 if method == "linear" else used,
        "size": size,
        "top": {str(u): [[int(c), round(float(v), 5)] for c, v in zip(hi_i[u], hi_v[u])] for u in range(channels)},
        "bottom": {str(u): [[int(c), round(float(-v), 5)] for c, v in zip(lo_i[u], lo_v[u])] for u in range(channels)},
    }
