"""``timm:NAME`` end to end, through a stand-in timm with the real API (tests/models/stand_ins.py).

timm imports torchvision, which cannot be imported beside this torch, so the
loader runs against stand-in modules in ``sys.modules``: what it reads from the
pretrained config (input size, mean, std, crop_pct), the class names it gives,
the fixed-size rule for ViTs, its refusals, and the CLI on such a model.
"""

from __future__ import annotations

import re
import sys

import pytest
import torch

from neuronscope import NeuronscopeError, load_model
from neuronscope.models import imagenet_labels
from neuronscope.cli import main

from tests.models import stand_ins

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def timm(monkeypatch):
    stand_ins.install(monkeypatch, torchvision=False)
    return sys.modules["timm"]


@pytest.mark.parametrize("spec, tag, mean, crop_pct, fixed", [
    ("vit_stand_in", "augreg_in1k", 0.5, 0.9, True),  # the first tag is the default; position embedding: fixed size
    ("vit_stand_in.augreg_in1k", "augreg_in1k", 0.5, 0.9, True),
    ("resnet_stand_in", "a1_in1k", 0.485, 0.95, False),
    ("vit_dynamic_stand_in", "in1k", 0.485, 0.875, False),  # dynamic_img_size: any size
])
def test_the_pretrained_config_gives_size_crop_normalization_and_fixed_size(timm, spec, tag, mean, crop_pct, fixed):
    m = load_model(f"timm:{spec}", device="cpu")
    assert m.input_size == 32  # the training size, not resnet's test_input_size of 40
    assert m.info.eval_resize == pytest.approx(crop_pct) and m.info.fixed_size is fixed
    assert m.preprocess.mean.flatten()[0].item() == pytest.approx(mean)
    assert m.labels == imagenet_labels() and m.label(1) == "goldfish"
    assert m.info.extra["crop_mode"] == "center" and m.info.extra["pretrained"] == tag
    net = timm.create_model(spec, pretrained=True).eval()
    x = torch.rand(2, 3, 32, 32)
    cfg = timm.data.resolve_model_data_config(net)
    mu, sd = torch.tensor(cfg["mean"]).view(1, 3, 1, 1), torch.tensor(cfg["std"]).view(1, 3, 1, 1)
    with torch.no_grad():
        assert torch.allclose(m(x), net((x - mu) / sd), atol=1e-5)


def test_larger_imagenet_heads_take_timms_own_class_names(timm):
    m = load_model("timm:vit_stand_in.augreg_in12k", device="cpu")
    assert len(m.labels) == 11821 and m.labels[5] == "imagenet-12k lemma 5"


@pytest.mark.parametrize("spec, message", [
    ("timm:vit_stnd_in", r"timm has no model 'vit_stnd_in'; did you mean vit_stand_in"),
    ("timm:vit_stand_in.in22k", re.escape("timm could not build 'vit_stand_in.in22k': Invalid pretrained tag (in22k)")),
    ("timm:untrained_stand_in", r"No pretrained weights exist for untrained_stand_in"),
    ("timm:offline_stand_in", r"could not load the pretrained weights of 'offline_stand_in' \(FileNotFoundError.*\); "
                              r"timm downloads them once into the Hugging Face cache"),
])
def test_unknown_models_tags_and_missing_weights_are_refused_clearly(timm, spec, message):
    with pytest.raises(NeuronscopeError, match=message):
        load_model(spec, device="cpu")


def test_missing_timm_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)
    with pytest.raises(NeuronscopeError, match=r"timm is not installed; pip install 'neuronscope\[timm\]'"):
        load_model("timm:resnet50", device="cpu")


def test_timm_failing_on_a_broken_torchvision_names_torchvision(monkeypatch, tmp_path):
    # timm imports torchvision at import time; a torchvision built for another torch breaks it
    for pkg, code in [("torchvision", "raise RuntimeError('operator torchvision::nms does not exist')\n"),
                      ("timm", "import torchvision\n")]:
        (tmp_path / pkg).mkdir()
        (tmp_path / pkg / "__init__.py").write_text(code)
    (tmp_path / "timm" / "data.py").write_text("")
    for name in [n for n in sys.modules if n.split(".")[0] in ("timm", "torchvision")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(NeuronscopeError, match=r"timm imports torchvision, which cannot be used: torchvision is "
                                               r"installed but fails to import beside torch .*make torchvision"):
        load_model("timm:resnet50", device="cpu")


def test_cli_layers_and_render_through_timm_names(timm, tmp_path, capsys):
    assert main(["layers", "timm:resnet_stand_in"]) == 0
    assert "layer2.0.relu" in capsys.readouterr().out
    out = tmp_path / "r"
    assert main(["render", "timm:vit_stand_in", "blocks.0:1", "--size", "32", "--steps", "3", "--quiet",
                 "--out", str(out)]) == 0
    assert list(out.glob("*.png"))
    assert main(["render", "timm:vit_stnd_in", "blocks.0:1", "--out", str(tmp_path / "x")]) == 2
    assert "did you mean vit_stand_in" in capsys.readouterr().err
