"""Fast input-gradient convolutions, the bf16 render copy, and the allocator setting used while rendering."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from neuronscope.errors import NeuronscopeError
from neuronscope.optim import objectives as O
from neuronscope.optim import render
from neuronscope.optim.engine import Engine
from neuronscope.optim.engine import heap as allocator
from neuronscope.optim.engine.fast_copy import fast_model, native_bf16, resolve_precision
from neuronscope.models.efficientnet_lite import same_pads
from neuronscope.optim.engine.fast_conv import FastConv2d

# (in, out, kernel, stride, groups, padding): pointwise, stem-like, depthwise 3x3/5x5 at stride 1/2,
# grouped, even kernels, stride 3, and strided 1x1 (phases without taps)
CONFIGS = [(16, 24, 1, 1, 1, (0, 0)), (3, 8, 3, 2, 1, "tf_same"), (8, 8, 3, 2, 8, "tf_same"),
           (8, 8, 5, 2, 8, "tf_same"), (8, 8, 3, 1, 8, "tf_same"), (6, 4, 5, 1, 2, (2, 2)),
           (6, 4, 3, 2, 1, (1, 1)), (4, 6, 4, 2, 1, (1, 0)), (4, 6, 2, 1, 1, "tf_same"),
           (4, 4, 3, 3, 4, "tf_same"), (4, 4, 1, 2, 1, (0, 0))]


@pytest.mark.parametrize("method", ["polyphase", "transposed"])
@pytest.mark.parametrize("cin,cout,k,s,groups,pad", CONFIGS)
def test_input_gradient_equals_autograd_in_float64(cin, cout, k, s, groups, pad, method):
    g = torch.Generator().manual_seed(k * 10 + s)
    w = torch.randn(cout, cin // groups, k, k, generator=g, dtype=torch.float64)
    b = torch.randn(cout, generator=g, dtype=torch.float64)
    conv = FastConv2d(w, b, s, pad, groups)
    conv.grad_method = method
    for h, wd in [(9, 7), (10, 10), (11, 8), (6, 5)]:
        for channels_last in (False, True):
            x = torch.randn(2, cin, h, wd, generator=g, dtype=torch.float64)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            x.requires_grad_(True)
            top, bottom, left, right = conv.pads_for(h, wd)
            ref = F.conv2d(F.pad(x, (left, right, top, bottom)), w, b, s, 0, 1, groups)
            y = conv(x)
            assert y.shape == ref.shape and torch.allclose(y, ref)
            go = torch.randn(ref.shape, generator=g, dtype=torch.float64)
            want = torch.autograd.grad(ref, x, go)[0]
            got = torch.autograd.grad(conv(x), x, go)[0]
            assert got.shape == x.shape
            assert (got - want).abs().max() < 1e-10, (h, wd, channels_last)
            if channels_last:
                assert got.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("act", ["relu", "relu6"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("rule", [None, "gradient", "deconv", "guided", "redirect"])
def test_fused_activation_equals_conv_then_activation(act, dtype, rule):
    """float64 runs the two-step path, float32 oneDNN's fused kernel: both give the values and the
    gradient (ordinary, or under a rule of gradient_overrides) of the separate convolution and ReLU/ReLU6."""
    from neuronscope.gradient_overrides import RuleRectifier

    g = torch.Generator().manual_seed(7)
    w = torch.randn(8, 1, 3, 3, generator=g, dtype=dtype).abs()  # positive, so a very negative row is dead
    b = torch.randn(8, generator=g, dtype=dtype)
    fused = FastConv2d(w, b, 2, "tf_same", 8, fused_activation=act)
    plain = FastConv2d(w, b, 2, "tf_same", 8)
    upper = 6.0 if act == "relu6" else None
    activation = torch.nn.ReLU6() if upper else torch.nn.ReLU()
    if rule is not None:
        activation = RuleRectifier(activation, rule)
    fused.grad_rule = rule
    x = (torch.randn(3, 8, 11, 10, generator=g, dtype=dtype) * 4).contiguous(memory_format=torch.channels_last)
    x[1] = -50.0  # a row whose activations are all zero: dead, so redirection has work to do
    x.requires_grad_(True)
    go = torch.randn(3, 8, 6, 5, generator=g, dtype=dtype)
    want_y = activation(plain(x))
    want = torch.autograd.grad(want_y, x, go)[0]
    got_y = fused(x)
    got = torch.autograd.grad(got_y, x, go)[0]
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    assert (got_y - want_y).abs().max() < tol * 10
    assert (got - want).abs().max() < tol * 10 * want.abs().max()
    # the dead row gets a gradient only when redirected, or from deconv's rule, which ignores the forward mask
    assert bool(want[1].abs().sum() > 0) == (rule in ("redirect", "deconv"))
    with torch.no_grad():
        assert (fused(x) - want_y).abs().max() < tol * 10
    from neuronscope.optim.engine.fast_conv import _ONEDNN_CONV_POINTWISE

    if dtype == torch.float32 and _ONEDNN_CONV_POINTWISE is not None:
        assert fused.onednn_fusion  # the fused kernel ran (it turns itself off on failure)
    with pytest.raises(ValueError, match="relu6"):
        FastConv2d(w, b, 1, (1, 1), 8, fused_activation="gelu")


def test_auto_method_depends_only_on_the_geometry():
    """Strided kernels up to 3x3 use the transposed convolution in float32; the rest polyphase."""
    w = torch.randn(8, 1, 3, 3)
    assert FastConv2d(w, None, 2, "tf_same", 8)._auto_method() == "transposed"
    assert FastConv2d(w, None, 1, "tf_same", 8)._auto_method() == "polyphase"
    assert FastConv2d(torch.randn(8, 1, 5, 5), None, 2, "tf_same", 8)._auto_method() == "polyphase"
    assert FastConv2d(torch.randn(4, 8, 1, 1), None, (1, 2), (0, 0), 1)._auto_method() == "transposed"
    assert FastConv2d(w, None, 2, "tf_same", 8)._auto_method(torch.bfloat16) == "polyphase"  # slow bf16 deconvolution


def test_same_pads_follow_tensorflow():
    assert same_pads(224, 3, 2) == (0, 1)  # even size, stride 2: all padding after
    assert same_pads(225, 3, 2) == (1, 1)
    assert same_pads(7, 5, 1) == (2, 2)


def test_the_fast_copy_runs_every_lite0_convolution_through_it(lite0):
    fast, info = fast_model(lite0, ["logits"])
    convs = [m for m in fast.net.modules() if isinstance(m, FastConv2d)]
    assert info.input_grad_convs == len(convs) == 49  # every convolution of Lite0 (all are folded)
    plain = [m for m in lite0.net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(plain) == 49 and not any(isinstance(m, FastConv2d) for m in lite0.net.modules())


def test_unfolded_plain_convolutions_are_swapped_and_hooked_ones_kept():
    from neuronscope.models import Model, ModelInfo

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(4, 5, 3, stride=2),
                              torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    handle = net[2].register_forward_hook(lambda m, i, o: None)
    model = Model(net, "none", ModelInfo("tiny", 16))
    fast, info = fast_model(model, [])
    assert isinstance(fast.net[0], FastConv2d) and not isinstance(fast.net[2], FastConv2d)
    assert info.input_grad_convs == 1
    handle.remove()
    x = torch.rand(2, 3, 17, 16, requires_grad=True)
    ref = torch.autograd.grad(model(x).sum(), x)[0]
    got = torch.autograd.grad(fast(x).sum(), x)[0]
    assert (got - ref).abs().max() < 1e-5


def test_bfloat16_copy_is_close_and_its_gradient_points_the_same_way(lite0):
    x = torch.rand(2, 3, 96, 96, generator=torch.Generator().manual_seed(1))
    f32, _ = fast_model(lite0, ["logits"], precision="float32")
    bf16, info = fast_model(lite0, ["logits"], precision="bfloat16")
    assert info.dtype == "bfloat16" and next(bf16.net.parameters()).dtype == torch.bfloat16
    assert next(lite0.net.parameters()).dtype == torch.float32  # the original is untouched
    grads, outs = [], []
    for net in (f32, bf16):
        xx = x.clone().requires_grad_(True)
        out = net(xx).float()
        out[:, [1, 9]].diagonal().sum().backward()
        grads.append(xx.grad)
        outs.append(out.detach())
    assert grads[1].dtype == torch.float32  # the gradient reaches the image in float32
    top = outs[0].abs().max()
    assert (outs[1] - outs[0]).abs().max() < 0.1 * top  # bf16 keeps ~3 significant digits per layer
    cos = F.cosine_similarity(grads[0].flatten(), grads[1].flatten(), dim=0)
    assert cos > 0.8, float(cos)


def test_bfloat16_render_raises_the_objective_and_reports_float32_values(lite0):
    res = render(lite0, [O.class_logit(1), O.channel("blocks.10", 3)], size=64, steps=24, progress=False,
                 engine=Engine(fast=True, precision="bfloat16"))
    assert res.meta["fast"]["dtype"] == "bfloat16"
    assert res.values.dtype == torch.float32
    assert (res.values > torch.as_tensor(res.trace[0]) + 1).all(), (res.values, res.trace[0])


def test_precision_choice_and_errors(lite0):
    assert resolve_precision("float32", "cpu") == torch.float32
    assert resolve_precision("bfloat16", "cpu") == torch.bfloat16
    assert resolve_precision("auto", "cpu") == (torch.bfloat16 if native_bf16("cpu") else torch.float32)
    with pytest.raises(NeuronscopeError, match="auto, float32, bfloat16"):
        render(lite0, [O.class_logit(1)], size=32, steps=1, progress=False, engine=Engine(fast=True, precision="half"))


# ---------------------------------------------------------------- ReLU redirection's backward

@pytest.mark.parametrize("upper", [None, 6.0])
@pytest.mark.parametrize("channels_last", [False, True])
def test_redirected_backward_matches_its_definition(upper, channels_last):
    from neuronscope.gradient_overrides import rectify

    g = torch.Generator().manual_seed(3)
    z = torch.randn(4, 5, 6, 6, generator=g) * 4
    z[1] = -1.0  # a row entirely below zero: dead, so its gradient is redirected
    z[3] = 8.0 if upper else -2.0  # above ReLU6's top (or below zero again)
    go = torch.randn(4, 5, 6, 6, generator=g)
    inside = z > 0 if upper is None else (z > 0) & (z < upper)
    masked = go * inside
    dead = masked.flatten(1).abs().sum(1) == 0
    outward = (z <= 0) & (go > 0)
    if upper is not None:
        outward |= (z >= upper) & (go < 0)
    want = torch.where(dead.view(-1, 1, 1, 1), go.masked_fill(outward, 0.0), masked)
    zz = (z.contiguous(memory_format=torch.channels_last) if channels_last else z.clone()).requires_grad_(True)
    got = torch.autograd.grad(rectify(zz, "redirect", upper), zz, go)[0]
    assert dead[1] and torch.equal(got, want)


# ---------------------------------------------------------------- allocator

def test_roomy_heap_nests_and_restores(monkeypatch):
    calls = []

    class FakeLibc:
        def mallopt(self, key, value):
            calls.append((key, value))
            return 1

        def malloc_trim(self, pad):
            calls.append(("trim", pad))
            return 1

    monkeypatch.setattr(allocator, "_libc", FakeLibc())
    monkeypatch.delenv("NEURONSCOPE_MALLOC_TUNING", raising=False)
    for key in [k for k in __import__("os").environ if k.startswith(("MALLOC_", "GLIBC_TUNABLES"))]:
        monkeypatch.delenv(key)
    with allocator.roomy_heap() as on:
        assert on
        with allocator.roomy_heap():
            pass
        assert ("trim", 0) not in calls  # the inner block does not undo the outer one
    assert calls[:4] == [(allocator.M_MMAP_THRESHOLD, 32 << 20), (allocator.M_MMAP_MAX, 0),
                         (allocator.M_TRIM_THRESHOLD, 2**31 - 1), (allocator.M_TOP_PAD, 256 << 20)]
    # every setting goes back to glibc's start-up value, the mmap threshold too
    assert calls[4:] == [(allocator.M_MMAP_THRESHOLD, 128 << 10), (allocator.M_MMAP_MAX, 65536),
                         (allocator.M_TRIM_THRESHOLD, 128 << 10), (allocator.M_TOP_PAD, 128 << 10), ("trim", 0)]
    calls.clear()
    monkeypatch.setenv("NEURONSCOPE_MALLOC_TUNING", "0")
    with allocator.roomy_heap() as on:
        assert not on
    assert calls == []
