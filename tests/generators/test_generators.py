"""Generator priors: DGN-AM, the PPGN sampler, inpainting, training, save/load.

Most tests use a tiny classifier and a tiny generator built here, so they test
the algorithms' behaviour, not the quality of the shipped weights.
"""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from neuronscope import load_model
from tests.nets import TinyClassifier
from neuronscope.errors import NeuronscopeError
from neuronscope.generators import CodeSpec, CodeStats, Generator
from neuronscope.generators.conditions import Condition
from neuronscope.units import parse_unit
from neuronscope.generators.dgn_am import dgn_am
from neuronscope.generators.inpaint import inpaint, parse_mask
from neuronscope.generators.nets import CodeDAE, ConvGenerator
from neuronscope.generators.ppgn import preset, run_chain, sample


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    model = load_model(TinyClassifier(), preprocess="none", input_size=16, labels=["a", "b", "c", "d"], name="tiny")
    net = nn.Sequential(nn.Linear(8, 3 * 16 * 16), nn.Unflatten(1, (3, 16, 16)), nn.Tanh())  # any nn.Module will do
    spec = CodeSpec(model="tiny", layer="feat", grid=1, size=16)
    codes = torch.relu(torch.randn(256, 8) + 0.5)
    gen = Generator(net, spec, CodeStats.from_codes(codes), dae=CodeDAE(8, 1, 16), meta={"image_size": 16})
    return model, gen


def test_code_stats_box_is_zero_to_mean_plus_three_sigma_for_relu_codes():
    codes = torch.relu(torch.randn(1000, 5)) * 2
    st = CodeStats.from_codes(codes)
    assert torch.all(st.lo == 0)
    assert torch.allclose(st.hi, torch.clamp(codes.mean(0) + 3 * codes.std(0), max=6.0))


def test_dgn_am_raises_the_target_class_logit(tiny):
    model, gen = tiny
    init = gen.random_codes(2, seed=3)
    cond = Condition(model, ["class:2", "class:0"], size=16)
    with torch.no_grad():
        before = cond(gen(init))
    res, rows = dgn_am(gen, model, ["class:2", "class:0"], steps=40, lr=0.5, lr_end=0.01, init=init, progress=False, refine=0)
    assert [r.index for r in rows] == [2, 0]
    assert torch.all(res.values > before + 0.05), (before, res.values)
    assert res.trace.shape == (40, 2)


def test_dgn_am_raises_a_hidden_channel(tiny):
    model, gen = tiny
    init = gen.random_codes(1, seed=5)
    cond = Condition(model, ["feat:3"], size=16)
    with torch.no_grad():
        before = cond(gen(init))
    res, _ = dgn_am(gen, model, ["feat:3"], steps=40, lr=0.5, lr_end=0.01, init=init, progress=False, refine=0)
    assert float(res.values[0]) > float(before[0])


def test_code_clipping_holds_every_step(tiny):
    model, gen = tiny
    seen = []
    cfg = preset("dgn-am", steps=25, lr=50.0, lr_end=10.0)  # huge steps would leave the box without clipping
    cond = Condition(model, ["class:1"] * 3, size=16, kind="activation")
    res = run_chain(gen, model, cond, cfg, batch=3, progress=False, seed=1)
    h = res.codes
    assert torch.all(h >= gen.code_lo - 1e-6) and torch.all(h <= gen.code_hi + 1e-6)
    assert (h >= gen.code_hi * 0.99 - 1e-5).any(), "the test should push some units to their upper bound"


def test_ppgn_prior_moves_codes_toward_the_dae_fixed_point(tiny):
    model, gen = tiny

    class Contract(nn.Module):  # R(h) = (h + h*) / 2: the unique fixed point is h*
        def __init__(self, target):
            super().__init__()
            self.register_buffer("target", target)

        def forward(self, h):
            return 0.5 * (h + self.target)

    star = gen.code_mean.clone()
    g2 = Generator(gen.net, gen.spec, gen.stats, dae=Contract(star), meta=gen.meta)
    init = g2.random_codes(4, seed=9)
    cfg = preset("ppgn-h", eps1=0.3, eps2=0.0, eps3=0.0, steps=20, burn_in=0)
    res = run_chain(g2, model, None, cfg, init=init, progress=False)
    d0 = (init - star).norm(dim=1)
    d1 = (res.codes - star).norm(dim=1)
    assert torch.all(d1 < 0.2 * d0), (d0, d1)


