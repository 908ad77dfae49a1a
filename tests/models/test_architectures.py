"""ResNet, ViT, ConvNeXt and a dict-output net through every entry point.

The networks are the tiny random ones of tests/nets.py (32 px, 10 classes).
Each test checks what the architecture changes: token grids as maps, the
class token by name, channels-last layers permuted back, dict outputs, and the
gradient rules' warnings for GELU.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from neuronscope import NeuronscopeError, activations, describe_layers, load_model
from neuronscope.cli import main
from neuronscope.optim import objectives as O
from neuronscope.optim.render import evaluate, render as render_images

from tests import nets

pytestmark = pytest.mark.usefixtures("one_thread")
NAMES = list(nets.FACTORIES)


@pytest.fixture(scope="module")
def models():
    return {k: f() for k, f in nets.FACTORIES.items()}


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    """Eight 48 px images: noise with one bright square each, at different places."""
    d = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(0)
    for i in range(8):
        a = (rng.random((48, 48, 3)) * 120).astype(np.uint8)
        y, x = (i * 5) % 36, (i * 11) % 36
        a[y:y + 12, x:x + 12] = (250, 240 - 20 * i, 30 * i)
        Image.fromarray(a).save(d / f"img{i}.png")
    return d


# ---------------------------------------------------------------- layers and layouts

def test_layer_listings_show_maps_for_tokens_and_channels_last(models):
    vit = {r.name: r for r in describe_layers(models["vit"])}
    assert vit["blocks.0"].shape == (32, 8, 8) and "1+8x8 tokens" in vit["blocks.0"].kind
    assert vit["blocks.0[cls]"].shape == (32,)
    assert vit["blocks.0.mlp.fc1"].shape == (64, 8, 8) and vit["blocks.0.mlp.fc1"].channels == 64
    cnx = {r.name: r for r in describe_layers(models["convnext"])}
    for name, c in [("stages.0.0.norm", 16), ("stages.0.0.pwconv1", 64), ("stages.0.0.act", 64)]:
        assert cnx[name].shape == (c, 8, 8) and "channels-last" in cnx[name].kind, cnx[name]
    assert cnx["stages.0.0.dwconv"].shape == (16, 8, 8) and "channels-last" not in cnx["stages.0.0.dwconv"].kind
    res = {r.name: r for r in describe_layers(models["resnet"])}
    assert res["layer1"].shape == (32, 16, 16) and res["layer2.0.relu"].channels == 64
    dn = {r.name: r for r in describe_layers(models["dict_net"])}
    assert dn["heads[logits]"].shape == (10,) and dn["heads[embedding]"].shape == (8,)


def test_token_maps_are_the_patch_tokens_in_raster_order_and_cls_is_token_0(models):
    vit = models["vit"]
    x = torch.rand(2, 3, 32, 32)
    a = activations(vit, x, ["blocks.1", "blocks.1[cls]", "blocks.1[tokens]"])
    raw = a["blocks.1[tokens]"]
    assert raw.shape == (2, 65, 32)
    assert torch.equal(a["blocks.1[cls]"], raw[:, 0])
    # token 1 + 8*y + x is the patch at column x, row y
    assert torch.equal(a["blocks.1"][:, :, 2, 5], raw[:, 1 + 8 * 2 + 5])
    # channel = the mean over patch tokens only (the class token is not in it)
    res = evaluate(vit, O.channel("blocks.1", 3), x)
    assert torch.allclose(res, raw[:, 1:, 3].mean(1), atol=1e-5)
    assert not torch.allclose(res, raw[:, :, 3].mean(1), atol=1e-5)
    # neuron at (x, y) is one patch token; the class token by its address
    assert torch.allclose(evaluate(vit, O.neuron("blocks.1", 3, 5, 2), x), raw[:, 1 + 8 * 2 + 5, 3])
    assert torch.allclose(evaluate(vit, O.channel("blocks.1[cls]", 3), x), raw[:, 0, 3])
    with pytest.raises(NeuronscopeError, match=r"no token named \[dist\].*\[cls\], \[tokens\]"):
        activations(vit, x, ["blocks.1[dist]"])


def test_channels_last_layers_are_permuted_back(models):
    cnx = models["convnext"]
    x = torch.rand(1, 3, 32, 32)
    raw = {}
    h = cnx.net.stages[0][0].pwconv1.register_forward_hook(lambda m, a, out: raw.setdefault("o", out))
    try:
        a = activations(cnx, x, ["stages.0.0.pwconv1"])["stages.0.0.pwconv1"]
    finally:
        h.remove()
    assert raw["o"].shape == (1, 8, 8, 64) and torch.equal(a, raw["o"].permute(0, 3, 1, 2))


def test_declared_layouts_override_inference_and_bad_ones_are_refused():
    torch.manual_seed(0)
    net = nets.TinyViT()
    # two prefix tokens cannot be inferred: declared, the grid is still 8x8 after 'cls' and 'reg'
    net.pos_embed = torch.nn.Parameter(torch.zeros(1, 66, 32))
    net.reg = torch.nn.Parameter(torch.zeros(1, 1, 32))
    orig = net.forward

    def forward(x):
        t = net.patch_embed(x).flatten(2).transpose(1, 2)
        t = torch.cat([net.cls_token.expand(len(t), -1, -1), net.reg.expand(len(t), -1, -1), t], 1) + net.pos_embed
        return net.head(net.norm(net.blocks(t))[:, 0])

    net.forward = forward
    undeclared = load_model(net, preprocess="imagenet", input_size=32, device="cpu")
    assert next(r for r in describe_layers(undeclared) if r.name == "blocks.0").shape == (66, 32)  # left raw
    m = load_model(net, preprocess="imagenet", input_size=32, device="cpu", prefix_tokens=("cls", "reg"),
                   layouts={"head": "raw"})
    rows = {r.name: r for r in describe_layers(m)}
    assert rows["blocks.0"].shape == (32, 8, 8) and rows["blocks.0[reg]"].shape == (32,)
    wide = load_model(net, preprocess="imagenet", input_size=32, device="cpu", prefix_tokens=2, token_grid=(4, 16))
    assert next(r for r in describe_layers(wide) if r.name == "blocks.0").shape == (32, 4, 16)
    for kw, msg in [(dict(token_grid=(0, 3)), "positive"), (dict(prefix_tokens=-1), ">= 0"),
                    (dict(layouts={"blocks.*": "sideways"}), "unknown layout"),
                    (dict(layouts={"blokcs.*": "raw"}), "matches no layer")]:
        with pytest.raises(NeuronscopeError, match=msg):
            load_model(net, preprocess="imagenet", input_size=32, device="cpu", **kw)
    bad = load_model(net, preprocess="imagenet", input_size=32, device="cpu", prefix_tokens=1, token_grid=(3, 3))
    with pytest.raises(NeuronscopeError, match="66 tokens are not 1 prefix"):
        describe_layers(bad)
    net.forward = orig


# ---------------------------------------------------------------- render, backprop, invert, facets

@pytest.mark.parametrize("name", NAMES)
def test_render_raises_a_mid_layer_channel(models, name):
    model, layer = models[name], nets.MID_LAYER[name]
    objs = [O.channel(layer, 0), O.channel(layer, 1)]
    res = render_images(model, objs, size=32, steps=12, progress=False)
    assert res.images.shape == (2, 3, 32, 32)
    start, end = res.trace[:3].mean(0), res.trace[-3:].mean(0)  # the objective per row, under the transforms
    assert (end > start + 1e-3).all(), (name, start, end)
    # the returned images are scored without transforms, as evaluate() scores them
    assert torch.allclose(evaluate(model, O.channel(layer, 1), res.images[1:]), res.values[1:], rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("name", NAMES)
def test_backprop_modes_and_what_they_do_with_gelu(models, name):
    from neuronscope.attribution import backward_view

    model, layer = models[name], nets.MID_LAYER[name]
    x = torch.rand(1, 3, 32, 32)
    views = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for mode in ("gradient", "deconv", "guided"):
            views[mode] = backward_view(model, x, layer, 1, mode=mode, position=(1, 1))
    msgs = [str(w.message) for w in caught]
    for mode, g in views.items():
        assert g.shape == x.shape and g.abs().sum() > 0, (name, mode)
    if name in ("vit", "convnext"):
        # GELU keeps its gradient: said once per rule, with the modules named
        gelu = [m for m in msgs if "GELU" in m]
        assert len(gelu) == 3 and all("ReLU/ReLU6 only" in m for m in gelu)
        assert ("blocks.0.mlp.act" if name == "vit" else "stages.0.0.act") in gelu[0]
        assert any("no nn.ReLU/nn.ReLU6 module" in m for m in msgs)
    else:
        assert not [m for m in msgs if "GELU" in m or "no nn.ReLU" in m], msgs
        # with ReLUs swapped, deconv differs from the plain gradient
        assert not torch.allclose(views["deconv"], views["gradient"])


def test_relu_redirection_names_the_gelu_modules_it_leaves(models):
    from neuronscope.gradient_overrides import rectifier_rules

    with pytest.warns(RuntimeWarning, match=r"2 GELU module\(s\) keep their ordinary gradient \(blocks.0.mlp.act, blocks.1.mlp.act\)"):
        with rectifier_rules(models["vit"].net, "redirect"):
            pass


def test_token_neuron_backprop_is_about_its_patch_for_the_patch_embedding(models):
    from neuronscope.attribution import backward_view

    g = backward_view(models["vit"], torch.rand(1, 3, 32, 32), "patch_embed", 0, mode="gradient", position=(5, 2))
    support = g.abs().sum(1)[0] > 0
    ys, xs = torch.nonzero(support, as_tuple=True)
    assert (int(xs.min()), int(xs.max()), int(ys.min()), int(ys.max())) == (20, 23, 8, 11)


@pytest.mark.parametrize("name", NAMES)
def test_invert_lowers_the_feature_loss(models, name):
    from neuronscope.inversion import invert

    model, layer = models[name], nets.MID_LAYER[name]
    torch.manual_seed(0)
    target = torch.rand(3, 32, 32)
    res = invert(model, target, [layer], steps=15, progress=False)
    assert res.images.shape == (1, 3, 32, 32)

    def error(img):
        a = activations(model, torch.stack([target, img]), [layer])[layer]
        return float(((a[1] - a[0]) ** 2).sum() / (a[0] ** 2).sum())

    # the reconstruction matches the target's features better than an unrelated image does
    assert error(res.images[0]) < error(torch.rand(3, 32, 32)), name
    assert abs(res.feature_error[0] - error(res.images[0])) < 0.05 + 0.2 * error(res.images[0])


@pytest.mark.parametrize("name", ["vit", "convnext"])
def test_diverse_facets_without_data(models, name):
    from neuronscope.facets import diverse_facets, parse_unit

    model = models[name]
    unit = parse_unit(model, f"{nets.MID_LAYER[name]}:2")
    res = diverse_facets(model, unit, k=2, size=32, steps=8, progress=False)
    assert len(res.facets) + len(res.duplicates) == 2


# ---------------------------------------------------------------- top-k, dissection, viewer, atlas

def test_topk_max_patches_of_tokens_are_their_patch(models, image_folder, tmp_path):
    from neuronscope.data.scan import run_topk

    run = run_topk(models["vit"], image_folder, ["blocks.0", "blocks.0[cls]"], k=3, store=tmp_path / "s",
                   size=32, batch_size=4, progress=False)
    store = run.store
    rf = store.receptive_field("blocks.0")
    assert (rf.map_h, rf.map_w, rf.size) == (8, 8, (4, 4))
    e = store.entries("blocks.0", 0)[0]
    assert rf.unit_box(e.x, e.y) == (4 * e.x, 4 * e.y, 4 * e.x + 4, 4 * e.y + 4)
    assert np.asarray(store.max_patch("blocks.0", 0, 0)).shape[:2] == (4, 4)
    assert not store.receptive_field("blocks.0[cls]").spatial
    store.close()


def test_dissection_upsamples_the_token_grid(models, tmp_path):
    from neuronscope.dissect import dissect, load_dataset
    from neuronscope.dissect.synthetic import make_shapes_dataset

    data = load_dataset(make_shapes_dataset(tmp_path / "shapes", n=6, size=32))
    out = dissect(models["vit"], data, ["blocks.0"], size=32, label_size=16, batch_size=3, top=2, progress=False)
    d = out["blocks.0"]
    assert d.map_size == (8, 8) and d.iou.shape[0] == 32


def test_viewer_compute_draws_the_token_grid(models):
    from neuronscope.viewer.compute import FrameProcessor, ViewState, viewable_layers

    vit = models["vit"]
    names = [l.name for l in viewable_layers(vit)]
    assert "blocks.0" in names
    fp = FrameProcessor(vit, backward_view=None)
    frame = fp.make_frame(0, Image.new("RGB", (40, 40), (200, 30, 30)), "crop")
    result = fp.process(frame, ViewState(layer="blocks.0", unit=3))
    assert result.header["shape"] == [32, 8, 8]
    grid = result.header["grid"]
    assert grid["channels"] == 32 and grid["tile_h"] % 8 == 0 and grid["tile_w"] == grid["tile_h"]  # whole 8x8 grids
    assert {b[0] for b in result.blobs} >= {"grid", "input", "unit"}
    assert result.header["unit"]["index"] == 3


@pytest.mark.parametrize("name", ["vit", "convnext"])
def test_atlas_renders_token_and_channels_last_units(models, name, tmp_path):
    from neuronscope.atlas import AtlasSettings, build_atlas

    layer = {"vit": "blocks.1.mlp.act", "convnext": "stages.0.0.act"}[name]
    summary = build_atlas(models[name], [f"{layer}:0-1"], tmp_path / "site",
                          settings=AtlasSettings(size=32, steps=3, batch=2), progress=False)
    assert (tmp_path / "site" / "index.html").exists()
    assert (summary.asked, summary.rendered) == (2, 2) and summary.layers == [layer]


# ---------------------------------------------------------------- the CLI, package.module:factory

@pytest.mark.parametrize("name", NAMES)
def test_cli_layers_and_render(name, tmp_path, capsys):
    spec = f"tests.nets:{name}"
    assert main(["layers", spec, "--size", "32"]) == 0
    listing = capsys.readouterr().out
    assert nets.MID_LAYER[name] in listing
    out = tmp_path / "r"
    assert main(["render", spec, f"{nets.MID_LAYER[name]}:0", "--size", "32", "--steps", "4", "--quiet",
                 "--out", str(out)]) == 0
    assert list(out.glob("*.png"))


def test_cli_backprop_topk_and_atlas_on_the_vit(image_folder, tmp_path, capsys):
    img = next(image_folder.glob("*.png"))
    assert main(["backprop", "tests.nets:vit", str(img), "blocks.1:3@2,2", "--mode", "guided",
                 "--out", str(tmp_path / "bp")]) == 0
    assert list((tmp_path / "bp").glob("*.png"))
    assert main(["backprop", "tests.nets:vit", str(img), "blocks.1[cls]:3", "--mode", "gradient",
                 "--out", str(tmp_path / "bp2")]) == 0
    assert main(["topk", "tests.nets:vit", "--images", str(image_folder), "--layers", "blocks.1",
                 "--k", "2", "--units", "0-1", "--quiet", "--out", str(tmp_path / "tk")]) == 0
    assert main(["atlas", "tests.nets:convnext", "--layers", "stages.0.0.pwconv1:0", "--size", "32",
                 "--steps", "2", "--batch", "2", "--quiet", "--out", str(tmp_path / "at")]) == 0
    assert main(["render", "tests.nets:vit", "blocks.1[dist]:0", "--size", "32", "--out", str(tmp_path / "x")]) == 2
    assert "no token named [dist]" in capsys.readouterr().err
