"""ReLU gradient redirection for the first optimization steps (Lucid's redirected_relu_grad).

While active, every ``nn.ReLU`` / ``nn.ReLU6`` module of the network is swapped
(and every convolution with a fused activation switched) for one whose
backward, per row, passes the gradient through unmasked when the
ordinary masked gradient of that row is entirely zero — but never in the
direction that pushes the input further out of range. The original modules are
put back when the block ends, whatever happens.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager

import torch
from torch import nn

from ..models.activations import unchanged_message


#: the clamp activations neuronscope redirects and fuses -> their upper bound (None: unbounded)
ACTIVATIONS = {"relu": None, "relu6": 6.0}


def activation_kind(m: nn.Module) -> str | None:
    """``"relu6"``, ``"relu"`` (keys of :data:`ACTIVATIONS`) or None for any other module."""
    if isinstance(m, nn.ReLU6):
        return "relu6"
    if isinstance(m, nn.ReLU):
        return "relu"
    return None


def activation_grad(g: torch.Tensor, a: torch.Tensor, upper: float | None, redirect: bool = False) -> torch.Tensor:
    """The gradient through ``clamp(z, 0, upper)`` (``upper=None``: ReLU), optionally redirected.

    ``a`` may be the input ``z`` or the output ``clamp(z)``: both are strictly
    inside (0, upper) at the same places, and ``z <= 0`` / ``z >= upper`` exactly
    where the output sits at 0 / upper, so the fused conv+activation of
    :mod:`neuronscope.optim.engine.fast_conv`, which keeps only its output, gets the same gradient.
    """
    # the ordinary ReLU/ReLU6 gradient, by the fused kernels autograd itself uses
    if upper is None:
        masked = torch.ops.aten.threshold_backward(g, a, 0.0)
    else:
        masked = torch.ops.aten.hardtanh_backward(g, a, 0.0, upper)
    if not redirect:
        return masked
    # rows with no gradient at all. amax and amin over each row are the cheapest test
    # measured (a flattening copy of a channels-last tensor or a norm costs 5-15x more)
    dims = tuple(range(1, g.dim()))
    dead = (masked.amax(dim=dims) == 0) & (masked.amin(dim=dims) == 0)
    if not bool(dead.any()):
        return masked
    rows = dead.nonzero().flatten()
    # gradient descent moves z by -g: block moves that go further out of range
    gz, az = g[rows], a[rows]
    outward = (az <= 0) & (gz > 0)
    if upper is not None:
        outward |= (az >= upper) & (gz < 0)
    masked[rows] = gz.masked_fill(outward, 0.0)
    return masked


class _RedirectedClamp(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z, upper):
        ctx.save_for_backward(z)
        ctx.upper = upper
        return z.clamp(0, upper) if upper is not None else z.clamp(min=0)

    @staticmethod
    def backward(ctx, g):
        (z,) = ctx.saved_tensors
        return activation_grad(g, z, ctx.upper, redirect=True), None


class RedirectedReLU(nn.Module):
    def __init__(self, upper: float | None):
        super().__init__()
        self.upper = upper

    def forward(self, z):
        return _RedirectedClamp.apply(z, self.upper)


def _swap_targets(net: nn.Module):
    for name, parent in net.named_modules():
        for child_name, child in parent.named_children():
            kind = activation_kind(child)
            if kind is not None:
                yield parent, child_name, child, ACTIVATIONS[kind]


@contextmanager
def redirected_relus(net: nn.Module, enabled: bool = True):
    """Swap ReLU/ReLU6 modules for redirected ones; yields the number swapped."""
    if not enabled:
        yield 0
        return
    swapped = []
    fused = [m for m in net.modules() if getattr(m, "fused_activation", None) is not None]
    try:
        for parent, name, child, upper in list(_swap_targets(net)):
            setattr(parent, name, RedirectedReLU(upper))
            swapped.append((parent, name, child))
        for m in fused:  # convolutions with the activation fused in (fast_conv.FastConv2d) redirect it themselves
            m.redirect = True
        if not swapped and not fused:
            warnings.warn("ReLU redirection: the model has no nn.ReLU/nn.ReLU6 modules to swap "
                          "(functional relu cannot be intercepted)", stacklevel=3)
        others = unchanged_message(net, "ReLU-redirection")
        if others:
            warnings.warn(others, RuntimeWarning, stacklevel=3)
        yield len(swapped) + len(fused)
    finally:
        for parent, name, child in swapped:
            setattr(parent, name, child)
        for m in fused:
            m.redirect = False
