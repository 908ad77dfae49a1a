"""The learned natural-image prior: the shipped denoiser, the step on the image, training and its CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from neuronscope.cli import main
from neuronscope.errors import NeuronscopeError
from neuronscope.images import center_crop_resize, list_images, load_image, pil_to_tensor
from neuronscope.optim import objectives as O
from neuronscope.optim import render
from neuronscope.optim.params import make_param
from neuronscope.priors import DenoisingPrior, load_denoiser
from neuronscope.optim.engine import Engine
from neuronscope.priors.metrics import colourfulness, contrast, hf_share, kid
from neuronscope.priors.step import restore_contrast
from neuronscope.priors.train import PriorTrainConfig, is_held_out, psnr, train_prior


@pytest.fixture(scope="module")
def held_out_photos(photos_dir):
    files = [f for f in list_images(Path(photos_dir) / "images") if is_held_out(f.name)][:16]
    assert len(files) >= 8, "the offline photo set holds too few held-out photos"
    return torch.stack([pil_to_tensor(center_crop_resize(load_image(f), 96, 1.0)) for f in files])


@pytest.mark.parametrize("sigma", [0.02, 0.05, 0.1, 0.2, 0.3])
def test_shipped_denoiser_raises_psnr_on_held_out_photos(held_out_photos, sigma):
    den = load_denoiser()
    g = torch.Generator().manual_seed(1)
    noisy = held_out_photos + sigma * torch.randn(held_out_photos.shape, generator=g)
    with torch.no_grad():
        clean = den(noisy, sigma).clamp(0, 1)
    before = psnr(noisy.clamp(0, 1), held_out_photos).mean()
    after = psnr(clean, held_out_photos).mean()
    assert after > before + 0.5, f"sigma {sigma}: {before:.2f} -> {after:.2f} dB"


def test_shipped_denoiser_records_its_provenance():
    meta = load_denoiser().meta
    assert len(meta["data_sha256"]) == 64 and meta["step"] == meta["config"]["steps"]


@pytest.mark.parametrize("kind", ["pixel", "fft", "caffe"])
def test_assign_sets_the_image_of_the_chosen_rows_only(kind):
    p = make_param(kind, 2, 48, [0, 1])
    before = p().detach()
    want = torch.rand(2, 3, 48, 48) * 0.9 + 0.05
    p.assign(want, torch.tensor([True, False]))
    after = p().detach()
    assert torch.allclose(after[0], want[0], atol=1e-4)
    assert torch.equal(after[1], before[1])


def test_assign_keeps_maco_magnitude_and_moves_toward_the_image():
    p = make_param("maco", 1, 48, [0])
    want = torch.rand(1, 3, 48, 48)
    err0 = (p().detach() - want).abs().mean()
    p.assign(want)
    assert (p().detach() - want).abs().mean() < err0
    assert p.phase.shape == (1, 3, 48, 25)


def test_prior_step_leaves_frozen_rows_alone():
    p = make_param("fft", 2, 32, [0, 1])
    before = p().detach()
    prior = DenoisingPrior(weight=0.5).start(10, "cpu")
    prior(p, 0, torch.tensor([False, True]))
    after = p().detach()
    assert not torch.allclose(after[0], before[0])
    assert torch.equal(after[1], before[1])


def test_prior_weight_must_be_a_share():
    for bad in (0.0, -0.1, 1.5, float("nan")):
        with pytest.raises(ValueError):
            DenoisingPrior(weight=bad)


def test_hf_share_orders_blur_photo_and_noise(held_out_photos):
    photo = held_out_photos[:4]
    blurred = torch.nn.functional.avg_pool2d(photo, 9, 1, 4, count_include_pad=False)
    noise = torch.rand(4, 3, 96, 96)
    assert (hf_share(blurred) < hf_share(photo)).all() and (hf_share(photo) < hf_share(noise)).all()


def test_contrast_and_colourfulness_are_zero_for_grey_and_fall_when_a_photo_is_washed_out(held_out_photos):
    photo = held_out_photos[:4]
    grey = photo.mean(dim=1, keepdim=True).expand_as(photo)
    washed = 0.5 + 0.4 * (photo - 0.5)
    assert torch.allclose(colourfulness(grey), torch.zeros(4), atol=1e-3)
    assert (contrast(washed) < contrast(photo)).all() and (colourfulness(washed) < colourfulness(photo)).all()
    assert torch.allclose(contrast(torch.full((1, 3, 8, 8), 0.3)), torch.zeros(1), atol=1e-6)


def test_restore_contrast_gives_back_each_rows_opponent_colour_statistics(held_out_photos):
    before = held_out_photos[:3]
    after = torch.nn.functional.avg_pool2d(0.5 + 0.3 * (before - 0.5), 5, 1, 2, count_include_pad=False)
    fixed = restore_contrast(before, after)
    assert torch.allclose(fixed.mean(dim=(-1, -2)), before.mean(dim=(-1, -2)), atol=1e-4)
    assert torch.allclose(contrast(fixed), contrast(before), rtol=1e-3)
    assert torch.allclose(colourfulness(fixed), colourfulness(before), rtol=1e-3)
    # the structure is the blurred one: less fine detail than before
    assert (hf_share(fixed) < hf_share(before)).all()


def test_prior_step_keeps_a_photos_contrast_where_the_plain_step_washes_it_out(held_out_photos):
    x = held_out_photos[:4]
    keep = DenoisingPrior(weight=1.0, sigma=(0.1, 0.1)).start(1, "cpu", torch.float32)
    free = DenoisingPrior(weight=1.0, sigma=(0.1, 0.1), keep_contrast=False).start(1, "cpu", torch.float32)
    k, f = keep.apply(x, 0), free.apply(x, 0)
    assert (contrast(f) < contrast(x) * 0.995).all(), (contrast(f), contrast(x))
    assert torch.allclose(contrast(k), contrast(x), rtol=0.02)  # up to the clamp to [0, 1]
    assert (colourfulness(k) > colourfulness(f)).all()


def test_prior_computes_in_the_engines_precision(held_out_photos):
    assert Engine.parse("float32").prior_dtype("cpu") == torch.float32
    assert Engine.parse("plain").prior_dtype("cpu") == torch.float32
    x = held_out_photos[:4] + 0.05 * torch.randn(held_out_photos[:4].shape, generator=torch.Generator().manual_seed(0))
    x = x.clamp(0, 1)
    f32 = DenoisingPrior(weight=1.0, sigma=(0.05, 0.05)).start(1, "cpu", torch.float32)
    b16 = DenoisingPrior(weight=1.0, sigma=(0.05, 0.05)).start(1, "cpu", torch.bfloat16)
    d32, d16 = f32.apply(x, 0) - x, b16.apply(x, 0) - x
    assert d16.dtype == torch.float32
    # the bfloat16 step is the float32 one up to rounding: within a few percent of its size
    assert (d16 - d32).norm() < 0.05 * d32.norm(), ((d16 - d32).norm(), d32.norm())


def test_kid_is_near_zero_for_one_distribution_and_large_for_two():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(200, 16)), rng.normal(size=(200, 16))
    same, _ = kid(a, b, subsets=20, subset_size=100)
    shifted, _ = kid(a, b + 1.0, subsets=20, subset_size=100)
    assert abs(same) < 0.02 and shifted > 0.1


def test_render_with_prior_has_photo_like_detail_and_still_beats_the_best_photo(lite0, photos_dir):
    """lucid alone (128 steps) leaves more fine detail than 9 photos in 10 have; the natural preset at its
    defaults brings it into the photos' middle half (their 25th-75th percentile of HF share), the class logit still ends above the best
    real photo's, and no more pixels saturate than in photos."""
    k = 107  # jellyfish
    files = list_images(Path(photos_dir) / "images")[::4]
    photos = torch.stack([pil_to_tensor(center_crop_resize(load_image(f), 224, 0.875)) for f in files])
    with torch.no_grad():
        best_photo = lite0(photos)[:, k].max().item()
    photo_hf = hf_share(photos)
    q25, q75, q90 = (torch.quantile(photo_hf, q).item() for q in (0.25, 0.75, 0.9))
    photo_sat = ((photos <= 0) | (photos >= 1)).float().mean(dim=(1, 2, 3)).median().item()
    kw = dict(size=224, seed=0, progress=False)
    plain = render(lite0, [O.class_logit(k)], preset="lucid", prior=False, steps=128, **kw)
    natural = render(lite0, [O.class_logit(k)], preset="natural", **kw)  # the preset's own steps
    hf_plain, hf_natural = hf_share(plain.images).item(), hf_share(natural.images).item()
    assert hf_plain > q90, (hf_plain, q90)
    assert q25 <= hf_natural <= q75, (hf_natural, q25, q75)
    assert natural.values.item() > best_photo, (natural.values.item(), best_photo)
    sat = ((natural.images <= 1 / 255) | (natural.images >= 254 / 255)).float().mean().item()
    assert sat <= max(photo_sat, 0.01), (sat, photo_sat)


