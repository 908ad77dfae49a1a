"""The rectifier rule table and its module swap (neuronscope.gradient_overrides)."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from neuronscope.gradient_overrides import RULES, RuleRectifier, rectifier_rules


def _net():
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Conv2d(4, 4, 1), torch.nn.ReLU6())


@pytest.mark.parametrize("upper", [None, 6.0])
def test_each_rule_follows_its_definition(upper):
    z = torch.tensor([[-1.0, 0.5, 3.0, 7.0], [-2.0, -1.0, -0.5, -3.0]])  # row 1 is dead everywhere
    r = torch.tensor([[1.0, -2.0, 3.0, -4.0], [1.0, -1.0, 2.0, -2.0]])
    inside = (z > 0) & (z < upper) if upper else z > 0
    want = {"gradient": r * inside, "deconv": r.clamp(min=0), "guided": r * inside * (r > 0)}
    # redirect: row 0 has a gradient, so it keeps the ordinary one; the dead row 1 passes R_out except
    # where descent (z - R_out) would push z further below 0, i.e. where R_out > 0
    want["redirect"] = torch.stack([r[0] * inside[0], r[1].masked_fill(r[1] > 0, 0.0)])
    for rule in RULES:
        zz = z.clone().requires_grad_(True)
        module = RuleRectifier(torch.nn.ReLU6() if upper else torch.nn.ReLU(), rule)
        y = module(zz)
        assert torch.equal(y, z.clamp(0, upper) if upper else z.clamp(min=0))
        (got,) = torch.autograd.grad(y, zz, r)
        assert torch.equal(got, want[rule]), rule


def test_swap_restores_the_modules_and_counts_them():
    net = _net()
    before = list(net)
    with rectifier_rules(net, "guided") as n:
        assert n == 2
        assert [type(m).__name__ for m in net] == ["Conv2d", "RuleRectifier", "Conv2d", "RuleRectifier"]
        assert net[3].upper == 6.0 and net[1].upper is None
    assert list(net) == before
    with pytest.raises(RuntimeError, match="boom"):
        with rectifier_rules(net, "deconv"):
            raise RuntimeError("boom")
    assert list(net) == before
    with pytest.raises(ValueError, match="gradient, deconv, guided, redirect"):
        with rectifier_rules(net, "nope"):
            pass


def test_one_lock_a_second_thread_waits_for_the_first_block():
    nets, events = (_net(), _net()), []

    def other():
        with rectifier_rules(nets[1], "deconv"):
            events.append("other in")

    with rectifier_rules(nets[0], "redirect"):
        t = threading.Thread(target=other)
        t.start()
        time.sleep(0.2)
        events.append("first out")
    t.join(5)
    assert events == ["first out", "other in"]


def test_a_tapped_rectifier_keeps_firing_while_its_rule_is_swapped_in():
    """A tap on an nn.ReLU fires on the stand-in, whether attached before or during the swap (a render
    of a rectified layer's channel used to fail with KeyError: redirection swapped the module away from its hook)."""
    import torch
    from torch import nn

    from neuronscope.gradient_overrides import rectifier_rules

    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 2, 1))
    seen = []
    before = net[1].register_forward_hook(lambda m, i, o: seen.append(("before", o.shape)))
    with rectifier_rules(net, "redirect"):
        during = net[1].register_forward_hook(lambda m, i, o: seen.append(("during", o.shape)))
        net(torch.rand(1, 3, 8, 8))
        during.remove()
    net(torch.rand(1, 3, 8, 8))
    before.remove()
    net(torch.rand(1, 3, 8, 8))
    assert [s[0] for s in seen] == ["before", "during", "before"]
    assert isinstance(net[1], nn.ReLU) and not net[1]._forward_hooks


def test_render_of_a_rectified_layer_channel_raises_it(lite0):
    from neuronscope.optim import objectives as O
    from neuronscope.optim import render

    res = render(lite0, [O.channel("blocks.4.dw_act", 0)], size=48, steps=12, progress=False)
    assert res.trace[-1, 0] > res.trace[0, 0]
