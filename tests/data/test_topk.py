"""Top-k per unit, the resumable store, receptive fields and max patches."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from neuronscope import NeuronscopeError, load_model
from neuronscope.data.scan import run_topk
from neuronscope.data.store import Store
from neuronscope.receptive_field import chain_box, receptive_field

# ------------------------------------------------------------------ a tiny brightness-detecting net

SPECS = [(5, 2, 2), (5, 2, 2), (3, 1, 1)]  # (kernel, stride, padding) of the three convolutions
SIZE = 64
SQUARE = 6


def brightness_net() -> nn.Module:
    """Three averaging convolutions: channel 0 of layer '4' is high where the image is bright."""
    torch.manual_seed(0)
    layers = []
    cin = 3
    for k, s, p in SPECS:
        conv = nn.Conv2d(cin, 2, k, s, p, bias=False)
        with torch.no_grad():
            conv.weight.zero_()
            conv.weight[0] = 1.0 / (cin * k * k)  # channel 0: local mean brightness
            conv.weight[1].normal_(0, 0.1)  # channel 1: anything
        layers += [conv, nn.ReLU()]
        cin = 2
    return nn.Sequential(*layers[:-1])  # module '4' is the last conv


def tiny_model():
    return load_model(brightness_net(), preprocess="none", input_size=SIZE, name="bright")


def square_images(folder: Path, n: int = 10, seed: int = 0) -> list[tuple[int, int]]:
    """Dark noise images with one bright square each; returns the squares' (left, top)."""
    rng = np.random.default_rng(seed)
    corners = []
    for i in range(n):
        a = rng.uniform(0, 0.25, (SIZE, SIZE, 3))
        if i == 0:
            x0, y0 = 0, 0  # a square at the border: its patch is clipped
        else:
            x0, y0 = rng.integers(0, SIZE - SQUARE, 2)
        a[y0 : y0 + SQUARE, x0 : x0 + SQUARE] = 1.0
        Image.fromarray((a * 255).astype(np.uint8)).save(folder / f"sq_{i:02d}.png")
        corners.append((int(x0), int(y0)))
    return corners


def test_chain_box_matches_hand_computation():
    # one 3x3 stride-2 conv without padding: output 4 sees input [8, 11)
    assert chain_box([(3, 2, 0)], 4) == (8, 11)
    # then a 2x2 stride-2 pool on top: output 1 sees conv outputs [2, 4) -> input [4, 9)
    assert chain_box([(3, 2, 0), (2, 2, 0)], 1) == (4, 9)


def test_gradient_receptive_field_equals_geometry_of_plain_conv_net():
    model = tiny_model()
    rf = receptive_field(model, "4", SIZE)
    assert (rf.map_h, rf.map_w) == (16, 16)
    assert rf.stride_x == rf.stride_y == 4.0
    lo, hi = chain_box(SPECS, rf.centre_x)
    assert rf.box == (max(0, lo), max(0, lo), min(SIZE, hi), min(SIZE, hi))
    # a unit at the border: same box size, shifted by (offset x stride), not clipped
    x0, y0, x1, y1 = rf.unit_box(0, 0)
    assert (x1 - x0, y1 - y0) == rf.size
    assert (x0, y0) == chain_box(SPECS, 0)[:1] * 2


