"""ResNet, ViT, ConvNeXt and a dict-output net through every entry point.

The networks are the tiny random ones of tests/nets.py (32 px, 10 classes).
Every net goes through layers, render, backprop, invert, topk, facets (real
photos: clusters rendered from their mean images; and diversity mode),
dissection, serve (the toolbox app) and atlas, from Python and from the CLI.
Each test checks what the architecture changes: token grids as maps, the class
token by name, channels-last layers permuted back, dict outputs, the gradient
rules' warnings for GELU, forward-mode class attribution through attention;
and where a verb cannot do something (dissecting a vector, classes of one
element of an output), the message that says so.
"""

from __future__ import annotations

import re
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
def photo_folder(photos_dir, tmp_path_factory):
    """Eight of the offline photos (every 60th by file name), shrunk to 64 px: the nets see 32."""
    from neuronscope.data.photoset import list_photos

    d = tmp_path_factory.mktemp("photos")
    for p in sorted(e["path"] for e in list_photos(photos_dir))[::60][:8]:
        img = Image.open(p).convert("RGB")
        img.thumbnail((64, 64))
        img.save(d / (p.rsplit("/", 1)[1].rsplit(".", 1)[0] + ".png"))
    return d


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


@pytest.mark.parametrize("name", NAMES)
def test_diverse_facets_without_data(models, name):
    from neuronscope.facets import diverse_facets, parse_unit

    model = models[name]
    unit = parse_unit(model, f"{nets.MID_LAYER[name]}:2")
    res = diverse_facets(model, unit, k=2, size=32, steps=8, progress=False)
    assert res.mode == "diversity" and len(res.facets) + len(res.duplicates) == 2


#: the ViT's classifier reads the class token of ``norm`` (x[:, 0]), which no module outputs by itself: its
#: embedding for the clustering and the facet anchor is that token, given by address
EMBED_LAYER: dict[str, str] = {}  # every test net's embedding is found without --embed-layer


def most_predicted_class(model, folder) -> int:
    from neuronscope.images import list_images, load_batch

    with torch.no_grad():
        top1 = model(load_batch(list_images(folder), model.input_size)).argmax(1)
    return int(torch.bincount(top1).argmax())


@pytest.mark.parametrize("name", NAMES)
def test_facets_of_real_photos_are_clusters_rendered_from_their_mean_images(models, name, photo_folder):
    import torch.nn.functional as F

    from neuronscope.facets import multifaceted, parse_unit

    model = models[name]
    k = most_predicted_class(model, photo_folder)
    for target in (f"{nets.MID_LAYER[name]}:1", f"class:{k}"):
        unit = parse_unit(model, target)
        res = multifaceted(model, unit, photo_folder, k=2, views=4, reduce="pca", iter_scale=0.02, preset_steps=2,
                           embed_layer=EMBED_LAYER.get(name), progress=False)
        facets = res.facets + res.duplicates
        assert res.mode == "data" and res.meta["schedule"] == "mean" and len(facets) == 2, (name, target)
        assert sum(f.size for f in facets) == len(res.examples) >= 4 and res.meta["anchor_layer"] is not None
        means = torch.stack([f.mean_image for f in facets])
        assert means.shape == (2, 3, 32, 32)
        for i, f in enumerate(facets):
            assert f.image is not None and f.preset_image is not None and np.isfinite(f.value)
            # each render started from its own cluster's mean image (a few MFV steps move it little)
            img = F.interpolate(f.image[None], size=(32, 32), mode="bilinear", align_corners=False, antialias=True)[0]
            own, other = (img - means[i]).abs().mean(), (img - means[1 - i]).abs().mean()
            assert own < other, (name, target, float(own), float(other))


def test_facets_find_a_vits_class_token_as_its_embedding_and_say_when_nothing_feeds_the_head(models):
    from neuronscope.facets.embed import embed_address

    # the head reads x[:, 0] of norm: the class token of the final norm is the embedding
    assert embed_address(models["vit"]) == "norm[cls]"

    class Detached(torch.nn.Module):  # the head's input is computed outside any module
        def __init__(self):
            super().__init__()
            self.conv, self.head = torch.nn.Conv2d(3, 4, 3), torch.nn.Linear(4, 2)

        def forward(self, x):
            return self.head(self.conv(x).mean((2, 3)) * 2.0)

    odd = load_model(Detached().eval(), name="detached", input_size=32, preprocess="none", device="cpu")
    with pytest.raises(NeuronscopeError, match=r"cannot find the layer that feeds 'head' in 'detached'; give an "
                                               r"embedding layer \(--embed-layer NAME\)"):
        embed_address(odd)


