"""Backward diffs at a layer, for the grid's backprop display (the 2015 toolbox's ``a`` key).

:func:`layer_diffs` seeds one unit (a channel of a later layer, or a class) with
its own activation, as the backprop pane does, and returns the derivative at
every channel of an earlier layer under the gradient, DeconvNet or guided
rules of :mod:`neuronscope.attribution`. The page shows it in the layer grid,
positive green and negative red.
"""

from __future__ import annotations

import torch

from ..attribution import rectifier_rules
from ..errors import NeuronscopeError
from ..taps import tap


def layer_diffs(model, x: torch.Tensor, src_layer: str, unit: int, mode: str, dst_layer: str) -> torch.Tensor | None:
    """d(unit of ``src_layer``)/d(``dst_layer``) for one image ``x`` (1, 3, H, W), as (C, H, W) or (C,).

    None when ``dst_layer`` does not feed ``src_layer`` (it comes after it).
    """
    if dst_layer == "input":
        raise NeuronscopeError("the grid shows backward diffs of network layers; the input's is the backprop pane")
    with torch.inference_mode(False), torch.enable_grad():
        inp = x.detach().clone().float().requires_grad_(True)
        with rectifier_rules(model, mode), tap(model, [dst_layer, src_layer]) as taps:
            taps.run(inp)
            src, dst = taps[src_layer], taps[dst_layer]
        if src.dim() not in (2, 4) or not 0 <= unit < src.shape[1]:
            raise NeuronscopeError(f"unit {unit} is not in layer {src_layer} (output shape {tuple(src.shape)})")
        sel = src[:, unit]
        if not dst.requires_grad:
            return None
        if dst_layer == src_layer:
            return sel.detach()[0].float().cpu().expand_as(dst[0]).clone() * _one_hot(dst[0], unit)
        (grad,) = torch.autograd.grad(sel, dst, grad_outputs=sel.detach(), allow_unused=True)
    if grad is None:
        return None
    return grad[0].detach().float().cpu()


def _one_hot(like: torch.Tensor, unit: int) -> torch.Tensor:
    m = torch.zeros_like(like, dtype=torch.float32, device="cpu")
    m[unit] = 1.0
    return m
