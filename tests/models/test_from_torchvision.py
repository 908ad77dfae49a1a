"""``torchvision:NAME`` end to end, through a stand-in torchvision with the real API (tests/models/stand_ins.py).

The real torchvision cannot be imported beside this torch, so the loader runs
against stand-in modules in ``sys.modules``: what it reads from the weights
(crop, resize, mean, std, categories), the weights it asks for, the networks'
logits after its preprocessing, its refusals, and the CLI on such a model.
"""

from __future__ import annotations

import re
import sys

import pytest
import torch

from neuronscope import NeuronscopeError, load_model
from neuronscope.cli import main

from tests.models import stand_ins

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def tv(monkeypatch):
    stand_ins.install(monkeypatch, timm=False)
    return sys.modules["torchvision.models"]


def reference_logits(tv, name, weights, x, mean, std):
    """What the network gives for [0, 1] images normalized as its weights' preset says."""
    net = tv.get_model(name, weights=weights).eval()
    m, s = torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)
    with torch.no_grad():
        return net((x - m) / s)


@pytest.mark.parametrize("name, crop, resize, mean, fixed", [
    ("resnet_stand_in", 32, 34, stand_ins.IMAGENET_MEAN, False),
    ("vit_stand_in", 32, 32, (0.5, 0.5, 0.5), True),
    ("convnext_stand_in", 32, 36, stand_ins.IMAGENET_MEAN, False),
])
def test_the_weights_preset_gives_size_crop_normalization_and_classes(tv, name, crop, resize, mean, fixed):
    m = load_model(f"torchvision:{name}", device="cpu")
    weights = tv.get_model_weights(name).DEFAULT
    assert m.input_size == crop and m.info.eval_resize == pytest.approx(crop / resize)
    assert m.labels == stand_ins.CATEGORIES and m.label(3) == "stand-in class 3"
    assert m.info.fixed_size is fixed and m.info.source == "torchvision"
    assert m.info.extra["weights"] == repr(weights)
    pre = m.preprocess
    assert pre.mean.flatten().tolist() == pytest.approx(list(mean))
    x = torch.rand(2, 3, 32, 32)
    want = reference_logits(tv, name, weights, x, weights.transforms().mean, weights.transforms().std)
    with torch.no_grad():
        assert torch.allclose(m(x), want, atol=1e-5)
        # the weights were loaded: an untrained network of the same builder answers differently
        assert not torch.allclose(tv.get_model(name, weights=None).eval()((x - pre.mean) / pre.std), want, atol=1e-3)


def test_weights_are_chosen_by_name_and_a_bad_name_lists_the_valid_ones(tv):
    v1 = load_model("torchvision:resnet_stand_in.IMAGENET1K_V1", device="cpu")
    v2 = load_model("torchvision:resnet_stand_in", device="cpu")  # DEFAULT = V2
    assert v1.info.extra["weights"] == "ResNetStandIn_Weights.IMAGENET1K_V1" and v1.name.endswith(".IMAGENET1K_V1")
    assert v2.info.extra["weights"] == "ResNetStandIn_Weights.IMAGENET1K_V2"
    assert (v1.info.eval_resize, v2.info.eval_resize) == (pytest.approx(32 / 36), pytest.approx(32 / 34))
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert not torch.allclose(v1(x), v2(x), atol=1e-3)
    with pytest.raises(NeuronscopeError, match=r"no weights 'IMAGENET1K_V9'; valid: IMAGENET1K_V1, IMAGENET1K_V2, DEFAULT"):
        load_model("torchvision:resnet_stand_in.IMAGENET1K_V9", device="cpu")


@pytest.mark.parametrize("spec, message", [
    ("torchvision:resnet_stnd_in", r"torchvision has no model 'resnet_stnd_in'; did you mean resnet_stand_in"),
    ("torchvision:detector_stand_in", r"'detector_stand_in' is not an image classifier .*ObjectDetection"),
    ("torchvision:offline_stand_in",
     r"could not load the weights OfflineStandIn_Weights.IMAGENET1K_V1 .* from https://stand.in/never_published.pth "
     r"\(URLError.*\); torchvision downloads them once into \$TORCH_HOME/hub/checkpoints"),
])
def test_unknown_models_detectors_and_missing_weights_are_refused_clearly(tv, spec, message):
    with pytest.raises(NeuronscopeError, match=message):
        load_model(spec, device="cpu")


def test_missing_torchvision_says_which_build_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchvision", None)  # as if not installed
    with pytest.raises(NeuronscopeError, match=r"torchvision is not installed; .*make torchvision.*"
                                               r"torchvision==0\.\d+\.\*"):
        load_model("torchvision:resnet50", device="cpu")


def test_a_torchvision_built_for_another_torch_is_named_as_such(monkeypatch, tmp_path):
    # PyPI's CUDA torchvision beside a CPU torch fails at import exactly so
    pkg = tmp_path / "torchvision"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("raise RuntimeError('operator torchvision::nms does not exist')\n")
    (pkg / "models.py").write_text("")
    for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(NeuronscopeError, match=r"torchvision is installed but fails to import beside torch "
                                               + re.escape(torch.__version__) + r" \(RuntimeError: operator torchvision::nms"):
        load_model("torchvision:resnet50", device="cpu")


def test_a_torchvision_vit_reads_as_tokens_and_its_facets_embed_the_class_token(tv, tmp_path):
    from PIL import Image

    from neuronscope import describe_layers
    from neuronscope.facets import multifaceted, parse_unit

    m = load_model("torchvision:vit_b_16_stand_in", device="cpu")
    rows = {r.name: r for r in describe_layers(m)}
    assert m.info.fixed_size  # encoder.pos_embedding
    assert rows["encoder.layers.encoder_layer_0"].shape == (32, 8, 8) and rows["encoder.ln[cls]"].shape == (32,)
    folder = tmp_path / "imgs"
    folder.mkdir()
    g = torch.Generator().manual_seed(0)
    for i in range(6):
        Image.fromarray((torch.rand(40, 40, 3, generator=g) * 255).byte().numpy()).save(folder / f"{i}.png")
    unit = parse_unit(m, "encoder.layers.encoder_layer_0:1")
    kw = dict(k=2, views=4, reduce="pca", iter_scale=0.02, preset_steps=2, progress=False)
    # heads.head reads x[:, 0] of encoder.ln, which no module outputs alone: facets finds the class token
    res = multifaceted(m, unit, folder, **kw)
    assert len(res.facets) + len(res.duplicates) == 2 and res.meta["anchor_layer"] == "encoder.ln[cls]"


def test_cli_layers_and_render_through_torchvision_names(tv, tmp_path, capsys):
    assert main(["layers", "torchvision:vit_stand_in"]) == 0
    listing = capsys.readouterr().out
    assert "blocks.1" in listing and "1+8x8 tokens" in listing
    out = tmp_path / "r"
    assert main(["render", "torchvision:resnet_stand_in.IMAGENET1K_V1", "layer1:0-1", "--size", "32", "--steps", "3",
                 "--quiet", "--out", str(out)]) == 0
    assert len(list(out.glob("*.png"))) >= 1
    assert main(["render", "torchvision:detector_stand_in", "features.0:0", "--out", str(tmp_path / "x")]) == 2
    assert "not an image classifier" in capsys.readouterr().err
