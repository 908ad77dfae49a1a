"""ReLU gradient redirection for the first optimization steps (Lucid's redirected_relu_grad).

While active, every ``nn.ReLU`` / ``nn.ReLU6`` module of the network is swapped
for one whose backward, per row, passes the gradient through unmasked when the
ordinary masked gradient of that row is entirely zero — but never in the
direction that pushes the input further out of range. The original modules are
put back when the block ends, whatever happens.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager

import torch
from torch import nn


class _RedirectedClamp(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z, upper):
        ctx.save_for_backward(z)
        ctx.upper = upper
        return z.clamp(0, upper) if upper is not None else z.clamp(min=0)

    @staticmethod
    def backward(ctx, g):
        (z,) = ctx.saved_tensors
        upper = ctx.upper
        # the ordinary ReLU/ReLU6 gradient, by the fused kernels autograd itself uses
        if upper is None:
            masked = torch.ops.aten.threshold_backward(g, z, 0.0)
        else:
            masked = torch.ops.aten.hardtanh_backward(g, z, 0.0, upper)
        # rows with no gradient at all. amax and amin over each row are the cheapest test
        # measured (a flattening copy of a channels-last tensor or a norm costs 5-15x more)
        dims = tuple(range(1, g.dim()))
        dead = (masked.amax(dim=dims) == 0) & (masked.amin(dim=dims) == 0)
        if not bool(dead.any()):
            return masked, None
        rows = dead.nonzero().flatten()
        # gradient descent moves z by -g: block moves that go further out of range
        gz, zz = g[rows], z[rows]
        outward = (zz <= 0) & (gz > 0)
        if upper is not None:
            outward |= (zz >= upper) & (gz < 0)
        masked[rows] = gz.masked_fill(outward, 0.0)
        return masked, None


class RedirectedReLU(nn.Module):
    def __init__(self, upper: float | None):
        super().__init__()
        self.upper = upper

    def forward(self, z):
        return _RedirectedClamp.apply(z, self.upper)


def _swap_targets(net: nn.Module):
    for name, parent in net.named_modules():
        for child_name, child in parent.named_children():
            if isinstance(child, nn.ReLU6):
                yield parent, child_name, child, 6.0
            elif isinstance(child, nn.ReLU):
                yield parent, child_name, child, None


@contextmanager
def redirected_relus(net: nn.Module, enabled: bool = True):
    """Swap ReLU/ReLU6 modules for redirected ones; yields the number swapped."""
    if not enabled:
        yield 0
        return
    swapped = []
    try:
        for parent, name, child, upper in list(_swap_targets(net)):
            setattr(parent, name, RedirectedReLU(upper))
            swapped.append((parent, name, child))
        if not swapped:
            warnings.warn("ReLU redirection: the model has no nn.ReLU/nn.ReLU6 modules to swap "
                          "(functional relu cannot be intercepted)", stacklevel=3)
        yield len(swapped)
    finally:
        for parent, name, child in swapped:
            setattr(parent, name, child)
