"""The render-time fast copy (neuronscope.optim.engine.fast_copy): same function, same addresses, original untouched."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from neuronscope.models import Model, ModelInfo
from neuronscope.optim import objectives as O
from neuronscope.optim import render
from neuronscope.optim.engine import Engine
from neuronscope.optim.engine.fast_copy import build_fast_model, conv_bn_pairs, fast_model
from neuronscope.taps import module_names, parse_address, tap

F32 = Engine(fast=True, precision="float32")

TAPS = ["stem", "blocks.1.expand_act", "blocks.5.dw_bn", "blocks.10", "head", "logits"]


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


def _values_and_grad(model: Model, x: torch.Tensor, layers=TAPS):
    """Tapped values and the input gradient of a mixed objective (a logit plus a channel)."""
    x = x.clone().requires_grad_(True)
    with tap(model, layers) as taps:
        taps.run(x)
        values = {name: taps[name] for name in layers}
    (values["logits"][:, 9].sum() + values["blocks.10"][:, 3].mean()).backward()
    return {k: v.detach() for k, v in values.items()}, x.grad


@pytest.fixture(scope="module")
def x():
    # odd, unequal sides exercise the asymmetric TF 'SAME' padding of stride-2 convolutions
    return torch.rand(2, 3, 67, 53, generator=torch.Generator().manual_seed(0))


def test_folding_is_exact_algebra_in_float64(lite0, x):
    original = copy.deepcopy(lite0).double()
    fast, info = build_fast_model(lite0, keep=[parse_address(a).path for a in TAPS])
    assert len(info.folded) == 49 and info.channels_last and not info.reason
    # the tapped pre-activation BatchNorm keeps its ReLU6 apart; the other 32 activations are fused
    assert len(info.fused_activations) == 32 and "blocks.5.dw_act" not in info.fused_activations
    small = x[:1, :, :41, :37].double()  # float64 convolutions are slow on CPU
    ref, gref = _values_and_grad(original, small)
    got, g = _values_and_grad(fast.double(), small)
    # the folded weights are stored in float32, so ~1e-7 of rounding remains
    for name in TAPS:
        assert _rel(got[name], ref[name]) < 1e-6, name
    assert _rel(g, gref) < 1e-6


def test_float32_copy_matches_values_and_its_gradient_is_no_less_accurate(lite0, x):
    """Values agree to 1e-4; gradients are compared with the exact (float64) gradient.

    The float32 original's own input gradient is ~1e-3 away from the float64 one
    (eval BatchNorm rounding is amplified through 16 blocks), so the fair check is
    that the fast copy's gradient is at least as close to the exact one.
    """
    ref, g32 = _values_and_grad(lite0, x)
    _, g64 = _values_and_grad(copy.deepcopy(lite0).double(), x.double())
    got, g = _values_and_grad(fast_model(lite0, TAPS)[0], x)
    for name in TAPS:
        assert _rel(got[name], ref[name]) < 1e-4, name
    assert _rel(g, g64) <= max(_rel(g32, g64), 1e-4) * 1.5
    assert _rel(g, g32) < 1e-2


def test_every_address_resolves_and_a_tapped_conv_keeps_its_batchnorm(lite0, x):
    fast, info = fast_model(lite0, ["blocks.3.expand_conv", "blocks.4.expand_bn"])
    assert module_names(fast) == module_names(lite0)
    assert info.kept == ["blocks.3.expand_conv"] and len(info.folded) == 48
    # a tapped pre-activation output keeps its activation apart; untapped pairs are fused
    fused = set(info.fused_activations)
    assert not fused & {"blocks.3.expand_act", "blocks.4.expand_act"} and "blocks.5.expand_act" in fused
    assert isinstance(fast.net.blocks[3].expand_bn, nn.BatchNorm2d)
    assert isinstance(fast.net.blocks[4].expand_bn, nn.Identity)
    layers = ["blocks.3.expand_conv", "blocks.4.expand_conv", "blocks.4.expand_bn"]
    ref, _ = _values_and_grad(lite0, x, layers + ["logits", "blocks.10"])
    got, _ = _values_and_grad(fast, x, layers + ["logits", "blocks.10"])
    assert _rel(got["blocks.3.expand_conv"], ref["blocks.3.expand_conv"]) < 1e-5  # the raw conv output
    assert _rel(got["blocks.4.expand_bn"], ref["blocks.4.expand_bn"]) < 1e-5  # BN output, now the folded conv's
    assert _rel(got["blocks.4.expand_conv"], ref["blocks.4.expand_bn"]) < 1e-5  # untapped: folded


def test_the_original_model_is_untouched(lite0):
    before = {k: (v.clone(), v.is_contiguous()) for k, v in lite0.state_dict().items()}
    fast_model(lite0, [])
    build_fast_model(lite0)
    for k, v in lite0.state_dict().items():
        assert torch.equal(v, before[k][0]) and v.is_contiguous() == before[k][1], k
    assert all(type(m).__name__ != "Identity" for m in lite0.net.modules())
    assert all(not p.requires_grad for p in lite0.parameters())


def test_the_cached_copy_follows_in_place_weight_edits(lite0):
    a, _ = fast_model(lite0, ["logits"])
    assert fast_model(lite0, ["blocks.4", "logits"])[0] is a  # no tapped conv: the same copy
    x = torch.rand(1, 3, 48, 48, generator=torch.Generator().manual_seed(1))
    w = lite0.net.blocks[6].project_conv.weight
    saved = w.detach().clone()
    try:
        with torch.no_grad():
            w[5].zero_()  # ablate one output channel of block 6
        b, _ = fast_model(lite0, ["logits"])
        assert b is not a
        with torch.no_grad():
            ref, got = lite0(x), b(x)
        assert _rel(got, ref) < 1e-4
    finally:
        with torch.no_grad():
            w.copy_(saved)


def test_a_user_hook_keeps_its_module_unfolded(lite0, x):
    bn = lite0.net.blocks[2].dw_bn
    handle = bn.register_forward_hook(lambda m, args, out: out * 0.5)
    try:
        fast, info = fast_model(lite0, [])
        assert "blocks.2.dw_conv" in info.kept and isinstance(fast.net.blocks[2].dw_bn, nn.BatchNorm2d)
        with torch.no_grad():
            assert _rel(fast(x), lite0(x)) < 1e-4
    finally:
        handle.remove()


class _Branchy(nn.Module):
    """conv1 -> bn1 (foldable); conv2 feeds bn2 *and* a skip (not foldable); plain nn.Conv2d with a bias."""

    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 8, 3, padding=1, bias=True), nn.BatchNorm2d(8)
        self.conv2, self.bn2 = nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        z = self.conv2(y)
        z = self.bn2(z) + z
        return self.fc(z.mean((2, 3)))


class _Untraceable(_Branchy):
    def forward(self, x):
        if x.sum() > 0:  # data-dependent control flow: torch.fx cannot trace it
            x = x * 1.0
        return super().forward(x)


def _tiny(net_cls) -> Model:
    torch.manual_seed(0)
    net = net_cls()
    for bn in (net.bn1, net.bn2):  # non-trivial statistics
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        nn.init.uniform_(bn.weight, 0.5, 1.5)
        nn.init.uniform_(bn.bias, -0.5, 0.5)
    return Model(net, "none", ModelInfo("tiny", 32))


def test_only_a_conv_read_by_its_batchnorm_alone_is_folded():
    model = _tiny(_Branchy)
    assert conv_bn_pairs(model.net)[0] == [("conv1", "bn1")]
    fast, info = build_fast_model(model)
    assert info.folded == ["conv1"] and isinstance(fast.net.bn1, nn.Identity)
    assert isinstance(fast.net.bn2, nn.BatchNorm2d)
    x = torch.rand(3, 3, 17, 15)
    with torch.no_grad():
        assert _rel(fast(x), model(x)) < 1e-5


def test_an_untraceable_network_is_used_unfolded_with_a_reason():
    model = _tiny(_Untraceable)
    fast, info = build_fast_model(model)
    assert info.folded == [] and "torch.fx" in info.reason
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        assert _rel(fast(x), model(x)) < 1e-6


def test_render_through_the_fast_copy_matches_the_plain_render(lite0):
    """The first step sees the same values, and along a whole render the copy computes the same thing.

    Adam's first updates are sign-like, so any float rounding difference (even a
    different thread count, or which input-gradient method a layer's timing chose)
    makes two renders drift apart: comparing their end points is a coin toss. The
    check is deterministic instead: on every snapshot of the plain render's
    trajectory, the fast copy gives the same objective and the same image gradient.
    """
    objs = [O.class_logit(1), O.channel("blocks.10", 3)]
    kw = dict(size=48, preset="lucid", progress=False)
    one_plain, one_fast = render(lite0, objs, steps=1, engine="plain", **kw), render(lite0, objs, steps=1, engine=F32, **kw)
    assert one_fast.meta["fast"]["folded"] == 49 and one_plain.meta["fast"] is None
    assert _rel(torch.as_tensor(one_fast.trace), torch.as_tensor(one_plain.trace)) < 1e-5
    plain = render(lite0, objs, steps=20, engine="plain", thresholds=(0, 6, 12, 19), **kw)
    quick = render(lite0, objs, steps=20, engine=F32, **kw)
    for r in (plain, quick):
        assert (r.values > torch.as_tensor(r.trace[0]) + 1).all()
    objective = O.Objective.sum(o.on(i) for i, o in enumerate(objs))
    layers = [n for n in objective.layers if n != "input"]
    copy_, _ = fast_model(lite0, layers)
    for step, image in plain.snapshots.items():
        grads = []
        for model in (lite0, copy_):
            x = image.clone().requires_grad_(True)
            with tap(model, layers) as taps:
                taps.run(x)
                values = objective(taps.values, x)
            values.sum().backward()
            grads.append((values.detach(), x.grad))
        (v_plain, g_plain), (v_fast, g_fast) = grads
        assert _rel(v_fast, v_plain) < 1e-5, step
        assert _rel(g_fast, g_plain) < 1e-4, step  # measured ~1e-6


def test_render_hooks_and_relu_swaps_happen_on_the_copy_and_are_undone(lite0):
    copy_, _ = fast_model(lite0, ["blocks.4", "logits"])
    seen = {}

    def cb(step, images, values):
        seen[step] = ({n for n, m in copy_.net.named_modules() if m._forward_hooks},
                      sum(bool(type(m).__name__ == "RuleRectifier" or getattr(m, "grad_rule", None))
                          for m in copy_.net.modules()))

    render(lite0, O.channel("blocks.4", 0) + O.class_logit(3), size=48, steps=2, preset="lucid", callback=cb,
           progress=False, engine=F32)
    assert seen[0][0] == {"blocks.4"} and seen[0][1] > 10
    for m in (*lite0.modules(), *copy_.modules()):
        assert not (m._forward_hooks or m._forward_pre_hooks)
        assert type(m).__name__ != "RuleRectifier" and not getattr(m, "grad_rule", None)


def test_automatic_choice_uses_the_copy_only_for_real_work_on_cpu(lite0):
    from neuronscope.optim.engine.fast_copy import use_fast

    assert not use_fast("cpu", 1, 48, 2)  # a test-sized render: building the copy would cost more than it saves
    assert use_fast("cpu", 8, 224, 128) and use_fast("cpu", 1, 128, 512)
    assert not use_fast("cuda", 8, 224, 128)  # only measured on CPU
    small = render(lite0, [O.class_logit(1)], size=32, steps=1, progress=False)
    assert small.meta["fast"] is None
