"""Backward views of a unit: plain gradient, DeconvNet and guided backprop.

All three views send a signal from one unit back to the [0, 1] input image
through the ordinary gradient of every layer, except at the rectifiers, where
each view has its own rule (docs/design.md 5.7; R_out arrives from above, z is the
rectifier's forward input):

========  ===========================================  ==========================
mode      ReLU                                         ReLU6
========  ===========================================  ==========================
gradient  R_in = R_out·[z>0]   (Simonyan et al. 2014)  R_in = R_out·[0<z<6]
deconv    R_in = max(R_out, 0) (Zeiler & Fergus 2014)  R_in = max(R_out, 0)
guided    R_in = R_out·[z>0]·[R_out>0] (Springenberg)  R_in = R_out·[0<z<6]·[R_out>0]
========  ===========================================  ==========================

DeconvNet at the ReLU6 upper bound: the deconvnet's backward ReLU rectifies the
*backward signal* and ignores the forward input z, so it has no forward mask to
carry the upper bound. Clamping the signal at 6 instead (applying ReLU6 to
R_out) would compare a gradient-unit quantity with an activation-unit constant:
the view would change shape with the seed's scale. We therefore use
max(R_out, 0) for ReLU6 as well, which keeps the view positively homogeneous in
the seed (doubling the seed doubles the view) like every other mode.

The rules are the table of :mod:`neuronscope.gradient_overrides`, applied by
temporarily swapping every ``nn.ReLU`` and ``nn.ReLU6`` module of ``model.net``
(:func:`rectifier_rules`); the originals are put back whatever happens. A network
that calls ``F.relu`` functionally cannot be intercepted: then nothing is
swapped, every mode degenerates to the plain gradient, and a warning says so.
"""

from __future__ import annotations

import operator
from contextlib import contextmanager
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from . import gradient_overrides
from .errors import NeuronscopeError
from .gradient_overrides import RuleRectifier  # noqa: F401 (public name, kept here too)
from .taps import resolve, tap

MODES = ("gradient", "deconv", "guided")
SEEDS = ("activation", "ones")
FILTERS = ("raw", "gray", "norm", "normblur")


def _check_mode(mode: str) -> str:
    if mode not in MODES:
        raise NeuronscopeError(f"unknown backward mode {mode!r}; valid: {', '.join(MODES)}")
    return mode


@contextmanager
def rectifier_rules(model: nn.Module, mode: str) -> Iterator[int]:
    """Swap the ReLU/ReLU6 modules of ``model.net`` (or ``model``) for rule modules.

    Yields the number of modules swapped. The original modules are restored
    when the block exits, also on an exception. Warns when nothing was swapped.
    """
    _check_mode(mode)
    with gradient_overrides.rectifier_rules(model, mode) as n:
        yield n


def _unit_map(model, act: torch.Tensor, layer: str, unit: int, position) -> torch.Tensor:
    """The selected unit's activation (B, H, W) or (B,) with validated indices."""
    if act.dim() not in (2, 4):
        raise NeuronscopeError(
            f"layer {layer!r} outputs shape {tuple(act.shape)}; backward views need (B, C, H, W) or (B, C)"
        )
    channels = act.shape[1]
    what = "class" if layer == "logits" else "channel"
    try:
        if isinstance(unit, bool):
            raise TypeError
        unit = operator.index(unit)  # int, numpy or 0-d torch integers
    except TypeError as e:
        raise NeuronscopeError(f"{what} must be an integer index, got {unit!r}") from e
    if not 0 <= unit < channels:
        raise NeuronscopeError(f"{what} {unit!r} is out of range: layer {layer!r} has {what}s 0..{channels - 1}")
    sel = act[:, unit]
    if position is None:
        return sel
    if act.dim() == 2:
        raise NeuronscopeError(f"layer {layer!r} has no spatial map, so a position (x, y) is not valid; omit it")
    try:
        px, py = (int(v) for v in position)
    except (TypeError, ValueError) as e:
        raise NeuronscopeError(f"position must be (x, y) integers, got {position!r}") from e
    h, w = act.shape[-2:]
    if not (0 <= px < w and 0 <= py < h):
        raise NeuronscopeError(
            f"position (x={px}, y={py}) is outside layer {layer!r}'s {w}x{h} map (x in 0..{w - 1}, y in 0..{h - 1})"
        )
    return sel[:, py, px]