# ---------------------------------------------------------------- top-k, dissection, viewer, serve, atlas

@pytest.mark.parametrize("name", NAMES)
def test_topk_stores_each_nets_best_views_with_their_patches(models, name, image_folder, tmp_path):
    from neuronscope.data.scan import run_topk

    model, layer = models[name], nets.MID_LAYER[name]
    c, h, w = {r.name: r for r in describe_layers(model)}[layer].shape
    run = run_topk(model, image_folder, [layer], k=3, store=tmp_path / "s", size=32, batch_size=4, progress=False)
    store = run.store
    rf = store.receptive_field(layer)
    assert (rf.map_h, rf.map_w) == (h, w) and store.units(layer) == c
    with torch.no_grad():
        maps = activations(model, load_folder(image_folder), [layer])[layer]
    best = maps[:, 0].flatten(1).max(1).values.sort(descending=True).values[:3]
    got = store.entries(layer, 0)
    assert [e.value for e in got] == pytest.approx(best.tolist(), rel=1e-4, abs=1e-5)
    x0, y0, x1, y1 = rf.unit_box(got[0].x, got[0].y)
    assert np.asarray(store.max_patch(layer, 0, 0)).shape[:2] == (y1 - y0, x1 - x0)
    store.close()


def load_folder(folder):
    from neuronscope.images import list_images, load_batch

    return load_batch(list_images(folder), 32)


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


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    from neuronscope.dissect import load_dataset
    from neuronscope.dissect.synthetic import make_shapes_dataset

    return load_dataset(make_shapes_dataset(tmp_path_factory.mktemp("shapes") / "d", n=6, size=32))


@pytest.mark.parametrize("name", NAMES)
def test_dissection_upsamples_each_nets_map(models, name, shapes):
    from neuronscope.dissect import dissect

    model, layer = models[name], nets.MID_LAYER[name]
    c, h, w = {r.name: r for r in describe_layers(model)}[layer].shape
    d = dissect(model, shapes, [layer], size=32, label_size=16, batch_size=3, top=2, progress=False)[layer]
    assert d.map_size == (h, w) and d.iou.shape == (c, len(d.concepts))
    assert ((d.iou >= 0) & (d.iou <= 1)).all() and d.top_images.shape == (c, 2)


@pytest.mark.parametrize("name, layer", [("vit", "blocks.0[cls]"), ("dict_net", "heads[embedding]")])
def test_dissection_of_a_vector_layer_says_it_needs_a_map(models, name, layer, shapes):
    from neuronscope.dissect import dissect

    with pytest.raises(NeuronscopeError, match=rf"layer '{re.escape(layer)}' outputs shape \(3, \d+\); dissection "
                                               r"needs a spatial \(B, C, H, W\) layer"):
        dissect(models[name], shapes, [layer], size=32, label_size=16, batch_size=3, top=2, progress=False)


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


@pytest.mark.parametrize("name", NAMES)
def test_serve_shows_each_nets_layer_unit_and_backprop(models, name, image_folder, tmp_path):
    import io
    import json

    from fastapi.testclient import TestClient

    from neuronscope.viewer import protocol
    from neuronscope.viewer.server import create_app

    model, layer = models[name], nets.MID_LAYER[name]
    c, h, w = {r.name: r for r in describe_layers(model)}[layer].shape
    buf = io.BytesIO()
    Image.open(next(image_folder.glob("*.png"))).save(buf, "JPEG")
    app = create_app(model, cache_dir=tmp_path, layer=layer, synth=False)
    with TestClient(app) as client:
        info = client.get("/api/info").json()
        assert info["model"] == model.name and info["input_size"] == 32 and info["default_layer"] == layer
        with client.websocket_connect("/ws") as ws:
            assert ws.receive_json()["type"] == "hello"
            ws.send_bytes(protocol.pack_incoming(protocol.KIND_UPLOAD, 1, buf.getvalue()))
            ws.send_text(json.dumps({"type": "state", "unit": 1, "backprop": "gradient"}))
            header = None
            for _ in range(20):
                msg = ws.receive()
                if msg.get("bytes") is not None:
                    header, blobs = protocol.unpack_result(msg["bytes"])
                    if header.get("unit") and header.get("backprop", {}).get("status") == "ok":
                        break
                else:
                    assert json.loads(msg["text"])["type"] != "error", msg["text"]
    assert header is not None and header["shape"] == [c, h, w] and header["unit"]["index"] == 1
    assert header["backprop"]["status"] == "ok" and {"grid", "input", "unit", "backprop"} <= set(blobs)
    assert [t["label"] for t in header["top5"]][0] in nets.CLASSES


