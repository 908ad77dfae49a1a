"""Backward views: each rule against a hand computation, ReLU6's upper bound, restoring the model."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from neuronscope import NeuronscopeError, load_model
from neuronscope.attribution import MODES, backward_view, rectifier_rules, render_view
from neuronscope.cli import main as cli_main


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: small passes run faster on one thread


class TinyNet(nn.Module):
    """conv1 (1x1, 3->2) -> ReLU6 -> conv2 (1x1, 2->1) -> ReLU, with weights chosen by hand.

    On the three pixels of X below, conv1's outputs z1 = (channel 0, channel 1) are
    p0: (3, 3)   both inside (0, 6): open
    p1: (8, -1)  channel 0 above 6 (ReLU6 saturated), channel 1 below 0: both closed
    p2: (4, 5)   both open
    and conv2's outputs z2 = a0 - 2 a1 are p0: 3 - 6 = -3, p1: 6 - 0 = 6, p2: 4 - 10 = -6.
    """

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 2, 1)
        self.act1 = nn.ReLU6()
        self.conv2 = nn.Conv2d(2, 1, 1, bias=False)
        self.act2 = nn.ReLU()
        with torch.no_grad():
            self.conv1.weight.copy_(torch.tensor([[4.0, 8.0, 0.0], [0.0, -4.0, 12.0]]).view(2, 3, 1, 1))
            self.conv1.bias.copy_(torch.tensor([0.0, 1.0]))
            self.conv2.weight.copy_(torch.tensor([[1.0, -2.0]]).view(1, 2, 1, 1))

    def forward(self, x):
        return self.act2(self.conv2(self.act1(self.conv1(x)))).mean((2, 3))


# Three pixels in a row: (B=1, 3, H=1, W=3).
X = torch.tensor([[0.25, 1.0, 0.0], [0.25, 0.5, 0.5], [0.25, 0.0, 0.5]]).view(1, 3, 1, 3)
W1_T = torch.tensor([[4.0, 0.0], [8.0, -4.0], [0.0, 12.0]])  # input gradient = W1^T @ R_at_conv1_output


def tiny():
    return load_model(TinyNet(), preprocess="none", input_size=3, name="tiny")


def pixels(g):
    """(1, 3, 1, 3) -> list of the three per-pixel RGB gradients."""
    return [g[0, :, 0, i].tolist() for i in range(3)]


def test_gradient_rule_matches_hand_computation_with_relu6_upper_bound():
    # Seed ones at conv2's output: R at act1's output is (1, -2) on every pixel.
    # gradient rule: R * [0 < z1 < 6]. p0 open -> W1^T (1,-2) = (4, 16, -24); p1 (z=8, z=-1) -> 0; p2 open.
    g = backward_view(tiny(), X, "conv2", 0, mode="gradient", seed="ones")
    assert pixels(g) == [[4.0, 16.0, -24.0], [0.0, 0.0, 0.0], [4.0, 16.0, -24.0]]


def test_deconv_rule_matches_hand_computation_and_ignores_forward_mask():
    # deconv rule: max(R, 0) = (1, 0) on every pixel, even p1 where z1 = 8 > 6 and -1 < 0.
    g = backward_view(tiny(), X, "conv2", 0, mode="deconv", seed="ones")
    assert pixels(g) == [[4.0, 8.0, 0.0], [4.0, 8.0, 0.0], [4.0, 8.0, 0.0]]


def test_guided_rule_matches_hand_computation_with_relu6_upper_bound():
    # guided: R * [0<z<6] * [R>0] = (1, 0) on p0 and p2; p1 is blocked (z1 = 8 above the ReLU6 bound).
    g = backward_view(tiny(), X, "conv2", 0, mode="guided", seed="ones")
    assert pixels(g) == [[4.0, 8.0, 0.0], [0.0, 0.0, 0.0], [4.0, 8.0, 0.0]]


def test_activation_seed_and_second_rectifier_follow_each_rule():
    # Seed = conv2's own activation (-3, 6, -6) -> R at act1's output = z2 * (1, -2):
    # p0 (-3, 6), p1 (6, -12), p2 (-6, 12).
    m = tiny()
    grad = backward_view(m, X, "conv2", 0, mode="gradient", seed="activation")
    # p0 open: 4*-3 = -12, 8*-3 + -4*6 = -48, 12*6 = 72; p1 blocked; p2: -24, -48-48 = -96, 144
    assert pixels(grad) == [[-12.0, -48.0, 72.0], [0.0, 0.0, 0.0], [-24.0, -96.0, 144.0]]
    deconv = backward_view(m, X, "conv2", 0, mode="deconv", seed="activation")
    # max(R,0): p0 (0, 6) -> (0, -24, 72); p1 (6, 0) -> (24, 48, 0); p2 (0, 12) -> (0, -48, 144)
    assert pixels(deconv) == [[0.0, -24.0, 72.0], [24.0, 48.0, 0.0], [0.0, -48.0, 144.0]]
    guided = backward_view(m, X, "conv2", 0, mode="guided", seed="activation")
    assert pixels(guided) == [[0.0, -24.0, 72.0], [0.0, 0.0, 0.0], [0.0, -48.0, 144.0]]
    # Through act2 (a ReLU, z2 > 0 only on p1) with seed ones: gradient/guided reach p1's
    # ReLU6, which is saturated there, so nothing arrives; deconv passes max(1,0) then (1, 0).
    assert not torch.any(backward_view(m, X, "act2", 0, mode="gradient", seed="ones"))
    assert not torch.any(backward_view(m, X, "act2", 0, mode="guided", seed="ones"))
    assert pixels(backward_view(m, X, "act2", 0, mode="deconv", seed="ones")) == [[4.0, 8.0, 0.0]] * 3


def test_position_selects_one_neuron():
    # (x=2, y=0) is p2 only: the gradient of z2 at p2 (seed ones) is W1^T (1,-2) there, zero elsewhere.
    g = backward_view(tiny(), X, "conv2", 0, mode="gradient", position=(2, 0), seed="ones")
    assert pixels(g) == [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [4.0, 16.0, -24.0]]


def test_modules_are_restored_after_each_mode():
    m = tiny()
    before = list(m.net.named_modules())
    for mode in MODES:
        backward_view(m, X, "conv2", 0, mode=mode)
    after = list(m.net.named_modules())
    assert [(n, id(mod)) for n, mod in before] == [(n, id(mod)) for n, mod in after]
    assert type(m.net.act1) is nn.ReLU6 and type(m.net.act2) is nn.ReLU


class _Explode(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, g):
        raise RuntimeError("backward exploded on purpose")


class ExplodingNet(TinyNet):
    def forward(self, x):
        return super().forward(_Explode.apply(x))


def test_modules_are_restored_when_the_backward_raises():
    m = load_model(ExplodingNet(), preprocess="none", input_size=3)
    act1, act2 = m.net.act1, m.net.act2
    with pytest.raises(RuntimeError, match="exploded"):
        backward_view(m, X, "conv2", 0, mode="guided")
    assert m.net.act1 is act1 and m.net.act2 is act2
    assert m.net._modules["act1"] is act1


def test_swap_counts_modules_and_warns_when_relu_is_functional():
    with rectifier_rules(tiny(), "guided") as n:
        assert n == 2

    class Functional(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 2, 1)

        def forward(self, x):
            return torch.relu(self.conv(x)).mean((2, 3))

    m = load_model(Functional(), preprocess="none", input_size=3)
    with pytest.warns(RuntimeWarning, match="no nn.ReLU"):
        backward_view(m, X, "conv", 0, mode="guided")


def test_gradient_mode_equals_autograd_on_lite0(lite0):
    torch.manual_seed(0)
    x = torch.rand(2, 3, 64, 64)
    ours = backward_view(lite0, x, "blocks.6", 3, mode="gradient", seed="ones")
    xr = x.clone().requires_grad_(True)
    from neuronscope.taps import tap

    with tap(lite0, ["blocks.6"], stop_early=True) as taps:
        taps.run(xr)
        taps["blocks.6"][:, 3].sum().backward()
    assert torch.allclose(ours, xr.grad, atol=1e-6, rtol=1e-5)
    assert ours.abs().sum() > 0
    # rows are independent: row 1 alone gives the same view as in the batch
    alone = backward_view(lite0, x[1:], "blocks.6", 3, mode="guided")
    both = backward_view(lite0, x, "blocks.6", 3, mode="guided")
    scale = both[1].abs().max()
    assert torch.allclose(alone[0], both[1], atol=1e-4 * scale)  # batch-size float noise only


def test_backward_view_works_inside_inference_mode_and_for_classes(lite0):
    x = torch.rand(1, 3, 64, 64)
    with torch.inference_mode():
        g = backward_view(lite0, x, "logits", lite0.class_index("espresso"), mode="guided", seed="ones")
    assert g.shape == x.shape and not g.requires_grad and g.abs().sum() > 0


def test_bad_units_positions_modes_and_targets_raise_clear_errors(lite0):
    x = torch.rand(1, 3, 64, 64)
    with pytest.raises(NeuronscopeError, match="channels 0..23"):
        backward_view(lite0, x, "blocks.1", 24)
    with pytest.raises(NeuronscopeError, match="outside"):
        backward_view(lite0, x, "blocks.1", 0, position=(40, 0))
    with pytest.raises(NeuronscopeError, match="valid: gradient, deconv, guided"):
        backward_view(lite0, x, "blocks.1", 0, mode="lrp")
    with pytest.raises(NeuronscopeError, match="no spatial map"):
        backward_view(lite0, x, "logits", 1, position=(0, 0))


def test_render_view_filters_give_images_in_unit_range():
    g = torch.randn(2, 3, 32, 32)
    g[1] *= 1000
    for f in ("raw", "gray", "norm", "normblur"):
        img = render_view(g, f)
        assert img.shape == g.shape and img.min() >= 0 and img.max() <= 1
        assert torch.allclose(img[0], render_view(g[:1], f)[0])  # per row
    zero = render_view(torch.zeros(1, 3, 8, 8), "raw")
    assert torch.allclose(zero, torch.full_like(zero, 0.5))


def test_backprop_cli_writes_sheet_and_rejects_bad_targets(sample_photos, tmp_path, capsys):
    out = tmp_path / "bp"
    code = cli_main(["backprop", "efficientnet_lite0", str(sample_photos["coffee"]), "class:espresso",
                     "--mode", "all", "--filter", "raw", "normblur", "--size", "96", "--out", str(out)])
    assert code == 0 and (out / "sheet.png").stat().st_size > 0
    import json

    from PIL import Image

    assert Image.open(out / "sheet.png").size[0] > 6 * 96  # input + 3 modes x 2 filters
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete" and len(manifest["views"]) == 6
    assert all(Image.open(out / v["file"]).size == (96, 96) for v in manifest["views"])
    assert cli_main(["backprop", "efficientnet_lite0", str(sample_photos["coffee"]), "blocks.4:5",
                     "--size", "96", "--out", str(out)]) == 2
    assert "already exists and is not empty" in " ".join(capsys.readouterr().err.split())
    assert cli_main(["backprop", "efficientnet_lite0", str(sample_photos["coffee"]), "blocks.4:999",
                     "--size", "96", "--out", str(tmp_path / "b")]) == 2
    assert "out of range" in capsys.readouterr().err
    assert cli_main(["backprop", "efficientnet_lite0", str(tmp_path / "missing.jpg"), "blocks.4:1",
                     "--out", str(tmp_path / "c")]) == 2
    assert "not found" in capsys.readouterr().err


def test_other_activations_are_left_unchanged_with_a_warning():
    class Mixed(TinyNet):
        def __init__(self):
            super().__init__()
            self.extra = nn.SiLU()

        def forward(self, x):
            return super().forward(self.extra(x))

    m = load_model(Mixed(), preprocess="none", input_size=3)
    with pytest.warns(RuntimeWarning, match="SiLU"):
        g = backward_view(m, X, "conv2", 0, mode="guided", seed="ones")
    assert type(m.net.extra) is nn.SiLU and g.abs().sum() > 0