def test_max_patches_crop_the_planted_bright_square(tmp_path):
    folder = tmp_path / "squares"
    folder.mkdir()
    corners = square_images(folder)
    model = tiny_model()
    run = run_topk(model, folder, ["4"], k=len(corners), store=tmp_path / "store", size=SIZE,
                   crop_fraction=1.0, batch_size=4, progress=False)
    store = run.store
    rf = store.receptive_field("4")
    entries = store.entries("4", 0)
    assert len(entries) == len(corners)
    for i, e in enumerate(entries):
        x0, y0 = corners[e.image_id]
        box = rf.unit_box(e.x, e.y)
        # the unit's box at the maximum contains the whole square ...
        assert box[0] <= x0 and box[1] <= y0 and x0 + SQUARE <= box[2] and y0 + SQUARE <= box[3], (e, box)
        patch = np.asarray(store.max_patch("4", 0, i), dtype=np.float32) / 255
        assert patch.shape[:2] == (rf.size[1], rf.size[0])
        # ... and the crop shows it: all 36 bright pixels, at the square's place in the box
        bright = patch.min(axis=2) > 0.95
        assert bright.sum() == SQUARE * SQUARE
        ys, xs = np.nonzero(bright)
        assert (xs.min() + box[0], ys.min() + box[1]) == (x0, y0)
    # the border square's patch is clipped: the part outside the image is the grey fill
    border = next(i for i, e in enumerate(entries) if e.image_id == 0)
    e = entries[border]
    box = rf.unit_box(e.x, e.y)
    assert box[0] < 0 and box[1] < 0
    patch = np.asarray(store.max_patch("4", 0, border))
    assert (patch[: -box[1], : -box[0]] == 128).all()
    store.close()


def test_store_examples_serve_the_viewer_and_the_atlas_alike(tmp_path):
    from neuronscope.atlas.sources import TopkSource
    from neuronscope.viewer.examples import store_examples

    folder = tmp_path / "squares"
    folder.mkdir()
    square_images(folder, n=6)
    model = tiny_model()
    run_topk(model, folder, ["4"], k=4, store=tmp_path / "s", size=SIZE, batch_size=2, progress=False).store.close()
    with Store.open(tmp_path / "s") as s:
        entries = s.entries("4", 1)
        ex = s.examples("4", 1, k=3)
        assert [(e.rank, e.image_id, e.value, e.x, e.y) for e in ex] == [(e.rank, e.image_id, e.value, e.x, e.y) for e in entries[:3]]
        for i, e in enumerate(ex):
            assert np.array_equal(np.asarray(e.image), np.asarray(s.view(e.image_id)))
            assert np.array_equal(np.asarray(e.patch), np.asarray(s.max_patch("4", 1, i)))
            assert e.caption == Path(entries[i].path).name
        shown = store_examples(s, model, "4", 1, k=3)  # the browser toolbox's pane
        assert [(x.score, x.caption) for x in shown] == [(e.value, e.caption) for e in ex]
        assert "no layer 2" in store_examples(s, model, "2", 1)
        assert "valid: 0..1" in store_examples(s, model, "4", 5)
        src = TopkSource(tmp_path / "s")  # the atlas
        try:
            assert [e.image_id for e in src.examples("4", 1, 3)] == [e.image_id for e in ex]
            s.checkpoint({"4": s.running("4")}, {"4": 2})  # the layer is now in progress:
            assert src.examples("4", 1, 3) == [] and len(s.examples("4", 1, 3)) == 3  # the atlas waits, the viewer shows
        finally:
            src.close()


def test_store_api_reports_layers_metadata_and_unknown_names(tmp_path):
    folder = tmp_path / "squares"
    folder.mkdir()
    square_images(folder, n=5)
    run = run_topk(tiny_model(), folder, ["2", "4"], k=3, store=tmp_path / "s", size=SIZE, batch_size=2, progress=False)
    run.store.close()
    with Store.open(tmp_path / "s") as s:
        assert s.layers() == ["2", "4"]
        m = s.meta
        assert (m["model"], m["n_images"], m["size"], m["version"]) == ("bright", 5, SIZE, 1)
        assert Path(m["image_folder"]) == folder.resolve()
        assert s.units_done("4") == [0, 1] and s.k("4") == 3
        path, value, (x, y) = s.topk("4", 0)[0]
        assert Path(path).parent == folder.resolve() and 0 <= x < 16 and 0 <= y < 16
        with pytest.raises(NeuronscopeError, match="has no layer '3'.*2, 4"):
            s.topk("3", 0)
        with pytest.raises(NeuronscopeError, match="valid: 0..1"):
            s.topk("4", 7)
        a = s.put_artifact("facet", "4", 1, "f0", Image.new("RGB", (8, 8), (255, 0, 0)), {"value": 1.5})
        assert [x.name for x in s.artifacts("facet", "4", 1)] == ["f0"] and a.file.is_file()
    with pytest.raises(NeuronscopeError, match="no neuronscope store"):
        Store.open(tmp_path / "nothing")
    with pytest.raises(NeuronscopeError, match="other settings"):
        run_topk(tiny_model(), folder, ["4"], k=3, store=tmp_path / "s", size=32, progress=False)