@pytest.mark.parametrize("name, layer", [*((n, nets.MID_LAYER[n]) for n in NAMES),
                                          ("vit", "blocks.1.mlp.act"), ("convnext", "stages.0.0.act")])
def test_atlas_renders_units_and_their_classes(models, name, layer, tmp_path):
    from neuronscope.atlas import AtlasSettings, build_atlas

    summary = build_atlas(models[name], [f"{layer}:0-1"], tmp_path / "site",
                          settings=AtlasSettings(size=32, steps=3, batch=2), progress=False)
    assert (tmp_path / "site" / "index.html").exists()
    assert (summary.asked, summary.rendered) == (2, 2) and summary.layers == [layer]
    method, data = atlas_classes(summary, layer)
    scores = [v for u in ("0", "1") for _, v in data["top"][u] + data["bottom"][u]]
    assert len(data["top"]["0"]) == 5 and all(0 <= k < 10 for k, _ in data["top"]["0"])
    if layer == "blocks.1.mlp.act":
        # the last block's MLP acts token by token, and the head reads only the class token: a channel (the mean
        # over patch tokens) has no effect on any class, exactly
        assert method == "linear" and not any(scores)
    else:
        assert method == "gradient" and any(scores)


def atlas_classes(summary, layer):
    from neuronscope.atlas.store import AtlasStore

    store = AtlasStore.open(summary.store)
    try:
        return store.classes(layer)
    finally:
        store.close()


@pytest.mark.parametrize("name, layer", [("vit", "blocks.0[cls]"), ("dict_net", "heads[embedding]")])
def test_atlas_of_one_element_of_an_output_renders_it_with_its_classes(models, name, layer, tmp_path):
    from neuronscope.atlas import AtlasSettings, build_atlas

    summary = build_atlas(models[name], [f"{layer}:0-1"], tmp_path / "site",
                          settings=AtlasSettings(size=32, steps=3, batch=2), progress=False)
    assert summary.rendered == 2
    method, data = atlas_classes(summary, layer)
    scores = [v for u in ("0", "1") for _, v in data["top"][u]]
    if name == "vit":  # the class token of the first block reaches the head through the second
        assert method == "gradient" and any(scores)
    else:  # the embedding head is beside the logits: no class depends on it, exactly
        assert method == "linear" and not any(scores)


@pytest.mark.parametrize("attention, layer", [("sdpa", "blocks.0"), ("mha", "blocks.0"), ("sdpa", "blocks.0[cls]"),
                                               ("mha", "blocks.0[cls]")])
def test_atlas_classes_of_a_vit_layer_match_autograd(attention, layer):
    """Forward-mode AD through attention (fused SDPA and MultiheadAttention have no forward derivative);
    a channel of ``blocks.0`` moves every patch token, one of ``blocks.0[cls]`` the class token only."""
    from neuronscope.atlas.classes import layer_jacobian

    torch.manual_seed(4)
    model = load_model(nets.TinyViT(attention=attention), preprocess="imagenet", input_size=32, device="cpu")
    x = torch.rand(1, 3, 32, 32)
    jac = layer_jacobian(model, layer, x, [0, 5])
    tokens = slice(0, 1) if layer.endswith("[cls]") else slice(1, None)
    for row, c in enumerate([0, 5]):  # reverse mode: add delta to feature c of those tokens, differentiate the logits
        delta = torch.zeros((), requires_grad=True)

        def shift(mod, args, out):
            add = torch.zeros_like(out)
            add[:, tokens, c] = 1
            return out + delta * add

        h = model.net.blocks[0].register_forward_hook(shift)
        try:
            logits = model(x)[0]
        finally:
            h.remove()
        want = torch.stack([torch.autograd.grad(logits[k], delta, retain_graph=True)[0] for k in range(10)])
        assert torch.allclose(jac[row], want, rtol=1e-4, atol=1e-5), (attention, layer, c)


