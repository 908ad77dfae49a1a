"""The learned natural-image prior in the generator verbs: the RED term through G and the hybrid refinement.

A tiny classifier and a tiny linear generator built here: the tests check what
each option does to the result, not the quality of the shipped weights.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from neuronscope import load_model
from tests.nets import TinyClassifier
from neuronscope.errors import NeuronscopeError
from neuronscope.generators import CodeSpec, CodeStats, Generator
from neuronscope.generators.conditions import Condition
from neuronscope.generators.dgn_am import dgn_am
from neuronscope.generators.image_prior import image_prior, refine_steps
from neuronscope.generators.inpaint import inpaint
from neuronscope.generators.ppgn import preset, run_chain, sample
from neuronscope.priors import DenoisingPrior
from neuronscope.priors.metrics import hf_share

S = 128  # hf_share judges images at 224 px: a smaller image has no power above its cut-off


def _basis() -> torch.Tensor:
    """(3*S*S, 8): four smooth colour gradients and four white-noise patterns as the code's image directions."""
    g = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, S), torch.linspace(-1, 1, S), indexing="ij")
    smooth = [torch.stack([xx, yy, -xx]), torch.stack([yy, -xx, xx * yy]), torch.stack([xx * xx, yy, xx]),
              torch.stack([-yy, xx * yy, yy])]
    noise = [torch.randn(3, S, S, generator=g) for _ in range(4)]
    return torch.stack([p.flatten() for p in smooth + noise], dim=1) * 0.5


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    model = load_model(TinyClassifier(), preprocess="none", input_size=16, labels=["a", "b", "c", "d"], name="tiny")
    lin = nn.Linear(8, 3 * S * S)
    with torch.no_grad():
        lin.weight.copy_(_basis())
        lin.bias.zero_()
    net = nn.Sequential(lin, nn.Unflatten(1, (3, S, S)), nn.Tanh())
    codes = torch.rand(256, 8)
    gen = Generator(net, CodeSpec(model="tiny", layer="feat", grid=1, size=16), CodeStats.from_codes(codes),
                    meta={"image_size": S})
    return model, gen


def _noisy_code(gen):
    return gen.clip(torch.tensor([[0.5, 0.5, 0.5, 0.5, 0.9, 0.9, 0.9, 0.9]]))


def test_red_term_lowers_the_hf_share_of_the_generated_image(tiny):
    model, gen = tiny
    h0 = _noisy_code(gen)
    cfg = preset("dgn-am", steps=6, lr=0.5, lr_end=0.5, decay=1.0)
    plain = run_chain(gen, model, None, cfg, init=h0, progress=False)
    red = run_chain(gen, model, None, cfg, init=h0, image_prior={"weight": 1.0, "sigma": (0.1, 0.05)}, progress=False)
    start = float(hf_share(gen(h0).detach() * 0.5 + 0.5)[0])
    assert float(hf_share(plain.images)[0]) == pytest.approx(start, rel=0.02)  # nothing else moves the code
    assert float(hf_share(red.images)[0]) < 0.8 * start, (start, float(hf_share(red.images)[0]))
    # the prior moved the noise directions of the code, more than the smooth ones
    moved = (red.codes - h0).abs()[0]
    assert float(moved[4:].mean()) > float(moved[:4].mean())


def test_red_term_changes_dgn_am_sample_and_inpaint(tiny):
    model, gen = tiny
    init = _noisy_code(gen)
    a, _ = dgn_am(gen, model, ["class:1"], steps=5, init=init, progress=False, refine=0)
    b, _ = dgn_am(gen, model, ["class:1"], steps=5, init=init, progress=False, refine=0, prior=True)
    assert not torch.allclose(a.images, b.images)
    c, _ = sample(gen, model, ["class:1"], n=1, variant="ppgn-gauss", steps=4, progress=False, refine=0,
                  prior=DenoisingPrior(weight=0.5, every=1))
    d, _ = sample(gen, model, ["class:1"], n=1, variant="ppgn-gauss", steps=4, progress=False, refine=0)
    assert not torch.allclose(c.images, d.images)
    img = torch.rand(3, S, S)
    mask = torch.zeros(1, 1, S, S)
    mask[..., 32:96, 32:96] = 1
    e = inpaint(gen, model, img, mask, n=1, variant="ppgn-gauss", steps=4, progress=False)
    f = inpaint(gen, model, img, mask, n=1, variant="ppgn-gauss", steps=4, progress=False, prior={"weight": 1.0})
    assert not torch.allclose(e.composites, f.composites)
    assert torch.equal(f.composites[..., :32, :], e.composites[..., :32, :])  # the context is kept either way


def test_refinement_raises_the_target_above_the_generators_image(tiny):
    model, gen = tiny
    init = _noisy_code(gen)
    res, rows = dgn_am(gen, model, ["class:2"], steps=3, init=init, progress=False, refine=12)
    assert res.generated is not None and res.generated.shape[-1] == S
    assert res.images.shape[-1] == model.input_size  # refined at the model's size
    before = Condition(model, rows, size=16)(res.generated).detach()
    assert float(res.values[0]) > float(before[0]) + 0.05, (float(before[0]), float(res.values[0]))
    plain, _ = dgn_am(gen, model, ["class:2"], steps=3, init=init, progress=False, refine=0)
    assert plain.generated is None and torch.allclose(plain.images, res.generated)  # refine=0: the paper's DGN-AM


@pytest.mark.parametrize("spec,needle", [
    ("strong", "prior must be a DenoisingPrior"),
    ({"weight": 2.0}, "valid: a weight in (0, 1]"),
    ({"weigth": 0.5}, "unknown prior settings ['weigth']"),
    ({"sigma": (0.05, -1)}, "two positive noise levels"),
    ({"every": 0}, "every must be at least 1"),
])
def test_bad_prior_settings_are_refused(spec, needle):
    with pytest.raises(NeuronscopeError) as e:
        image_prior(spec)
    assert needle in str(e.value)


@pytest.mark.parametrize("value", [-1, 2.5, "64"])
def test_bad_refine_values_are_refused(tiny, value):
    with pytest.raises(NeuronscopeError, match="refine must be a number of steps"):
        refine_steps(value)
    model, gen = tiny
    with pytest.raises(NeuronscopeError, match="refine must be a number of steps"):
        dgn_am(gen, model, ["class:1"], steps=1, progress=False, refine=value)


def test_prior_settings_read_as_render_reads_them():
    assert image_prior(None) is None and image_prior(False) is None
    p = DenoisingPrior(weight=0.3)
    assert image_prior(p) is p
    assert image_prior(True, {"weight": 0.4, "every": 1}).weight == 0.4
    assert image_prior({"weight": 0.2}, {"weight": 0.4, "every": 2}).describe()["every"] == 2
    assert refine_steps(True) > 0 and refine_steps(False) == 0 and refine_steps(8.0) == 8