def backward_view(
    model,
    x: torch.Tensor,
    layer: str,
    unit: int,
    mode: str = "guided",
    position: Sequence[int] | None = None,
    seed: str = "activation",
) -> torch.Tensor:
    """The backward view of one unit for each image of a batch.

    ``x``: (B, 3, H, W) images in [0, 1]. ``unit``: a channel of ``layer`` (a
    class index when ``layer == "logits"``). ``position``: ``None`` for the
    whole channel or ``(x, y)`` (column, row) for one neuron of its map.
    ``seed``: ``"activation"`` starts the backward pass from the unit's own
    activation values (as the 2015 deep-visualization toolbox did), ``"ones"``
    from ones. Rows are independent. Returns the (B, 3, H, W) signal at the
    [0, 1] input, detached, on ``x``'s device; the model is left unchanged.
    """
    _check_mode(mode)
    if seed not in SEEDS:
        raise NeuronscopeError(f"unknown seed {seed!r}; valid: {', '.join(SEEDS)}")
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] != 3:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise NeuronscopeError(f"expected an image batch of shape (B, 3, H, W), got {shape}")
    addr = resolve(model, layer)
    if addr.path == "input":
        raise NeuronscopeError("layer 'input' has no backward view; choose a network layer or 'logits'")
    device = model.device
    with torch.inference_mode(False), torch.enable_grad():
        inp = x.detach().to(device).clone().float().requires_grad_(True)
        with rectifier_rules(model, mode):
            with tap(model, [layer], stop_early=True) as taps:
                taps.run(inp)
                act = taps[layer]
            sel = _unit_map(model, act, layer, unit, position)
            start = sel.detach() if seed == "activation" else torch.ones_like(sel)
            (grad,) = torch.autograd.grad(sel, inp, grad_outputs=start, allow_unused=True)
    if grad is None:
        grad = torch.zeros_like(inp)
    return grad.detach().to(x.device)


# ---------------------------------------------------------------- display

def _gaussian_blur(img: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (B, 1, H, W) with replicate borders."""
    if sigma <= 0:
        return img
    radius = max(1, int(3 * sigma + 0.5))
    t = torch.arange(-radius, radius + 1, dtype=img.dtype, device=img.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    img = F.pad(img, (radius, radius, radius, radius), mode="replicate")
    img = F.conv2d(img, k.view(1, 1, 1, -1))
    return F.conv2d(img, k.view(1, 1, -1, 1))


def _centered(v: torch.Tensor) -> torch.Tensor:
    """Map signed values to [0, 1] with 0 at 0.5, per row (max |v| -> 0 or 1)."""
    scale = v.abs().flatten(1).amax(1).clamp_min(1e-12).view(-1, *([1] * (v.dim() - 1)))
    return v / (2 * scale) + 0.5


def _stretched(v: torch.Tensor) -> torch.Tensor:
    """Min-max stretch to [0, 1] per row."""
    flat = v.flatten(1)
    lo = flat.amin(1).view(-1, *([1] * (v.dim() - 1)))
    hi = flat.amax(1).view(-1, *([1] * (v.dim() - 1)))
    return (v - lo) / (hi - lo).clamp_min(1e-12)


def render_view(g: torch.Tensor, filter: str = "raw", blur_sigma: float = 4.0) -> torch.Tensor:
    """A backward view as (B, 3, H, W) display images in [0, 1].

    Filters of the 2015 toolbox's back pane: ``raw`` (signed RGB, 0 at mid
    gray), ``gray`` (channel mean, signed, 0 at mid gray), ``norm`` (per-pixel
    L2 norm over colour, stretched to [0, 1]) and ``normblur`` (the norm blurred
    with a Gaussian of ``blur_sigma`` pixels, then stretched). Per row.
    """
    if filter not in FILTERS:
        raise NeuronscopeError(f"unknown display filter {filter!r}; valid: {', '.join(FILTERS)}")
    if g.dim() != 4 or g.shape[1] != 3:
        raise NeuronscopeError(f"expected a (B, 3, H, W) backward view, got {tuple(g.shape)}")
    g = g.detach().float()
    if filter == "raw":
        return _centered(g).clamp(0, 1)
    if filter == "gray":
        return _centered(g.mean(1, keepdim=True)).clamp(0, 1).expand(-1, 3, -1, -1).contiguous()
    norm = g.norm(dim=1, keepdim=True)
    if filter == "normblur":
        norm = _gaussian_blur(norm, blur_sigma)
    return _stretched(norm).clamp(0, 1).expand(-1, 3, -1, -1).contiguous()
