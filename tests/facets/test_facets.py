"""Multifaceted feature visualization: discovery, rendering, ranking, sheets, the facets verb."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from neuronscope import NeuronscopeError, load_model
from neuronscope.facets import (
    choose_k, cluster, collect_examples, discover_facets, diverse_facets, labels_from_manifest, parse_unit, purity,
    render_facets, render_mfv, unit_values, write_facet_sheet,
)
from neuronscope.facets.pipeline import rank_and_dedup

SIZE = 48

# ------------------------------------------------------------------ a net with a two-faced unit


def two_faced_net() -> nn.Module:
    """Conv features -> pooled -> 10 logits. Class 0 fires for red horizontal stripes (feature 0)
    *and* for blue vertical stripes (feature 1); classes 1-5 have a constant bias so that other
    images do not rank class 0 in their top-5. Channel 0 of module '2' is the same two-faced unit
    before pooling."""
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 6, 5)  # no padding: image borders are not edges
    mix = nn.Conv2d(6, 6, 1)
    fc = nn.Linear(6, 10)
    with torch.no_grad():
        conv.weight.normal_(0, 0.02)
        conv.bias.zero_()
        edge = torch.tensor([-1.0, -1.0, 0.0, 1.0, 1.0])
        conv.weight[0] = 0
        conv.weight[0, 0] = edge[:, None].expand(5, 5) / 5  # red, changes down the rows: horizontal stripes
        conv.weight[1] = 0
        conv.weight[1, 2] = edge[None, :].expand(5, 5) / 5  # blue, changes along the columns: vertical stripes
        mix.weight.zero_()
        mix.bias.zero_()
        for c in range(6):
            mix.weight[c, c] = 1.0
        mix.weight[0, 1] = 1.0  # channel 0 = feature 0 + feature 1
        fc.weight.zero_()
        fc.weight[0, 0] = fc.weight[0, 1] = 4.0
        fc.weight[6:, 2:].normal_(0, 0.5)
        fc.bias.zero_()
        fc.bias[1:6] = 1.0
        fc.bias[6:] = -5.0
    return nn.Sequential(conv, nn.ReLU(), mix, nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), fc)


@pytest.fixture(scope="module")
def tiny():
    labels = ["two-faced", *[f"other {i}" for i in range(1, 10)]]
    return load_model(two_faced_net(), preprocess="none", input_size=SIZE, labels=labels, name="two-faced")


def _stripes(rng, horizontal: bool, colour: int) -> np.ndarray:
    """Stripes of period 8 whose phase, contrast and background vary a little from image to image."""
    period = 8
    phase = rng.uniform(-0.6, 0.6)
    t = np.arange(SIZE)
    wave = 0.5 + 0.5 * np.sin(2 * np.pi * t / period + phase)
    a = rng.uniform(0.2, 0.4, (SIZE, SIZE, 3))
    band = wave[:, None] if horizontal else wave[None, :]
    a[..., colour] = rng.uniform(0.1, 0.2) + rng.uniform(0.6, 0.8) * band
    return a


@pytest.fixture(scope="module")
def pattern_folder(tmp_path_factory):
    """30 red-horizontal, 30 blue-vertical and 20 green-blob images; the families by file name."""
    d = tmp_path_factory.mktemp("patterns")
    rng = np.random.default_rng(1)
    for i in range(30):
        Image.fromarray((_stripes(rng, True, 0) * 255).astype(np.uint8)).save(d / f"a_{i:02d}.png")
        Image.fromarray((_stripes(rng, False, 2) * 255).astype(np.uint8)).save(d / f"b_{i:02d}.png")
    for i in range(20):
        a = rng.uniform(0.2, 0.4, (SIZE, SIZE, 3))
        y, x = rng.integers(8, SIZE - 8, 2)
        a[y - 6 : y + 6, x - 6 : x + 6, 1] = 0.9
        Image.fromarray((a * 255).astype(np.uint8)).save(d / f"c_{i:02d}.png")
    return d


def _family(examples) -> np.ndarray:
    return np.array(["abc".index(Path(examples.paths[p]).name[0]) for p in examples.photo])


# ------------------------------------------------------------------ discovery


def test_class_facet_discovery_separates_two_planted_pattern_families(tiny, pattern_folder):
    unit = parse_unit(tiny, "class:two-faced")
    facets, ex, cl = discover_facets(tiny, unit, pattern_folder, views=2, reduce="tsne", size=SIZE, progress=False)
    fam = _family(ex)
    # the class's images are the two stripe families; the green blobs never rank class 0 in the top-5
    assert set(fam.tolist()) == {0, 1}
    assert len(ex) == 120
    assert cl.k == 2, cl.k_rule  # k chosen by the silhouette criterion
    assert purity(cl.labels, fam) >= 0.9
    # each facet's mean image is made of its own family: more red or more blue
    for f in facets:
        m = f.mean_image
        major = np.bincount(fam[f.members]).argmax()
        assert (m[0].mean() > m[2].mean()) == (major == 0)
        assert len(f.nearest) == 15 and f.size == len(f.members)


def test_a_class_scan_makes_more_views_only_of_photos_whose_crop_ranks_the_class_or_that_are_labelled(
        tiny, pattern_folder, monkeypatch):
    import neuronscope.facets.examples as examples

    unit = parse_unit(tiny, "class:two-faced")
    blobs = sorted(str(p.resolve()) for p in pattern_folder.glob("c_*.png"))[:3]
    labels = {p: 0 for p in blobs}  # three green blobs labelled with the class, which never ranks high on them
    ex = collect_examples(tiny, unit, pattern_folder, views=3, labels=labels, size=SIZE, progress=False)
    assert len(ex) == 60 * 3 + 3 * 3  # every view of the stripes (the class ranks first) and of the labelled blobs
    monkeypatch.setattr(examples, "CANDIDATE_RANK", 0)  # no crop qualifies by rank: only labelled photos get more views
    ex = collect_examples(tiny, unit, pattern_folder, views=3, labels=labels, size=SIZE, progress=False)
    fam = _family(ex)
    assert len(ex) == 60 + 3 * 3 and set(ex.view[fam < 2].tolist()) == {0}
    assert sorted(ex.view[fam == 2].tolist()) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert "more views only of the 3 images" in ex.how


def test_hidden_unit_facets_with_pca_come_from_receptive_field_crops(tiny, pattern_folder):
    unit = parse_unit(tiny, "2:0")
    assert unit.kind == "channel"
    facets, ex, cl = discover_facets(tiny, unit, pattern_folder, k=2, reduce="pca", views=1, n_max=60, size=SIZE,
                                     progress=False)
    fam = _family(ex)
    assert len(ex) == 60 and set(fam.tolist()) == {0, 1}  # top-60 by spatial max: only stripes
    assert purity(cl.labels, fam) >= 0.9
    # values reported are the unit's objective (channel mean) on the crops
    assert np.allclose(ex.values, unit_values(tiny, unit, ex.float()), atol=1e-5)


def test_choose_k_finds_three_blobs_and_one_for_structureless_data():
    rng = np.random.default_rng(0)
    blobs = np.concatenate([rng.normal(c, 0.3, (40, 2)) for c in ((0, 0), (6, 0), (0, 6))])
    k, scores, rule = choose_k(blobs)
    assert k == 3 and max(scores, key=scores.get) == 3 and "silhouette" in rule
    k1, _, rule1 = choose_k(rng.uniform(0, 1, (200, 2)))
    assert k1 == 1 or max(_.values()) < 0.5
    assert choose_k(blobs[:20])[0] == 1  # fewer than 30 examples: one facet
    k2, scores2, rule2 = choose_k(blobs, most=2)  # a cap (the command line's --max-k) limits the k tried
    assert k2 == 2 and sorted(scores2) == [2] and "at most 2" in rule2
    assert choose_k(blobs, most=1)[0] == 1 and cluster(blobs, method="pca", dims=2, max_k=2).k == 2
    c = cluster(blobs, 3, method="pca", dims=2)
    assert purity(c.labels, np.repeat([0, 1, 2], 40)) == 1.0


# ------------------------------------------------------------------ rendering


def test_rendered_facets_activate_the_unit_beyond_their_mean_images(tiny, pattern_folder):
    unit = parse_unit(tiny, "class:two-faced")
    facets, ex, cl = discover_facets(tiny, unit, pattern_folder, k=2, views=1, size=SIZE, progress=False)
    render_facets(tiny, unit, facets, iter_scale=0.15, preset="lucid", preset_steps=40, size=SIZE, progress=False)
    grey = unit_values(tiny, unit, torch.full((1, 3, SIZE, SIZE), 0.5))[0]
    for f in facets:
        assert f.image is not None and f.image.shape[-1] > SIZE  # the canvas grew (x1.2)
        assert f.value > f.mean_value > grey
        assert f.value >= f.best_real, (f.value, f.best_real)
        assert f.preset_value > grey
    kept, dropped = rank_and_dedup(tiny, facets)
    assert [f.size for f in kept] == sorted((f.size for f in kept), reverse=True)
    assert len(kept) + len(dropped) == 2


def test_center_biased_schedule_from_grey_raises_the_class(tiny):
    unit = parse_unit(tiny, "class:0")
    res = render_mfv(tiny, unit, None, batch=2, schedule="center", size=SIZE, iter_scale=0.1, progress=False)
    assert res.images.shape == (2, 3, round(round(SIZE * 1.2) * 1.2), round(round(SIZE * 1.2) * 1.2))
    assert (res.values > res.init_values + 1.0).all()
    assert not torch.equal(res.images[0], res.images[1])  # rows have their own crops and noise
    with pytest.raises(NeuronscopeError, match="mean images"):
        render_mfv(tiny, unit, None, schedule="mean")


def test_refinement_repeats_the_last_octave_only_for_rows_below_their_target(tiny, pattern_folder):
    unit = parse_unit(tiny, "class:two-faced")
    facets, ex, cl = discover_facets(tiny, unit, pattern_folder, k=2, views=1, size=SIZE, progress=False)
    init = torch.stack([f.mean_image for f in facets])
    plain = render_mfv(tiny, unit, init, size=SIZE, iter_scale=0.05, progress=False)
    assert plain.meta["refine_iterations"] == [0, 0] and plain.meta["refine_budget"] is None
    n_last = max(1, round(10 * 0.05))  # the mean schedule's last octave, scaled
    # row 0 already meets its target; row 1 must gain 1 logit over what the schedule reached
    targets = [plain.values[0] - 1.0, plain.values[1] + 1.0]
    res = render_mfv(tiny, unit, init, size=SIZE, iter_scale=0.05, targets=targets, progress=False)
    extra = res.meta["refine_iterations"]
    assert extra[0] == 0 and torch.equal(res.images[0], plain.images[0])  # untouched
    assert 0 < extra[1] <= res.meta["refine_budget"] == res.meta["iterations"] and extra[1] % n_last == 0
    assert res.values[1] >= targets[1]
    # no budget: nothing extra runs, and the row stays honestly below its target
    none = render_mfv(tiny, unit, init, size=SIZE, iter_scale=0.05, targets=targets, refine_budget=0, progress=False)
    assert none.meta["refine_iterations"] == [0, 0] and none.values[1] < targets[1]
    with pytest.raises(NeuronscopeError, match="one value per row"):
        render_mfv(tiny, unit, init, size=SIZE, iter_scale=0.05, targets=[1.0], progress=False)


def test_a_pale_mean_image_comes_out_of_the_schedule_with_photo_contrast_and_colour_and_a_higher_unit(
        tiny, pattern_folder):
    from neuronscope.facets.colour import PHOTO_COLOURFULNESS, PHOTO_CONTRAST
    from neuronscope.priors.metrics import colourfulness, contrast

    unit = parse_unit(tiny, "class:two-faced")
    photos = torch.stack([torch.from_numpy(np.array(Image.open(pattern_folder / f))).permute(2, 0, 1).float() / 255
                          for f in ("a_00.png", "b_00.png", "c_00.png", "a_01.png")])
    means = torch.stack([photos[:3].mean(0), photos[1:].mean(0)])  # mean images of mixed views
    pale = 0.7 + 0.25 * (means - means.mean(dim=(1, 2, 3), keepdim=True))  # washed out, as a mean of many views is
    assert (contrast(pale) < 0.3 * PHOTO_CONTRAST).all()
    start = unit_values(tiny, unit, pale)
    kw = dict(size=SIZE, iter_scale=0.02, progress=False)
    plain = render_mfv(tiny, unit, pale, **kw)  # as published: stays pale
    assert plain.meta["colour"] is None and (contrast(plain.images) < 0.5 * PHOTO_CONTRAST).all()
    res = render_mfv(tiny, unit, pale, colour="photo", **kw)
    assert res.meta["colour"] == "photo"
    assert (contrast(res.images) > 0.7 * PHOTO_CONTRAST).all(), contrast(res.images)
    assert (colourfulness(res.images) > 0.7 * PHOTO_COLOURFULNESS).all(), colourfulness(res.images)
    assert (res.values > start + 1.0).all() and (res.values > res.init_values).all()
    with pytest.raises(NeuronscopeError, match="valid: None, photo"):
        render_mfv(tiny, unit, pale, colour="vivid", **kw)


def test_cosine_objective_is_the_centred_cosine_of_pooled_features():
    from neuronscope.optim import objectives as O

    a = torch.randn(3, 4, 5, 5)
    v, c = torch.randn(4), torch.randn(4)
    got = O.cosine("x", v, c)({"x": a}, torch.zeros(3, 3, 8, 8))
    pooled = a.mean(dim=(2, 3)) - c
    want = torch.nn.functional.cosine_similarity(pooled, (v - c)[None], dim=1)
    assert torch.allclose(got, want, atol=1e-6) and got.abs().max() <= 1
    assert torch.allclose(O.cosine("x", v)({"x": a}, torch.zeros(3, 3, 8, 8)), torch.nn.functional.cosine_similarity(a.mean(dim=(2, 3)), v[None]))
    with pytest.raises(NeuronscopeError, match="non-zero"):
        O.cosine("x", c, c)
    with pytest.raises(NeuronscopeError, match="has 6 channels"):
        O.cosine("x", v).check({"x": (6, 5, 5)}, 1)


def test_cluster_anchor_keeps_each_preset_render_nearer_its_own_cluster(tiny, pattern_folder):
    from neuronscope.facets.embed import embed, embed_address

    assert embed_address(tiny) == "5"  # the Flatten feeding the classifier
    unit = parse_unit(tiny, "class:two-faced")
    facets, ex, cl = discover_facets(tiny, unit, pattern_folder, k=2, views=1, size=SIZE, progress=False)
    sizes = np.array([f.size for f in facets], float)
    centre = (np.stack([f.centroid for f in facets]) * sizes[:, None]).sum(0) / sizes.sum()
    own = []
    for anchor in (0.0, 10.0):
        ran = render_facets(tiny, unit, facets, iter_scale=0.02, preset="lucid", preset_steps=40, size=SIZE,
                            anchor=anchor, refine=False, progress=False)
        assert ran["anchor"] == anchor and (ran["anchor_layer"] is None) == (anchor == 0)
        assert all(f.anchored == (anchor > 0) for f in facets)
        e = embed(tiny, torch.stack([f.preset_image for f in facets])) - centre
        d = np.stack([f.centroid for f in facets]) - centre
        cos = (e * d).sum(1) / (np.linalg.norm(e, axis=1) * np.linalg.norm(d, axis=1) + 1e-9)
        own.append(cos)
    # anchored: every render on its own side of the examples' mean, and further than without the anchor
    assert (own[1] > own[0]).all() and (own[1] > 0.25).all(), own
    with pytest.raises(NeuronscopeError, match="anchor weight"):
        render_facets(tiny, unit, facets, anchor=-1.0, progress=False)


def test_duplicate_facets_are_dropped_and_remember_the_kept_one(tiny, pattern_folder):
    unit = parse_unit(tiny, "class:0")
    facets, ex, cl = discover_facets(tiny, unit, pattern_folder, k=3, views=1, size=SIZE, progress=False)
    for f in facets:
        f.image = facets[0].mean_image.clone()  # three identical renders
        f.value = 1.0
    kept, dropped = rank_and_dedup(tiny, facets)
    assert len(kept) == 1 and len(dropped) == 2
    assert all(d.duplicate_of == 0 for d in dropped)


def test_diversity_mode_gives_k_different_images_that_activate_the_unit(tiny):
    unit = parse_unit(tiny, "class:0")
    res = diverse_facets(tiny, unit, k=3, size=SIZE, steps=40, progress=False)
    assert res.meta["diversity_layer"] == "2"  # the last convolution with space
    grey = unit_values(tiny, unit, torch.full((1, 3, SIZE, SIZE), 0.5))[0]
    imgs = torch.stack([f.image for f in res.facets])
    assert all(f.value > grey for f in res.facets)
    d = (imgs[:, None] - imgs[None]).abs().mean(dim=(2, 3, 4))
    assert (d[~torch.eye(3, dtype=torch.bool)] > 0.02).all()


# ------------------------------------------------------------------ sheets and the verb


def test_facet_sheet_shows_renders_beside_their_clusters(tiny, pattern_folder, tmp_path):
    from neuronscope.facets import multifaceted

    unit = parse_unit(tiny, "class:0")
    res = multifaceted(tiny, unit, pattern_folder, k=2, views=1, iter_scale=0.05, preset="lucid", preset_steps=10,
                       size=SIZE, progress=False)
    page, png = write_facet_sheet(res, tmp_path / "sheet")
    html = page.read_text()
    for f in res.facets:
        assert f"{f.size} views" in html and f"activation {f.value:.2f}" in html
    assert html.count("<figure>") >= 2 * (3 + 15)
    im = Image.open(png)
    assert im.size[0] > 500 and im.size[1] > 2 * 160


def test_labels_from_manifest_reads_the_photo_set_format(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "manifest.json").write_text(json.dumps([
        {"file": "images/a.jpg", "imagenet_class": 1}, {"file": "images/b.jpg", "imagenet_class": None}]))
    labels = labels_from_manifest(tmp_path / "images")
    assert labels == {str((tmp_path / "images" / "a.jpg").resolve()): 1}
    assert labels_from_manifest(tmp_path / "images" / "nowhere") == {}  # no manifest in it or its parent
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "manifest.json").write_text("{not json")
    with pytest.raises(NeuronscopeError, match="cannot read"):
        labels_from_manifest(tmp_path / "bad")


def test_unit_parsing_names_what_is_valid(tiny, lite0):
    assert parse_unit(lite0, "class:goldfish").index == 1
    assert parse_unit(lite0, "blocks.10:5").kind == "channel"
    assert parse_unit(lite0, "blocks.10:5@3,4").kind == "neuron"
    with pytest.raises(NeuronscopeError, match="channels 0..111"):
        parse_unit(lite0, "blocks.10:500")
    with pytest.raises(NeuronscopeError, match="did you mean: goldfish"):
        parse_unit(lite0, "class:goldfisch")
    with pytest.raises(NeuronscopeError, match="class:NAME"):
        parse_unit(lite0, "goldfish")


def test_facets_cli_on_lite0_writes_a_sheet_whose_facets_beat_their_best_real_image(lite0, photos_dir, tmp_path):
    """End to end on the offline photo set's fish photos: goldfish facets, a short schedule at 128 px
    (its last octave repeated, within budget, for facets still below their best real view)."""
    from neuronscope.cli import main

    fish = tmp_path / "fish"
    fish.mkdir()
    for p in sorted((photos_dir / "images").glob("*fishes*")):
        (fish / p.name).symlink_to(p)
    assert len(list(fish.iterdir())) >= 20
    out = tmp_path / "facets"
    # bad input is refused before any work, with exit code 2
    assert main(["facets", "efficientnet_lite0", "class:goldfish", "--images", str(fish), "--anchor", "-1"]) == 2
    assert main(["facets", "efficientnet_lite0", "class:goldfish", "--images", str(fish), "--refine-budget", "-5"]) == 2
    code = main(["facets", "efficientnet_lite0", "class:goldfish", "--images", str(fish), "--k", "2", "--views", "3",
                 "--reduce", "pca", "--size", "128", "--iter-scale", "0.1", "--refine-budget", "200", "--no-preset",
                 "--out", str(out), "--quiet"])
    assert code == 0
    summary = json.loads((out / "class_1_goldfish.json").read_text())
    assert 1 <= len(summary["facets"]) <= 2
    assert summary["meta"]["refine"] and summary["meta"]["refine_budget"] == 200
    for f in summary["facets"]:
        assert f["value"] >= f["best_real"] and f["reaches_best_real"], f
        assert 0 <= f["refine_iterations"] <= 200 and f["preset_reaches_best_real"] is None
    assert (out / "class_1_goldfish.html").is_file() and (out / "class_1_goldfish.png").is_file()
    # the same unit again without --overwrite is refused, with exit code 2
    assert main(["facets", "efficientnet_lite0", "class:goldfish", "--images", str(fish), "--out", str(out), "--quiet"]) == 2


def test_facets_cli_keeps_earlier_sheets_and_leaves_nothing_of_a_failed_run(lite0, tmp_path, monkeypatch):
    """OUT collects one sheet per unit; a run that fails after writing its files changes nothing in OUT."""
    import neuronscope.facets as facets_pkg
    from neuronscope.cli import main
    from neuronscope.errors import NeuronscopeError

    out = tmp_path / "facets"
    fast = ["--k", "2", "--size", "64", "--steps", "3", "--out", str(out), "--quiet"]  # diversity mode: no images

    def files():
        return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}

    assert main(["facets", "efficientnet_lite0", "class:goldfish", *fast]) == 0
    first = files()
    assert {"class_1_goldfish.html", "class_1_goldfish.png", "class_1_goldfish.json"} <= set(first)
    real = facets_pkg.write_facet_sheet

    def fails_after_writing(result, folder):
        sheet = real(result, folder)
        assert sheet.html.parent != out  # written into the hidden build folder, not OUT
        raise NeuronscopeError("simulated failure after the sheet was written")

    monkeypatch.setattr(facets_pkg, "write_facet_sheet", fails_after_writing)
    assert main(["facets", "efficientnet_lite0", "class:tabby", *fast]) == 2
    assert files() == first
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    monkeypatch.undo()
    assert main(["facets", "efficientnet_lite0", "class:goldfish", *fast]) == 2  # no --overwrite: the first is kept
    assert files() == first  # (a second unit joining OUT: tests/facets/test_output.py)


def test_one_overall_bar_spans_the_phases_with_their_weights(capsys):
    from neuronscope.facets.progress import Overall, phase_bar

    o = Overall("facets x", enabled=False)
    o.plan("examples", 100)  # 100 images x 1 view
    o.plan("mfv", 300)  # 100 iterations x weight 3
    ex = phase_bar(o, 100, "examples", weight=1.0)
    for _ in range(100):
        ex.update(1)
    ex.close()
    assert o.done == 100 and sum(o.planned.values()) == 400  # a quarter done after the cheap phase
    o.plan("mfv", 600)  # two facets found: the estimate is replanned
    mfv = phase_bar(o, 100, "mfv", weight=6.0)
    mfv.update(150)  # a phase running past its plan never overruns the bar
    mfv.close()
    assert o.done == 700 and sum(o.planned.values()) == 700
    early = phase_bar(o, 10, "render", weight=10.0)
    early.update(4)
    early.close()  # ended early: its unused units leave the total
    assert sum(o.planned.values()) == o.done == 740
    assert phase_bar(False, 5, "own").disable  # the old behaviour: its own (here silent) tqdm bar


def test_facet_numbers_are_the_same_in_rows_scatter_and_summary(tiny, pattern_folder, tmp_path):
    from neuronscope.cli.facets import summary
    from neuronscope.facets import multifaceted
    from neuronscope.facets.sheet import facet_numbers

    unit = parse_unit(tiny, "class:0")
    res = multifaceted(tiny, unit, pattern_folder, k=2, views=1, iter_scale=0.05, preset=None, size=SIZE,
                       progress=False)
    numbers = facet_numbers(res)
    assert sorted(numbers.values()) == list(range(1, len(res.facets) + len(res.duplicates) + 1))
    assert [numbers[f.cluster] for f in res.facets] == list(range(1, len(res.facets) + 1))
    html = write_facet_sheet(res, tmp_path / "sheet")[0].read_text()
    assert "(cluster" not in html and "facet 1:" in html
    assert [f["rank"] for f in summary(res)["facets"]] == [n - 1 for n in range(1, len(res.facets) + 1)]