def test_atlas_classes_of_dict_elements_are_exact(models):
    from neuronscope.atlas.classes import layer_jacobian

    x = torch.rand(1, 3, 32, 32)
    # shifting logit c by delta moves logit c by delta and no other
    assert torch.allclose(layer_jacobian(models["dict_net"], "heads[logits]", x, 10), torch.eye(10), atol=1e-6)
    assert not layer_jacobian(models["dict_net"], "heads[embedding]", x, 8).any()


# ---------------------------------------------------------------- the CLI, package.module:factory

@pytest.mark.parametrize("name", NAMES)
def test_cli_every_verb(name, image_folder, photo_folder, shapes, tmp_path, capsys):
    spec, layer = f"tests.nets:{name}", nets.MID_LAYER[name]
    assert main(["layers", spec, "--size", "32"]) == 0
    assert layer in capsys.readouterr().out
    img = str(next(image_folder.glob("*.png")))
    embed = ["--embed-layer", EMBED_LAYER[name]] if name in EMBED_LAYER else []
    runs = {
        "render": ["render", spec, f"{layer}:0", "--size", "32", "--steps", "4", "--quiet"],
        "backprop": ["backprop", spec, img, f"{layer}:1", "--mode", "guided"],
        "invert": ["invert", spec, img, "--layers", layer, "--steps", "3"],
        "topk": ["topk", spec, "--images", str(image_folder), "--layers", layer, "--k", "2", "--units", "0-1", "--quiet"],
        "facets": ["facets", spec, f"{layer}:1", "--images", str(photo_folder), "--k", "2", "--views", "4", "--reduce",
                   "pca", "--iter-scale", "0.02", "--steps", "2", "--quiet", *embed],
        "dissect": ["dissect", spec, "--layer", layer, "--data", str(shapes.root), "--size", "32", "--label-size", "16",
                    "--top", "2"],
        "atlas": ["atlas", spec, "--layers", f"{layer}:0", "--size", "32", "--steps", "2", "--batch", "2", "--quiet"],
    }
    wrote = {"render": ["grid.png", "manifest.json"], "backprop": ["sheet.png", "manifest.json"],
             "invert": ["sheet.png", f"{layer}.png"], "topk": [f"{layer}.html", f"{layer}.png"],
             "facets": [f"{layer}_1.html", f"{layer}_1.png", f"{layer}_1.json"],
             "dissect": ["index.html", f"{layer}.json", f"{layer}.csv"], "atlas": ["index.html"]}
    for verb, argv in runs.items():
        out = tmp_path / verb
        assert main([*argv, "--out", str(out)]) == 0, (name, verb, capsys.readouterr().err[-2000:])
        missing = [f for f in wrote[verb] if not (out / f).is_file()]
        assert not missing, (name, verb, missing, sorted(p.name for p in out.iterdir()))


def test_cli_token_addresses_on_the_vit(image_folder, tmp_path, capsys):
    img = next(image_folder.glob("*.png"))
    assert main(["backprop", "tests.nets:vit", str(img), "blocks.1:3@2,2", "--mode", "guided",
                 "--out", str(tmp_path / "bp")]) == 0
    assert list((tmp_path / "bp").glob("*.png"))
    assert main(["backprop", "tests.nets:vit", str(img), "blocks.1[cls]:3", "--mode", "gradient",
                 "--out", str(tmp_path / "bp2")]) == 0
    assert main(["topk", "tests.nets:vit", "--images", str(image_folder), "--layers", "blocks.1[cls]",
                 "--k", "2", "--units", "0-1", "--quiet", "--out", str(tmp_path / "tk")]) == 0
    assert main(["render", "tests.nets:vit", "blocks.1[dist]:0", "--size", "32", "--out", str(tmp_path / "x")]) == 2
    assert "no token named [dist]" in capsys.readouterr().err