def _tiny_folder(tmp_path, n=6):
    rng = np.random.default_rng(0)
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(n):
        a = (rng.random((40, 48, 3)) * 255).astype(np.uint8)
        Image.fromarray(a).save(folder / f"p{i}.png")
    return folder


def test_train_prior_resumes_where_it_stopped(tmp_path):
    folder = _tiny_folder(tmp_path)
    cfg = PriorTrainConfig(steps=4, batch=2, patch=16, width=8, depth=3)
    out = tmp_path / "run"
    train_prior([folder], out, cfg, hours=0.0, progress=False)  # stops at once: a checkpoint at step 0
    assert json.loads((out / "log.json").read_text()) == []
    path = train_prior([folder], out, cfg, resume=True, progress=False)
    assert load_denoiser(path).meta["step"] == 4
    with pytest.raises(NeuronscopeError, match="--resume"):
        train_prior([folder], out, cfg, progress=False)
    with pytest.raises(NeuronscopeError, match="settings differ"):
        train_prior([folder], out, PriorTrainConfig(steps=8, batch=2, patch=16, width=8, depth=3), resume=True,
                    progress=False)


def test_train_prior_cli(tmp_path, capsys):
    folder = _tiny_folder(tmp_path)
    out = tmp_path / "run"
    argv = ["train-prior", "--images", str(folder), "--out", str(out), "--steps", "2", "--batch", "2", "--patch", "16",
            "--width", "8", "--depth", "3", "--no-progress"]
    assert main(argv) == 0
    assert (out / "denoiser.pt").is_file()
    assert main(argv) == 2  # an existing run is never overwritten
    assert "already holds a training run" in " ".join(capsys.readouterr().err.split())
    assert main(["train-prior", "--images", str(tmp_path / "none"), "--out", str(tmp_path / "r2")]) == 2


