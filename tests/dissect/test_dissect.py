"""Network Dissection: IoU arithmetic, planted detectors, dataset errors, CLI."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from neuronscope import NeuronscopeError, load_model
from neuronscope.cli import main as cli_main
from neuronscope.dissect import dissect, load_dataset, run_dissection
from neuronscope.dissect.synthetic import colour_labels, make_shapes_dataset


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: small passes run faster on one thread


# ---------------------------------------------------------------- tiny networks

class Planted(nn.Module):
    """Unit 0 fires on red, unit 1 on blue, unit 2 on green-minus-blue noise, unit 3 is dead;
    2x2 average pooling."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)
        w = [[1.0, -0.5, -0.5], [-0.5, -0.5, 1.0], [0.0, 1.0, -1.0], [0.0, 0.0, 0.0]]
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor(w).view(4, 3, 1, 1))
            self.conv.bias.copy_(torch.tensor([-0.4, -0.4, 0.0, -1.0]))
        self.act = nn.ReLU6()
        self.pool = nn.AvgPool2d(2)

    def forward(self, x):
        return self.pool(self.act(self.conv(x))).mean((2, 3))


class RedChannel(nn.Module):
    """Unit 0 is the image's red channel itself (no resampling), for checking the IoU arithmetic."""

    def __init__(self):
        super().__init__()
        self.ident = nn.Identity()

    def forward(self, x):
        return self.ident(x[:, :1]).mean((2, 3))


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    return make_shapes_dataset(tmp_path_factory.mktemp("data") / "shapes", n=40, size=64, seed=0)


def test_dissection_labels_planted_units_and_no_false_detector(shapes, tmp_path):
    model = load_model(Planted(), preprocess="none", input_size=64, name="planted")
    summaries = run_dissection(model, shapes, ["pool"], tmp_path / "out", label_size=64, progress=False)
    result = dissect(model, load_dataset(shapes, progress=False), ["pool"], label_size=64, progress=False)["pool"]
    labels = result.labels()
    assert labels[0].concept.name == "red square" and labels[0].detector and labels[0].iou > 0.3
    assert labels[1].concept.name == "blue circle" and labels[1].detector and labels[1].iou > 0.3
    assert not labels[2].detector  # the noise unit detects nothing
    assert not labels[3].detector and not result.saturated[3]  # dead unit: no mask at all
    iou = result.iou
    names = [c.name for c in result.concepts]
    assert iou[0, names.index("blue circle")] < 0.04 and iou[1, names.index("red square")] < 0.04
    # report files
    out = tmp_path / "out"
    assert summaries["pool"]["detectors"] == 2
    page = (out / "pool.html").read_text()
    assert page.index("unit 0") < page.index("unit 2") and "red square" in page and "http" not in page
    assert len(list((out / "pool").glob("unit-*.jpg"))) == 4 and (out / "index.html").exists()
    rows = list(csv.DictReader(open(out / "pool.csv")))
    assert {r["label"] for r in rows[:2]} == {"red square", "blue circle"}
    assert [float(r["iou"]) for r in rows] == sorted((float(r["iou"]) for r in rows), reverse=True)
    with pytest.raises(NeuronscopeError, match="not empty"):
        run_dissection(model, shapes, ["pool"], out, progress=False)


