"""The render loop, parameterizations, transforms and the Yosinski 2015 operators."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from neuronscope.errors import NeuronscopeError
from neuronscope.optim import objectives as O
from neuronscope.optim import render
from neuronscope.optim.params import FFTParam, MacoParam, PixelParam
from neuronscope.optim.regularizers import DeepVisConfig, clip_small_contribution, clip_small_norm, step_size
from neuronscope.optim.spectrum import natural_magnitude
from neuronscope.optim.transforms import Jitter, RandomRotate, lucid_standard


def test_per_row_seeds_are_reproducible_regardless_of_batch():
    alone = FFTParam(1, (32, 32), [3])()
    batched = FFTParam(2, (32, 32), [1, 3])()
    assert torch.equal(alone[0], batched[1])
    assert not torch.equal(batched[0], batched[1])


@pytest.mark.parametrize("cls", [PixelParam, FFTParam])
def test_init_image_is_reproduced_by_the_parameterization(cls):
    init = torch.rand(2, 3, 32, 32) * 0.8 + 0.1
    p = cls(2, (32, 32), [0, 1], std=0.0, init=init)
    out = p()
    assert out.min() >= 0 and out.max() <= 1
    assert (out - init).abs().mean() < 0.02


def test_maco_keeps_its_natural_magnitude_spectrum():
    mag = natural_magnitude((32, 32))
    assert mag.shape == (3, 32, 17) and torch.isfinite(mag).all()
    low, high = mag[:, 1:3, 1:3].mean(), mag[:, 12:16, 12:16].mean()
    assert low > 5 * high  # photos have 1/f spectra, computed here from real photos
    p = MacoParam(2, (32, 32), [0, 1], mag)
    before = p.magnitude.clone()
    torch.optim.Adam(p.parameters(), lr=0.1).zero_grad()
    assert p.phase.requires_grad and not p.magnitude.requires_grad
    assert torch.equal(p.magnitude, before)
    x = p()
    assert x.shape == (2, 3, 32, 32) and 0 <= x.min() and x.max() <= 1


def test_lucid_standard_transforms_keep_rows_apart_and_sizes_in_range():
    t = lucid_standard()
    x = torch.rand(2, 3, 128, 128)
    sizes = set()
    for s in range(20):
        g = torch.Generator().manual_seed(s)
        y = t(x, g)
        sizes.add(y.shape[-1])
        x2 = x.clone()
        x2[1] = 0
        y2 = t(x2, torch.Generator().manual_seed(s))
        assert torch.equal(y[0], y2[0])  # changing row 1 never changes row 0
    assert min(sizes) >= 125 and max(sizes) <= 154


def test_per_row_jitter_and_rotation_draw_per_row():
    x = torch.rand(1, 3, 40, 40).expand(4, -1, -1, -1).contiguous()
    y = Jitter(8, per_row=True)(x, torch.Generator().manual_seed(0))
    assert y.shape == (4, 3, 32, 32)
    assert any(not torch.equal(y[0], y[i]) for i in range(1, 4))
    r = RandomRotate([0], per_row=True)(x, torch.Generator().manual_seed(0))
    assert torch.allclose(r, x, atol=1e-5)


def test_yosinski_operators_work_per_row():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 16, 16)
    g = torch.randn(2, 3, 16, 16)
    a = clip_small_norm(x, 50)
    frac_zero = (a.norm(dim=1) == 0).float().flatten(1).mean(1)
    assert torch.allclose(frac_zero, torch.tensor([0.5, 0.5]), atol=0.01)
    scaled = x.clone()
    scaled[1] *= 100  # another row's scale must not change this row's clipping or step
    assert torch.equal(clip_small_norm(scaled, 50)[0], a[0])
    assert torch.equal(clip_small_contribution(scaled, g, 90)[0], clip_small_contribution(x, g, 90)[0])
    cfg = DeepVisConfig(lr_policy="progress", lr=1e8, desired_progress=2.0)
    eta = step_size(g, cfg)
    assert torch.allclose(eta * g.flatten(1).pow(2).sum(1), torch.tensor([2.0, 2.0]))


def _best_photo_logit(lite0, photos_dir, k, size):
    from neuronscope.images import load_batch
    from neuronscope.data.photoset import list_photos

    files = [e["path"] for e in list_photos(photos_dir)]
    best = -float("inf")
    with torch.inference_mode():
        for i in range(0, len(files), 64):
            best = max(best, float(lite0(load_batch(files[i:i + 64], size)).max(0).values[k]))
    return best


@pytest.fixture(scope="module")
def best_jellyfish_photo_logit(lite0, photos_dir):
    return _best_photo_logit(lite0, photos_dir, 107, 64)


@pytest.mark.parametrize("preset,steps", [("lucid", 96), ("natural", 96), ("deepvis-1", 100), ("deepvis-2", 100),
                                          ("deepvis-3", 100), ("deepvis-4", 100)])
def test_presets_beat_the_best_offline_photo_on_a_class_logit(lite0, best_jellyfish_photo_logit, preset, steps):
    """Jellyfish (107): the bar is the best logit any of the 525 offline photos reaches, at the same 64 px."""
    best = best_jellyfish_photo_logit
    res = render(lite0, [O.class_logit(107)], size=64, steps=steps, preset=preset, progress=False)
    assert float(res.values[0]) > best, f"{preset}: {float(res.values[0]):.2f} <= best photo {best:.2f}"


def test_early_stop_freezes_rows_and_snapshots_are_kept(lite0):
    res = render(lite0, [O.channel("blocks.4", 0), O.channel("blocks.4", 1)], size=48, steps=30, preset="pixel",
                 target_value=float("inf"), thresholds=(0, 5), progress=False)
    assert set(res.snapshots) == {0, 5}
    stop_at = {}

    def cb(step, images, values):
        return step == 7

    res = render(lite0, [O.channel("blocks.4", 0)], size=48, steps=30, preset="pixel", callback=cb, progress=False)
    assert res.trace.shape[0] == 8
    first = render(lite0, [O.channel("blocks.4", 0), O.channel("blocks.4", 1)], size=48, steps=1,
                   preset="pixel", progress=False)
    target = float(first.trace[0, 0]) + 0.01  # row 0 reaches this almost at once
    res = render(lite0, [O.channel("blocks.4", 0), O.channel("blocks.4", 1)], size=48, steps=40, preset="pixel",
                 target_value=target, progress=False, thresholds=(39,))
    assert res.steps_run[0] < 40
    del stop_at


def test_post_step_operators_run_in_order_after_every_step_and_spare_frozen_rows(lite0):
    objs = [O.channel("blocks.4", 0), O.channel("blocks.4", 1)]
    start = render(lite0, objs, size=48, steps=1, preset="pixel", progress=False).trace[0]
    assert start[0] != start[1]
    high = int(np.argmax(start))
    calls = []

    def record(param, step, frozen):
        calls.append(("record", step, frozen.tolist()))

    def wipe(param, step, frozen):  # tries to flatten every row, the frozen one too
        calls.append(("wipe", step))
        for t in param.row_parameters():
            t.zero_()

    # the higher row reaches the target before its first step and is frozen from then on
    res = render(lite0, objs, size=48, steps=5, preset="pixel", target_value=float(start.mean()),
                 post_steps=[record, wipe], thresholds=(0,), progress=False)
    frozen = [i == high for i in range(2)]
    assert calls == [c for s in range(5) for c in (("record", s, frozen), ("wipe", s))]
    assert torch.equal(res.images[high], res.snapshots[0][high])  # untouched by the operators
    other = res.images[1 - high]
    assert torch.allclose(other, other[:, :1, :1].expand_as(other))  # wiped to one flat colour
    assert not torch.allclose(res.snapshots[0][1 - high], other)


def test_only_the_objective_layers_are_hooked_and_hooks_are_removed(lite0):
    seen = {}

    def cb(step, images, values):
        seen[step] = {n for n, m in lite0.net.named_modules() if m._forward_hooks}

    render(lite0, O.channel("blocks.4", 0) + O.class_logit(3), size=48, steps=2, preset="lucid", callback=cb,
           progress=False)
    assert seen[0] == {"blocks.4"}
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in lite0.modules())
    assert all(type(m).__name__ == "ReLU6" for n, m in lite0.net.named_modules() if n.endswith("act"))


def test_relu_redirection_gives_dead_rows_a_gradient(lite0):
    from neuronscope.gradient_overrides import rectifier_rules

    x = torch.zeros(1, 3, 48, 48, requires_grad=True)
    # a strongly negative input can leave a stem channel dead everywhere
    with rectifier_rules(lite0.net, "redirect") as n:
        out = lite0.net.stem(lite0.preprocess(x - 5.0))
        out[:, 0].sum().backward()
    assert n > 10
    assert x.grad.abs().sum() > 0


def test_bad_render_inputs_give_clear_errors(lite0):
    with pytest.raises(NeuronscopeError, match="channels 0..39"):
        render(lite0, [O.channel("blocks.4", 99)], size=32, steps=1, progress=False)
    with pytest.raises(NeuronscopeError, match="no layer"):
        render(lite0, [O.channel("blocks.44", 0)], size=32, steps=1, progress=False)
    with pytest.raises(NeuronscopeError, match="NaN"):
        render(lite0, [O.channel("blocks.4", 0)], init=torch.full((1, 3, 32, 32), float("nan")), size=32, steps=1,
               progress=False)
    with pytest.raises(NeuronscopeError, match="unknown preset"):
        render(lite0, [O.channel("blocks.4", 0)], preset="nope", size=32, steps=1, progress=False)


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "neuronscope", *args], capture_output=True, text=True, cwd=cwd)


def test_render_cli_writes_pngs_grid_manifest_and_refuses_to_overwrite(tmp_path):
    out = tmp_path / "OUT"
    r = _cli("render", "efficientnet_lite0", "class:ostrich", "class:jellyfish", "blocks.10:0-7",
             "--out", str(out), "--steps", "3", "--size", "48", "--quiet")
    assert r.returncode == 0, r.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    names = [u["name"] for u in manifest["units"]]
    assert names == ["class:9", "class:107"] + [f"blocks.10:{c}" for c in range(8)]
    assert manifest["units"][0]["label"] == "ostrich"
    for u in manifest["units"]:
        assert (out / u["file"]).exists() and np.isfinite(u["activation"])
    assert (out / "grid.png").exists() and (out / "index.html").exists()
    umask = os.umask(0)
    os.umask(umask)
    # created like any new folder and file, not private like temporary ones
    assert out.stat().st_mode & 0o777 == 0o777 & ~umask
    assert (out / "manifest.json").stat().st_mode & 0o777 == 0o666 & ~umask
    before = (out / "manifest.json").read_bytes()
    r = _cli("render", "efficientnet_lite0", "class:9", "--out", str(out), "--steps", "1", "--size", "32")
    assert r.returncode == 2 and "already exists" in " ".join(r.stderr.split()) and "Traceback" not in r.stderr
    assert (out / "manifest.json").read_bytes() == before


@pytest.mark.parametrize("target,expect", [("class:ostrch", "ostrich"), ("blocks.10:200", "channels 0..111"),
                                           ("blocks.99:1", "Closest valid names"), ("blocks.10:5@30,1", "outside")])
def test_render_cli_bad_targets_list_what_is_valid(tmp_path, target, expect):
    r = _cli("render", "efficientnet_lite0", target, "--out", str(tmp_path / "o"), "--steps", "1", "--size", "32")
    assert r.returncode == 2, r.stdout + r.stderr
    assert expect in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "o").exists()


def test_the_plan_holds_the_optimizer_and_criteria_and_a_criterion_can_freeze_rows(lite0):
    from neuronscope.optim.criteria import Criterion
    from neuronscope.optim.plan import plan_render
    from neuronscope.optim.regularizers import DeepVisAscent

    plan = plan_render(lite0, [O.class_logit(1)], preset="deepvis-2", size=32, steps=3, target_value=9.0)
    assert isinstance(plan.optimizer, DeepVisAscent)
    assert [type(c).__name__ for c in plan.criteria] == ["KeepBest", "TargetValue", "AllRowsDone",
                                                         "NoUpdateAfterLastStep"]
    assert [type(c).__name__ for c in plan_render(lite0, [O.class_logit(1)], preset="pixel", size=32).criteria] \
        == ["AllRowsDone"]

    class FreezeFirstRowAtStep2(Criterion):
        def observe(self, step, images, values, state):
            if step == 2:
                state.done[0] = True
                state.steps_run[0] = 2
            return False

    res = render(lite0, [O.channel("blocks.4", 0), O.channel("blocks.4", 1)], size=32, steps=6, preset="pixel",
                 criteria=[FreezeFirstRowAtStep2()], thresholds=(3,), progress=False)
    assert res.steps_run.tolist() == [2, 6] and res.trace.shape[0] == 6
    assert torch.equal(res.images[0], res.snapshots[3][0])  # no update reached row 0 after step 2
    assert not torch.equal(res.images[1], res.snapshots[3][1])


def test_render_takes_exactly_the_planned_settings_and_names_a_mistyped_one(lite0):
    """render's settings are plan_render's (one declaration); help() shows them; a typo is a TypeError with a hint."""
    import inspect

    from neuronscope.optim.plan import plan_render

    shown = inspect.signature(render).parameters
    assert list(shown) == list(inspect.signature(plan_render).parameters)
    assert {"steps", "preset", "seed", "engine", "prior", "device", "progress"} <= set(shown)
    assert shown["steps"].kind is inspect.Parameter.KEYWORD_ONLY and shown["progress"].default is True
    with pytest.raises(TypeError, match="unexpected keyword argument 'stpes'; did you mean: steps"):
        render(lite0, [O.class_logit(1)], stpes=3)
    with pytest.raises(TypeError, match="'zzz'; valid: .*batch, size, steps"):
        render(lite0, [O.class_logit(1)], zzz=1)
    plan = plan_render(lite0, [O.class_logit(1)], size=32, steps=2, progress=False, description="x")
    assert (plan.progress, plan.description) == (False, "x")


def test_a_render_without_an_engine_computes_in_its_presets_precision(lite0):
    from neuronscope.optim.engine.fast_copy import native_bf16
    from neuronscope.optim.plan import plan_render
    from neuronscope.optim.presets import get_preset

    kw = dict(size=64, steps=512)  # enough work for the fast copy (fast_copy.AUTO_MIN_WORK)
    dtypes = {name: [s.describe()["dtype"] for s in plan_render(lite0, [O.class_logit(1)], preset=name, **kw).stages]
              for name in ("natural", "lucid")}
    assert get_preset("natural").precision == "auto" and get_preset("lucid").precision == "mixed"
    bf16 = native_bf16("cpu")
    assert dtypes["natural"] == (["bfloat16"] if bf16 else ["float32"])
    assert dtypes["lucid"] == (["bfloat16", "float32"] if bf16 else ["float32"])
    # an engine the caller names wins over the preset's precision
    named = plan_render(lite0, [O.class_logit(1)], preset="natural", engine="mixed", **kw).stages
    assert [s.describe()["dtype"] for s in named] == dtypes["lucid"]


def test_the_priors_denoiser_computes_in_what_the_render_decides(lite0):
    """A render too small for the fast copy runs the model as given, in float32, and its prior step too;
    one large enough for the copy gives the denoiser the preset's precision."""
    from neuronscope.optim.engine.fast_copy import native_bf16
    from neuronscope.optim.plan import plan_render

    def denoiser_dtype(**kw):
        plan = plan_render(lite0, [O.class_logit(1)], preset="natural", **kw)
        (prior,) = [op for op in plan.post_steps if type(op).__name__ == "DenoisingPrior"]
        return prior._dtype, [s.describe()["dtype"] for s in plan.stages]

    small, small_stages = denoiser_dtype(size=32, steps=8)  # below fast_copy.AUTO_MIN_WORK
    assert small_stages == ["float32"] and small == torch.float32
    large, large_stages = denoiser_dtype(size=64, steps=512)
    assert large == (torch.bfloat16 if native_bf16("cpu") else torch.float32)
    assert large_stages == [str(large).removeprefix("torch.")]
