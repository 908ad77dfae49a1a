"""``load_model("onnx:PATH")``: the real Lite0, exported to ONNX and imported back.

Needs the ``onnx`` package and ``onnx2torch`` (``neuronscope[onnx]`` plus
``pip install --no-deps onnx2torch``); skipped with the reason when absent.
"""

from __future__ import annotations

import importlib.util
import warnings

import pytest
import torch

from neuronscope import NeuronscopeError, describe_layers, load_model
from neuronscope.optim import objectives as O
from neuronscope.optim.render import render
from neuronscope.optim.transforms import identity

pytest.importorskip("onnx", reason="the onnx extra is not installed")
if importlib.util.find_spec("onnx2torch") is None:  # importing it needs the placeholder (see onnx_import)
    pytest.skip("onnx2torch is not installed (pip install --no-deps onnx2torch)", allow_module_level=True)
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def exported(lite0, tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / "lite0.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation and trace warnings
        torch.onnx.export(lite0.net, (torch.rand(1, 3, 224, 224),), str(path), dynamo=False, opset_version=17,
                          input_names=["image"], output_names=["logits"], dynamic_axes={"image": {0: "batch"}})
    return path


@pytest.fixture(scope="module")
def reimported(exported):
    return load_model(f"onnx:{exported}", preprocess="minus_one_one", device="cpu")


def test_reimported_lite0_gives_the_same_logits_and_labels(lite0, reimported, sample_photos):
    from neuronscope.images import center_crop_resize, load_image, pil_to_tensor

    assert reimported.input_size == 224 and reimported.info.fixed_size
    assert reimported.labels == lite0.labels  # 1000 outputs: the ImageNet names
    x = torch.stack([pil_to_tensor(center_crop_resize(load_image(sample_photos[k]), 224)) for k in ("chelsea", "coffee")])
    with torch.no_grad():
        a, b = lite0(x), reimported(x)
    assert torch.allclose(a, b, atol=1e-3, rtol=1e-4), (a - b).abs().max()
    assert torch.equal(a.argmax(1), b.argmax(1))
    # the cat is a cat for both (classes 281-285 are ImageNet's domestic cats)
    assert 281 <= int(b[0].argmax()) <= 285


def test_onnx_layers_are_addressable_and_a_short_render_matches_the_original(lite0, reimported):
    names = {r.name: r for r in describe_layers(reimported)}
    conv = "blocks/blocks/10/project_conv/Conv"  # the exporter folded project_bn into it
    assert names[conv].shape == (112, 14, 14)
    # at the exported size and without the jitter/scale transforms: the graph's padding was traced
    # for 224 px, so the re-imported model resizes other sizes to 224 where the original would not
    # without the natural prior: its first step (weight 0.8 on a near-uniform start image, then the image's
    # contrast restored) magnifies float rounding between two equal networks by ~6 % in 3 steps, which would
    # test the prior's sensitivity, not the import
    kw = dict(size=224, steps=3, seed=3, progress=False, engine="plain", transforms=identity(), prior=False)
    a = render(lite0, [O.channel("blocks.10.project_bn", 7)], **kw)
    b = render(reimported, [O.channel(conv, 7)], **kw)
    # same network, same seeds, same steps: the same images up to float rounding, which Adam's
    # per-pixel normalization magnifies where a pixel's gradient is near zero
    diff = (a.images - b.images).abs()
    assert diff.mean() < 0.01 and diff.max() < 0.1, (diff.mean(), diff.max())
    # the gradient the render follows is the same to float precision
    x = torch.rand(1, 3, 224, 224)
    grads = []
    for model, obj in ((lite0, O.channel("blocks.10.project_bn", 7)), (reimported, O.channel(conv, 7))):
        xi = x.clone().requires_grad_(True)
        from neuronscope.taps import tap

        with tap(model, obj.layers) as taps:
            taps.run(xi)
            (g,) = torch.autograd.grad(obj(taps.values, xi).sum(), xi)
        grads.append(g.flatten())
    assert torch.nn.functional.cosine_similarity(grads[0], grads[1], dim=0) > 0.9999
    assert torch.allclose(a.values, b.values, rtol=5e-2), (a.values, b.values)


def test_missing_or_corrupt_onnx_files_are_clear_errors(tmp_path):
    with pytest.raises(NeuronscopeError, match="no ONNX file"):
        load_model(f"onnx:{tmp_path / 'none.onnx'}")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a protobuf at all" * 10)
    with pytest.raises(NeuronscopeError, match="not a readable ONNX file|cannot convert"):
        load_model(f"onnx:{bad}")


def test_onnx2torch_imports_without_torchvision_and_leaves_no_fake_behind():
    import sys

    from neuronscope.models.onnx_import import import_onnx2torch

    import_onnx2torch()
    tv = sys.modules.get("torchvision")
    assert tv is None or not getattr(tv, "__neuronscope_placeholder__", False)
