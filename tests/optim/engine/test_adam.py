"""neuronscope's render Adam (neuronscope.optim.engine.adam) is torch.optim.Adam's update."""

from __future__ import annotations

import torch

from neuronscope.optim.engine.adam import Adam


def test_matches_torch_adam_step_by_step():
    g = torch.Generator().manual_seed(0)
    start = [torch.randn(3, 5, generator=g), torch.randn(7, generator=g)]
    ours = [t.clone().requires_grad_(True) for t in start]
    theirs = [t.clone().requires_grad_(True) for t in start]
    a, b = Adam(ours, lr=0.05), torch.optim.Adam(theirs, lr=0.05)
    for step in range(30):
        target = torch.randn(3, 5, generator=g)
        for params, opt in ((ours, a), (theirs, b)):
            opt.zero_grad(set_to_none=True)
            loss = ((params[0] - target) ** 2).sum() + params[1].sin().sum() * (step % 3)
            loss.backward()
            opt.step()
        for x, y in zip(ours, theirs):
            torch.testing.assert_close(x, y, rtol=1e-6, atol=1e-7)
    assert not torch.equal(ours[0], start[0])


def test_skips_tensors_without_gradient_and_frozen_ones():
    p = torch.zeros(4, requires_grad=True)
    frozen = torch.ones(2)  # requires_grad False: not optimized
    opt = Adam([p, frozen], lr=0.1)
    opt.step()  # no gradient yet: nothing moves
    assert torch.equal(p, torch.zeros(4))
    p.grad = torch.tensor([1.0, -1.0, 0.0, 2.0])
    opt.step()
    assert torch.allclose(p, torch.tensor([-0.1, 0.1, 0.0, -0.1]), atol=1e-6)  # first step: lr * sign
    assert torch.equal(frozen, torch.ones(2))