class Saturating(nn.Module):
    """Unit 0: ReLU6(100 (R - G/2 - B/2) - 40) is exactly 6 on every red pixel (its top values tie)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 1, 1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([100.0, -50.0, -50.0]).view(1, 3, 1, 1))
            self.conv.bias.fill_(-40.0)
        self.act = nn.ReLU6()

    def forward(self, x):
        return self.act(self.conv(x)).mean((2, 3))


def test_saturated_unit_still_gets_its_mask(tmp_path):
    data = make_shapes_dataset(tmp_path / "d", n=16, size=48, seed=2, p_square=1.0, p_circle=0.5)
    model = load_model(Saturating(), preprocess="none", input_size=48)
    res = dissect(model, load_dataset(data, progress=False), ["act"], label_size=48, progress=False)["act"]
    assert res.thresholds[0] == 6.0 and res.saturated[0]  # A > T would be empty
    label = res.labels()[0]
    assert label.concept.name == "red square" and label.iou > 0.9


def _write_dataset(root: Path, images: list[np.ndarray], masks: list[np.ndarray | None], labels: list[str],
                   concepts: list[tuple[int, str, str]]) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rows = []
    for i, (img, mask, lab) in enumerate(zip(images, masks, labels)):
        Image.fromarray(img).save(root / "images" / f"{i}.png")
        if mask is not None:
            Image.fromarray(mask).save(root / "masks" / f"{i}.png")
        rows.append([f"{i}.png", f"{i}.png" if mask is not None else "", lab])
    with open(root / "concepts.csv", "w", newline="") as f:
        csv.writer(f).writerows([["id", "name", "category"], *concepts])
    with open(root / "index.csv", "w", newline="") as f:
        csv.writer(f).writerows([["image", "mask", "labels"], *rows])
    return root


def test_iou_follows_the_definition_with_image_level_labels(tmp_path):
    """Unit = red channel at full resolution; IoU recomputed here from the definition with numpy."""
    rng = np.random.default_rng(0)
    n, s = 12, 16
    images, masks, labels = [], [], []
    for i in range(n):
        img = rng.integers(0, 256, size=(s, s, 3), dtype=np.uint8)
        images.append(img)
        masks.append(None if i % 4 == 3 else rng.integers(0, 3, size=(s, s), dtype=np.uint8))  # ids 0,1,2
        labels.append("3" if i % 3 == 0 or masks[-1] is None else "")  # image-level concept 3
    root = _write_dataset(tmp_path / "d", images, masks, labels, [(1, "a", "x"), (2, "b", "x"), (3, "scene", "scene")])
    ds = load_dataset(root, progress=False)
    model = load_model(RedChannel(), preprocess="none", input_size=s)
    res = dissect(model, ds, ["ident"], size=s, label_size=s, quantile=0.1, sketch_k=4096, progress=False)["ident"]
    assert res.settings["sketch_exact"]
    red = np.stack([im[..., 0] / 255.0 for im in images]).astype(np.float32)
    t = np.quantile(red, 0.9, method="inverted_cdf")  # exact: the sketch has not compacted
    assert res.thresholds[0].item() == pytest.approx(t, abs=1e-6)
    m = red > np.float32(t)
    I, U = np.zeros(3), np.zeros(3)
    for i in range(n):
        if masks[i] is not None:
            for c in (1, 2):
                lc = masks[i] == c
                I[c - 1] += (m[i] & lc).sum()
                U[c - 1] += (m[i] | lc).sum()
        if labels[i]:  # annotated for the scene: it covers the whole image
            I[2] += m[i].sum()
            U[2] += s * s
        # images without labels are not annotated for the scene: they add nothing to its union
    assert torch.allclose(res.iou[0], torch.tensor(I / U), atol=1e-9)
    assert res.labels()[0].per_category["scene"][0].name == "scene"


def _valid(tmp_path) -> Path:
    img = np.zeros((8, 8, 3), np.uint8)
    mask = np.ones((8, 8), np.uint8)
    return _write_dataset(tmp_path / "ok", [img, img], [mask, mask], ["", ""], [(1, "thing", "object")])


def test_dataset_errors_name_the_problem(tmp_path):
    root = _valid(tmp_path)
    assert len(load_dataset(root, progress=False)) == 2

    def broken(name):
        d = tmp_path / name
        shutil.copytree(root, d)
        return d

    d = broken("size")
    Image.fromarray(np.ones((5, 8), np.uint8)).save(d / "masks" / "1.png")
    with pytest.raises(NeuronscopeError, match="mask size mismatch.*8x5"):
        load_dataset(d, progress=False)
    d = broken("aspect")  # same aspect ratio at half size is fine: it is resized
    Image.fromarray(np.ones((4, 4), np.uint8)).save(d / "masks" / "1.png")
    assert len(load_dataset(d, progress=False)) == 2
    d = broken("unknown")
    Image.fromarray(np.full((8, 8), 7, np.uint8)).save(d / "masks" / "0.png")
    with pytest.raises(NeuronscopeError, match=r"unknown concept id\(s\) \[7\].*1 ids: 1"):
        load_dataset(d, progress=False)
    d = broken("empty")
    (d / "index.csv").write_text("image,mask,labels\n")
    with pytest.raises(NeuronscopeError, match="dataset is empty"):
        load_dataset(d, progress=False)
    d = broken("missing")
    (d / "images" / "1.png").unlink()
    with pytest.raises(NeuronscopeError, match="image file not found"):
        load_dataset(d, progress=False)
    d = broken("nomask")
    (d / "masks" / "0.png").unlink()
    with pytest.raises(NeuronscopeError, match="mask file not found"):
        load_dataset(d, progress=False)
    d = broken("noconcepts")
    (d / "concepts.csv").unlink()
    with pytest.raises(NeuronscopeError, match="missing concepts.csv"):
        load_dataset(d, progress=False)
    d = broken("badcsv")
    (d / "concepts.csv").write_text("id,label\n1,thing\n")
    with pytest.raises(NeuronscopeError, match="lacks column"):
        load_dataset(d, progress=False)
    d = broken("zero")
    (d / "concepts.csv").write_text("id,name,category\n0,thing,object\n")
    with pytest.raises(NeuronscopeError, match="0 means unlabelled"):
        load_dataset(d, progress=False)
    d = broken("badlabel")
    (d / "index.csv").write_text("image,mask,labels\n0.png,0.png,9\n")
    with pytest.raises(NeuronscopeError, match="unknown concept id"):
        load_dataset(d, progress=False)
    with pytest.raises(NeuronscopeError, match="dataset folder not found"):
        load_dataset(tmp_path / "nowhere", progress=False)


def test_colour_labels_name_pure_colours():
    a = np.zeros((4, 12, 3), np.uint8)
    a[:, 0:4] = (200, 25, 30)  # red
    a[:, 4:8] = (40, 80, 200)  # blue
    a[:, 8:12] = (250, 250, 250)  # white
    ids = colour_labels(a, blur=0)
    from neuronscope.dissect.synthetic import COLOURS

    names = list(COLOURS)
    assert {names[i - 1] for i in ids[:, 0:4].ravel()} == {"red"}
    assert {names[i - 1] for i in ids[:, 4:8].ravel()} == {"blue"}
    assert {names[i - 1] for i in ids[:, 8:12].ravel()} == {"white"}


def test_dissect_cli_runs_on_lite0_and_rejects_bad_input(shapes, tmp_path, capsys):
    out = tmp_path / "lite0"
    code = cli_main(["dissect", "efficientnet_lite0", "--layer", "blocks.2", "--data", str(shapes), "--out", str(out),
                     "--size", "64", "--label-size", "32", "--limit", "12", "--top", "3"])
    assert code == 0, capsys.readouterr().err
    assert (out / "blocks.2.html").exists() and len(list((out / "blocks.2").glob("*.jpg"))) == 24
    assert len(list(csv.DictReader(open(out / "blocks.2.csv")))) == 24
    assert cli_main(["dissect", "efficientnet_lite0", "--layer", "pool", "--data", str(shapes), "--out",
                     str(tmp_path / "p"), "--size", "64", "--limit", "2"]) == 2
    assert "spatial" in capsys.readouterr().err
    assert cli_main(["dissect", "efficientnet_lite0", "--layer", "blocks.2", "--data", str(tmp_path / "none")]) == 2
    assert "not found" in capsys.readouterr().err