def test_the_natural_presets_prior_is_denoising_priors_defaults():
    from neuronscope.optim.presets import NATURAL_PRIOR, get_preset

    assert get_preset("natural").prior == NATURAL_PRIOR
    defaults = DenoisingPrior().describe()
    assert {k: defaults[k] for k in NATURAL_PRIOR} == {k: list(v) if isinstance(v, tuple) else v
                                                       for k, v in NATURAL_PRIOR.items()}


def test_contrast_floor_lifts_a_flat_row_a_little_per_step_up_to_the_floor_and_leaves_others(held_out_photos):
    from neuronscope.priors.step import FLOOR_RATE

    photo = held_out_photos[:1]
    flat = 0.5 + 0.25 * (photo - photo.mean())  # the same picture at a quarter of its contrast
    rows = torch.cat([flat, photo])
    floor = float(contrast(photo)[0]) * 0.9
    assert float(contrast(flat)[0]) < floor < float(contrast(photo)[0])
    out = restore_contrast(rows, rows, floor)
    gain = contrast(out) / contrast(rows)
    assert abs(float(gain[0]) - FLOOR_RATE) < 1e-3  # at most FLOOR_RATE per step
    assert abs(float(gain[1]) - 1.0) < 1e-4  # a row above the floor keeps its own contrast
    x = rows
    for _ in range(60):
        x = restore_contrast(x, x, floor)
    assert abs(float(contrast(x)[0]) - floor) < 1e-3  # reaches the floor and stops there
    assert torch.allclose(x.mean(dim=(-1, -2)), rows.mean(dim=(-1, -2)), atol=1e-4)  # mean colour kept


def test_the_render_ends_on_a_prior_step_at_the_final_noise_level(held_out_photos):
    """After the last optimizer step the prior takes one more step at final_sigma: on a noisy photo it
    removes fine-scale noise (lower HF share, closer to the clean photo); without final_sigma that
    step (not one of every 4th) leaves the image alone."""
    photo = held_out_photos[:4].clamp(0.02, 0.98)
    g = torch.Generator().manual_seed(3)
    noisy = (photo + 0.04 * torch.randn(photo.shape, generator=g)).clamp(0.02, 0.98)
    steps, last = 11, 10  # neither 10 nor 9 is a multiple of every=4: only the final step makes 10 active
    outs = {}
    for final in (0.05, None):
        p = make_param("pixel", 4, photo.shape[-1], [0, 1, 2, 3])
        p.assign(noisy)
        prior = DenoisingPrior(final_sigma=final).start(steps, "cpu", torch.float32)
        assert prior.active(last) == (final is not None) and not prior.active(last - 1)
        prior(p, last)
        outs[final] = p().detach()
    assert torch.allclose(outs[None], noisy, atol=1e-4)
    assert float(hf_share(outs[0.05]).mean()) < 0.9 * float(hf_share(noisy).mean())
    assert float(psnr(outs[0.05], photo).mean()) > float(psnr(noisy, photo).mean()) + 1.0


def test_final_sigma_must_be_a_noise_level():
    for bad in (0.0, -0.05, float("nan"), float("inf"), "soft", [0.05]):
        with pytest.raises(ValueError, match="final_sigma"):
            DenoisingPrior(final_sigma=bad)
    from neuronscope.priors import as_prior

    with pytest.raises(NeuronscopeError, match="final_sigma"):
        as_prior({"final_sigma": -1})