def test_cycle_prior_with_eps1_one_sets_code_to_encoder_of_generated_image(tiny):
    model, gen = tiny
    init = gen.random_codes(2, seed=4)
    cfg = preset("noiseless-joint-ppgn-h", eps1=1.0, eps2=0.0, steps=1, burn_in=0, clip=False)
    res = run_chain(gen, model, None, cfg, init=init, encoder=model, progress=False)
    with torch.no_grad():
        expected = gen.encode(model, gen(init))
    assert torch.allclose(res.codes, expected, atol=1e-5)


def test_rows_do_not_mix_in_a_batch(tiny):
    model, gen = tiny
    init = gen.random_codes(3, seed=11)
    both, _ = dgn_am(gen, model, ["class:0", "class:3", "feat:1"], steps=10, init=init, progress=False, refine=0)
    alone, _ = dgn_am(gen, model, ["class:3"], steps=10, init=init[1:2], progress=False, refine=0)
    assert torch.allclose(both.codes[1], alone.codes[0], atol=1e-5)


def test_ppgn_chains_give_many_frames_and_reset_every_restarts(tiny):
    model, gen = tiny
    res, rows = sample(gen, model, ["class:1", "class:2"], n=2, variant="joint-ppgn-h", steps=12, burn_in=0,
                       save_every=3, reset_every=6, size=16, progress=False, encoder=model, refine=0)
    assert len(rows) == 4 and len(res.frames) == 4
    ims, vals = res.samples(0)
    assert ims.shape == (4, 3, 16, 16) and vals.shape == (4,)
    assert not torch.equal(res.frames[0][1], res.frames[-1][1])


def test_exact_and_compat_class_gradients_match_hand_computation(tiny):
    model, _ = tiny
    x = torch.rand(1, 3, 16, 16, requires_grad=True)
    logits = model(x).detach()
    p = logits.softmax(1)[0]
    for compat, expected in ((False, -p.clone()), (True, torch.zeros(4))):
        expected[2] += 1 - p[2] if compat else 1.0
        z = logits.clone().requires_grad_(True)
        from neuronscope.optim.objectives import _CompatLogProb
        import torch.nn.functional as F

        v = _CompatLogProb.apply(z, torch.tensor([2])) if compat else F.log_softmax(z, 1)[:, 2]
        (g,) = torch.autograd.grad(v.sum(), z)
        assert torch.allclose(g[0], expected, atol=1e-6)


def test_inpainting_keeps_the_unmasked_region_and_fits_the_context(tiny):
    model, gen = tiny
    img = torch.rand(3, 16, 16)
    mask = parse_mask("box:0.25,0.25,0.75,0.75", 16)
    res = inpaint(gen, model, img, mask, target="class:1", n=2, steps=30, progress=False, encoder=model)
    keep = (1 - res.mask).bool().expand(2, 3, 16, 16)
    assert (res.composites - img[None]).abs()[keep].max() < 1e-5
    assert torch.all(res.context_error_end < res.context_error_start)


def test_bad_targets_masks_and_variants_raise_clear_errors(tiny):
    model, gen = tiny
    with pytest.raises(NeuronscopeError, match="valid forms"):
        parse_unit(model, "ostrich")
    with pytest.raises(NeuronscopeError, match="valid:"):
        preset("ppgn-z")
    with pytest.raises(NeuronscopeError, match="box"):
        parse_mask("box:0.5,0.5,0.2,0.9", 16)
    with pytest.raises(NeuronscopeError, match="no layer"):
        parse_unit(model, "nope:3")


