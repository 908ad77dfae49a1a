"""Adam for the render loop: the same update as ``torch.optim.Adam`` with its defaults, without its import cost.

The first ``torch.optim`` optimizer built in a process imports ``torch._dynamo``
(it wraps ``step`` for the compiler), a cost paid again by every ``neuronscope
render`` command and large next to a short render (benchmarks/README.md,
render_vs_lucent, gives the figure). A render
only needs plain Adam on a handful of tensors, so this is it, written out
(Kingma & Ba 2015, bias-corrected, ``eps`` added after the square root, as
PyTorch does). tests/optim/engine/test_adam.py checks it against ``torch.optim.Adam`` step by step.
"""

from __future__ import annotations

import math
from typing import Iterable

import torch


def zero_grads(params, set_to_none: bool = True) -> None:
    """torch.optim's ``zero_grad`` for a list of tensors (shared by neuronscope's own optimizers)."""
    for p in params:
        if set_to_none:
            p.grad = None
        elif p.grad is not None:
            p.grad.zero_()


class Adam:
    def __init__(self, params: Iterable[torch.Tensor], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        self.params = [p for p in params if p.requires_grad]
        self.lr, self.betas, self.eps = float(lr), betas, float(eps)
        self._steps = [0] * len(self.params)  # per tensor, counted when it has a gradient (as torch does)
        self._m = [torch.zeros_like(p) for p in self.params]
        self._v = [torch.zeros_like(p) for p in self.params]

    def zero_grad(self, set_to_none: bool = True) -> None:
        zero_grads(self.params, set_to_none)

    @torch.no_grad()
    def step(self) -> None:
        b1, b2 = self.betas
        for i, (p, m, v) in enumerate(zip(self.params, self._m, self._v)):
            if p.grad is None:
                continue
            self._steps[i] += 1
            c1 = 1 - b1 ** self._steps[i]
            c2 = math.sqrt(1 - b2 ** self._steps[i])
            g = p.grad
            m.lerp_(g, 1 - b1)
            v.mul_(b2).addcmul_(g, g, value=1 - b2)
            denom = (v.sqrt() / c2).add_(self.eps)
            p.addcdiv_(m, denom, value=-self.lr / c1)