# ------------------------------------------------------------------ kill and resume on Lite0

def _cli(*args) -> list[str]:
    entry = "import sys; from neuronscope.cli import main; sys.exit(main(sys.argv[1:]))"
    return [sys.executable, "-c", entry, "topk", "efficientnet_lite0", *args]


def _progress(store: Path) -> dict[str, int]:
    db = store / "store.sqlite"
    if not db.exists():
        return {}
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            return dict(con.execute("SELECT name, images_done FROM layers").fetchall())
        finally:
            con.close()
    except sqlite3.OperationalError:
        return {}


def test_topk_killed_midway_resumes_to_the_uninterrupted_result(tmp_path, photos_dir):
    folder = tmp_path / "photos"
    folder.mkdir()
    photos = sorted((photos_dir / "images").glob("*"))[:40]
    for p in photos:
        (folder / p.name).symlink_to(p)
    common = ["--images", str(folder), "--layers", "blocks.5", "blocks.10", "--k", "4", "--batch-size", "4", "--size", "128",
              "--checkpoint-seconds", "0", "--no-sheets"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    killed_out = tmp_path / "killed"
    proc = subprocess.Popen(_cli(*common, "--out", str(killed_out)), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        prog = _progress(killed_out / "store")
        if len(prog) == 2 and min(prog.values()) >= 8:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished before it could be killed: " + proc.stderr.read().decode()[-500:]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    at_kill = _progress(killed_out / "store")
    assert 0 < min(at_kill.values()) < len(photos), at_kill

    resumed = subprocess.run(_cli(*common, "--out", str(killed_out)), env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-800:]
    assert "reusing store" in resumed.stdout
    assert f"{len(photos) - min(at_kill.values())} images in" in resumed.stdout

    whole_out = tmp_path / "whole"
    whole = subprocess.run(_cli(*common, "--out", str(whole_out)), env=env, capture_output=True, text=True)
    assert whole.returncode == 0, whole.stderr[-800:]
    assert "top-k" in whole.stderr  # the progress bar

    with Store.open(killed_out / "store") as a, Store.open(whole_out / "store") as b:
        assert a.progress() == b.progress() == {"blocks.5": (40, 40), "blocks.10": (40, 40)}
        for layer in ("blocks.5", "blocks.10"):
            assert a.running(layer).equals(b.running(layer))
        # the views the patches are cut from were kept, so patches agree too
        assert np.array_equal(np.asarray(a.max_patch("blocks.10", 3, 0)), np.asarray(b.max_patch("blocks.10", 3, 0)))


def test_topk_cli_writes_a_sheet_per_layer_and_refuses_foreign_output(tmp_path, sample_photos):
    from neuronscope.cli import main

    folder = Path(next(iter(sample_photos.values()))).parent
    out = tmp_path / "sheets"
    code = main(["topk", "efficientnet_lite0", "--images", str(folder), "--layers", "blocks.3", "stem",
                 "--k", "2", "--size", "96", "--units", "0-3", "--out", str(out), "--quiet"])
    assert code == 0
    for layer in ("blocks.3", "stem"):
        sheet = Image.open(out / f"{layer}.png")
        assert sheet.size[0] > 50 and sheet.size[1] > 50
        html = (out / f"{layer}.html").read_text()
        assert html.count("<figure>") == 4 and "unit 3" in html
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    assert main(["topk", "efficientnet_lite0", "--images", str(folder), "--layers", "stem", "--out", str(foreign), "--quiet"]) == 2
    assert main(["topk", "efficientnet_lite0", "--images", str(folder), "--layers", "stem.nope", "--out", str(tmp_path / "x"), "--quiet"]) == 2