def test_generator_save_load_round_trip(tiny, tmp_path):
    _, tiny_gen = tiny
    net = ConvGenerator(code_channels=8, grid=1, image_size=16, base=16, widths=(8, 8))
    gen = Generator(net, tiny_gen.spec, tiny_gen.stats, dae=CodeDAE(8, 1, 16), meta={"image_size": 16})
    path = gen.save(tmp_path / "g.pt", half=False)
    g2 = Generator.load(path)
    h = gen.random_codes(2, seed=0)
    assert torch.allclose(gen(h), g2(h), atol=1e-6)
    assert g2.spec == gen.spec and torch.equal(g2.code_hi, gen.code_hi)
    with pytest.raises(NeuronscopeError, match="not a neuronscope generator"):
        (tmp_path / "junk.pt").write_bytes(b"junk")
        Generator.load(tmp_path / "junk.pt")


def test_training_checkpoints_and_resumes(lite0, sample_photos, tmp_path):
    from neuronscope.generators.train import TrainConfig, holdout_split, train_generator

    torch.set_num_threads(2)
    paths = list(sample_photos.values())
    cfg = TrainConfig(layer="head.act", grid=1, code_size=64, image_size=32, augs=2, batch=4, steps=2,
                      adv_from=1, dae_steps=5, holdout_fraction=0.0, ckpt_minutes=100)
    out = tmp_path / "run"
    train_generator(lite0, paths, out, cfg, progress=False)
    assert (out / "checkpoint.pt").exists() and (out / "generator.pt").exists()
    assert len(list((out / "samples").glob("*.png"))) == 1
    with pytest.raises(NeuronscopeError, match="--resume"):
        train_generator(lite0, paths, out, cfg, progress=False, resume=False)
    cfg.steps = 3
    g = train_generator(lite0, paths, out, cfg, progress=False)
    assert g.meta["step"] == 3
    events = [json.loads(l)["event"] for l in (out / "log.jsonl").read_text().splitlines() if "event" in l]
    assert "resumed" in events
    img = g(g.random_codes(2, seed=0))
    assert img.shape == (2, 3, 32, 32) and 0 <= float(img.min()) and float(img.max()) <= 1
    train, held = holdout_split(paths, 0.25)
    assert set(train).isdisjoint(held) and holdout_split(paths, 0.25) == (train, held)


def test_learning_rate_is_constant_then_decays_to_a_tenth(tmp_path):
    from neuronscope.generators.train import TrainConfig, Trainer

    t = Trainer.__new__(Trainer)
    t.cfg = TrainConfig(lr=1e-3, steps=100, lr_decay_fraction=0.3)
    t.elapsed = 0.0
    lrs = []
    for s in (0, 50, 70, 85, 100):
        t.step = s
        lrs.append(t.learning_rate())
    assert lrs[:3] == [1e-3, 1e-3, 1e-3]
    assert abs(lrs[3] - 1e-3 * (1 - 0.9 * 0.5)) < 1e-9 and abs(lrs[4] - 1e-4) < 1e-9


def test_cli_reports_a_missing_generator_file_without_traceback(tmp_path, capsys):
    from neuronscope.cli import main

    code = main(["dgn", "efficientnet_lite0", "class:9", "--generator", str(tmp_path / "none.pt"), "--out", str(tmp_path / "o")])
    assert code == 2
    assert "generator file not found" in capsys.readouterr().err


def test_shipped_lite0_generator_loads_with_its_record():
    from neuronscope.generators.shipped import load_shipped, shipped_info

    g = load_shipped()
    info = shipped_info()
    assert g.spec.model == "efficientnet_lite0" and g.code_dim == info["code"]["dim"] == 5120
    assert info["photos"]["manifest_sha256"] == g.meta["manifest_sha256"]
    assert set(info["photos"]["train"]).isdisjoint(info["photos"]["heldout"])
    img = g(g.random_codes(2, seed=0))
    assert img.shape == (2, 3, 64, 64) and float(img.std()) > 0.01
    assert g.dae is not None
