"""Embedded EfficientNet-Lite models with released weights, and the model adapter."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from neuronscope import NeuronscopeError, load_model
from neuronscope.images import center_crop_resize, pil_to_tensor
from neuronscope.models.efficientnet_lite import remap_state_dict, weights_file

ESPRESSO = 967
CAT_CLASSES = {281: "tabby", 282: "tiger cat", 283: "Persian cat", 284: "Siamese cat", 285: "Egyptian cat", 287: "lynx"}
EMBEDDED = [("efficientnet_lite0", 224, 296), ("efficientnet_lite1", 240, None), ("efficientnet_lite2", 260, None)]


def _photo_batch(size: int) -> torch.Tensor:
    import skimage.data

    pics = [Image.fromarray(np.asarray(skimage.data.coffee())), Image.fromarray(np.asarray(skimage.data.chelsea()))]
    return torch.stack([pil_to_tensor(center_crop_resize(p, size)) for p in pics])


@pytest.fixture(scope="module")
def lite_models(lite0):
    """Lite0 from the session, Lite1/Lite2 built once for this module."""
    return {"efficientnet_lite0": lite0} | {
        n: load_model(n, device="cpu") for n in ("efficientnet_lite1", "efficientnet_lite2")
    }


@pytest.mark.parametrize("name, size, n_keys", EMBEDDED)
def test_released_weights_fill_exactly_the_built_module(name, size, n_keys):
    released = torch.load(weights_file(name), map_location="cpu", weights_only=True)
    if n_keys is not None:
        assert len(released) == n_keys  # the documented file, not some other checkpoint
    remapped = remap_state_dict(released)
    assert len(remapped) == len(released)  # renaming is one-to-one
    assert not [k for k in remapped if k.startswith("_")]  # every released key was renamed

    model = load_model(name, device="cpu")
    own = model.net.state_dict()
    assert set(own) == set(remapped)  # no missing, no unexpected keys
    for key, value in remapped.items():
        assert own[key].shape == value.shape, key
    assert torch.equal(own["fc.weight"], released["_fc.weight"])
    assert torch.equal(own["blocks.10.dw_conv.weight"], released["_blocks.10._depthwise_conv.weight"])
    result = model.net.load_state_dict(remapped, strict=True)
    assert not result.missing_keys and not result.unexpected_keys


@pytest.mark.parametrize("name, size, n_keys", EMBEDDED)
def test_lite_models_classify_coffee_as_espresso_and_chelsea_as_a_cat(lite_models, name, size, n_keys):
    model = lite_models[name]
    assert model.input_size == size
    with torch.inference_mode():
        top1 = model(_photo_batch(size)).argmax(-1).tolist()
    assert top1[0] == ESPRESSO, f"{name}: coffee -> {model.label(top1[0])}"
    assert top1[1] in CAT_CLASSES, f"{name}: chelsea -> {model.label(top1[1])}"
    assert model.label(ESPRESSO) == "espresso"


def test_model_parameters_are_frozen_and_stay_in_eval_mode(lite0):
    assert all(not p.requires_grad for p in lite0.parameters())
    assert not any(m.training for m in lite0.modules())
    before = lite0.net.blocks[3].dw_bn.running_mean.clone()
    lite0.train()
    assert not any(m.training for m in lite0.modules())
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        a, b = lite0(x), lite0(x)
    assert torch.equal(a, b)  # no dropout
    assert torch.equal(before, lite0.net.blocks[3].dw_bn.running_mean)  # BatchNorm statistics untouched


def test_gradients_still_reach_the_input(lite0):
    x = torch.rand(1, 3, 64, 64, requires_grad=True)
    lite0(x)[0, ESPRESSO].backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in lite0.parameters())


def test_lite0_preprocessing_maps_unit_range_to_minus_one_one(lite0):
    x = torch.tensor([0.0, 0.5, 1.0]).view(1, 3, 1, 1)
    assert lite0.preprocess(x).flatten().tolist() == [-1.0, 0.0, 1.0]


class _Tiny(nn.Module):
    def __init__(self, tuple_out: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(4, 5)
        self.tuple_out = tuple_out

    def forward(self, x):
        feat = self.conv(x).mean((2, 3))
        logits = self.fc(feat)
        return (logits, feat) if self.tuple_out else logits


def test_user_module_needs_a_declared_preprocess():
    with pytest.raises(NeuronscopeError) as err:
        load_model(_Tiny())
    assert "preprocess" in str(err.value) and "imagenet" in str(err.value)
    with pytest.raises(NeuronscopeError, match="unknown preprocessing 'zscore'.*imagenet"):
        load_model(_Tiny(), preprocess="zscore")
    model = load_model(_Tiny(), preprocess="imagenet", input_size=32, labels=list("abcde"), device="cpu")
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 5)
    assert all(not p.requires_grad for p in model.parameters()) and not model.net.training
    doubled = load_model(_Tiny(), preprocess=lambda x: x * 2, device="cpu")
    x = torch.rand(1, 3, 8, 8)
    assert torch.allclose(doubled(x), doubled.net(x * 2))


def test_tuple_output_needs_output_index():
    model = load_model(_Tiny(tuple_out=True), preprocess="none", device="cpu")
    with pytest.raises(NeuronscopeError) as err:
        model(torch.rand(1, 3, 8, 8))
    assert "tuple of 2 elements" in str(err.value) and "by its index, 0 to 1, e.g. load_model(..., output=0)" in str(err.value)
    model = load_model(_Tiny(tuple_out=True), preprocess="none", output=0, device="cpu")
    x = torch.rand(1, 3, 8, 8)
    assert torch.equal(model(x), model.net(x)[0])
    model = load_model(_Tiny(tuple_out=True), preprocess="none", output=5, device="cpu")
    with pytest.raises(NeuronscopeError, match="no element 5"):
        model(x)


def test_dict_output_needs_output_key_and_the_hint_names_the_keys():
    from tests.nets import DictNet

    model = load_model(DictNet(), preprocess="none", input_size=32, device="cpu")
    with pytest.raises(NeuronscopeError) as err:
        model(torch.rand(1, 3, 32, 32))
    assert "dict with keys 'logits', 'embedding'" in str(err.value)
    assert "by its key, e.g. load_model(..., output='logits')" in str(err.value)
    x = torch.rand(1, 3, 32, 32)
    picked = load_model(DictNet(), preprocess="none", input_size=32, device="cpu", output="logits")
    assert torch.equal(picked(x), picked.net(x)["logits"])


def test_wrong_input_shape_is_a_clear_error(lite0):
    with pytest.raises(NeuronscopeError, match=r"\(B, 3, H, W\).*\(3, 32, 32\)"):
        lite0(torch.rand(3, 32, 32))


def test_class_index_by_name_synonym_and_index(lite0):
    assert lite0.class_index("espresso") == ESPRESSO
    assert lite0.class_index("tabby cat") == 281  # a synonym on the label line
    assert lite0.class_index("Tiger_Cat") == 282  # case and underscores forgiven
    with pytest.raises(NeuronscopeError, match=r"ambiguous.*134: crane; 517: crane.*class:134"):
        lite0.class_index("crane")  # the bird and the machine share the name
    assert lite0.class_index("tank suit") == 639
    assert lite0.class_index(ESPRESSO) == ESPRESSO and lite0.class_index("967") == ESPRESSO
    assert lite0.label(282) == "tiger cat" and len(lite0.labels) == 1000


def test_class_index_errors_list_valid_options(lite0):
    with pytest.raises(NeuronscopeError, match=r"out of range.*0\.\.999"):
        lite0.class_index(1000)
    with pytest.raises(NeuronscopeError, match=r"out of range.*0\.\.999"):
        lite0.class_index(-1)
    with pytest.raises(NeuronscopeError) as err:
        lite0.class_index("espreso")
    assert "espresso (967)" in str(err.value)
    unlabelled = load_model(_Tiny(), preprocess="none", device="cpu")
    with pytest.raises(NeuronscopeError, match="no class labels"):
        unlabelled.class_index("cat")


def test_unknown_model_name_lists_the_embedded_models():
    with pytest.raises(NeuronscopeError) as err:
        load_model("efficientnet_lite7")
    message = str(err.value)
    for name, _, _ in EMBEDDED:
        assert name in message
    assert "torchvision:NAME" in message


def test_unknown_device_is_a_clear_error():
    with pytest.raises(NeuronscopeError, match="unknown device 'gpu0'"):
        load_model(_Tiny(), preprocess="none", device="gpu0")
