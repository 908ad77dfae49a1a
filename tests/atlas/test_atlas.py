"""The atlas: exactly-once store, stale-result detection, class attribution, resumable runs.

Rendering uses Lite0 at 32 px with a handful of steps, so pictures are not
meaningful; the tests check bookkeeping and the computations that can be
checked by hand. The kill/resume tests run the real CLI in subprocesses with
one torch thread each. The Ray backend is tested in tests/test_ray_pool.py.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from neuronscope.optim.presets import DEFAULT_PRESET
import torch

from neuronscope.atlas import AtlasSettings, AtlasStore, UnitResult, build_atlas, make_batches
from neuronscope.atlas.classes import attribute_layer, layer_jacobian
from neuronscope.atlas.settings import manifest
from neuronscope.errors import NeuronscopeError
from neuronscope.images import png_bytes

TINY = AtlasSettings(size=32, steps=3, batch=4)


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: small renders run faster on one thread


def _fake_result(layer: str, unit: int, shade: float, diversity: int = 0) -> UnitResult:
    img = torch.full((3, 16, 16), shade)
    return UnitResult(layer, unit, png_bytes(img), shade, [(png_bytes(img * 0.5), shade / 2)] * diversity)


def _new_store(tmp_path, man=None) -> AtlasStore:
    man = man or {"format": 1, "model": "m", "size": 32, "steps": 3}
    s = AtlasStore.open_or_create(tmp_path / "store", man)
    s.add_layers([("blocks.4", 40, (40, 28, 28))])
    return s


# ---------------------------------------------------------------- the store


def test_store_records_a_unit_once_when_two_writers_race(tmp_path):
    a = _new_store(tmp_path)
    b = AtlasStore.open(tmp_path / "store")  # a second writer (a Ray worker), no run lock
    try:
        first = a.put_units([_fake_result("blocks.4", 0, 0.2, diversity=2), _fake_result("blocks.4", 1, 0.3)], run="r1")
        # b rendered unit 1 too and unit 2; it must not replace a's unit 1
        second = b.put_units([_fake_result("blocks.4", 1, 0.9), _fake_result("blocks.4", 2, 0.4)], run="r2")
        assert first == [("blocks.4", 0), ("blocks.4", 1)]
        assert second == [("blocks.4", 2)]
        assert a.unit("blocks.4", 1).value == pytest.approx(0.3) and a.unit("blocks.4", 1).run == "r1"
        assert len(a.unit("blocks.4", 0).diversity) == 2
        assert a.check() == []  # every row has its files, no stray files
        rows = sqlite3.connect(tmp_path / "store" / "atlas.sqlite").execute(
            "SELECT layer, unit, COUNT(*) FROM units GROUP BY layer, unit HAVING COUNT(*) > 1").fetchall()
        assert rows == []
    finally:
        a.close()
        b.close()


def test_store_sweep_removes_what_a_killed_writer_left(tmp_path):
    s = _new_store(tmp_path)
    try:
        s.put_units([_fake_result("blocks.4", 3, 0.5)])
        d = tmp_path / "store" / "units" / "blocks.4"
        (d / "00007-deadbeef.png").write_bytes(b"\x89PNG half")  # renamed in, never recorded
        (d / ".00008-cafe.png.x1y2.tmp").write_bytes(b"half")  # killed mid-write
        assert len(s.check()) == 2
        assert s.sweep() == 2
        assert s.check() == []
        assert s.done() == {("blocks.4", 3)}
    finally:
        s.close()


def test_store_refuses_other_settings_and_force_redoes(tmp_path):
    s = _new_store(tmp_path, {"format": 1, "model": "m", "size": 32, "steps": 3})
    s.put_units([_fake_result("blocks.4", 0, 0.5)])
    s.close()
    with pytest.raises(NeuronscopeError, match=r"size: 32 -> 64.*--force"):
        AtlasStore.open_or_create(tmp_path / "store", {"format": 1, "model": "m", "size": 64, "steps": 3})
    s = AtlasStore.open_or_create(tmp_path / "store", {"format": 1, "model": "m", "size": 64, "steps": 3}, force=True)
    try:
        assert s.count() == 0 and s.manifest["size"] == 64
        assert not list((tmp_path / "store" / "units").rglob("*.png"))
        with pytest.raises(NeuronscopeError, match="in use by another atlas run"):
            AtlasStore.open_or_create(tmp_path / "store", {"format": 1, "model": "m", "size": 64, "steps": 3})
    finally:
        s.close()


def test_batches_never_mix_layers_and_hold_at_most_the_batch():
    jobs = [("a", i) for i in range(5)] + [("b", i) for i in range(3)]
    batches = make_batches(jobs, 2)
    assert [[u for _, u in b] for b in batches] == [[0, 1], [2, 3], [4], [0, 1], [2]]
    assert all(len({l for l, _ in b}) == 1 for b in batches)
    assert AtlasSettings(batch=32, diversity=3).units_per_batch == 8


def test_manifest_names_model_weights_and_render_settings(lite0):
    m = manifest(lite0, AtlasSettings(size=48, steps=7, diversity=2))
    assert m["model"] == "efficientnet_lite0" and len(m["model_fingerprint"]) == 16
    assert (m["size"], m["steps"], m["diversity"], m["preset"]) == (48, 7, 2, DEFAULT_PRESET)
    assert m["preset_definition"]["lr"] == 0.05 and m["torch"] and m["neuronscope"]


# ---------------------------------------------------------------- classes


def test_channel_shift_jacobian_matches_autograd_by_hand(lite0):
    """J[c, k] = d logit_k / d (uniform shift of channel c), checked with reverse-mode autograd."""
    x = torch.rand(1, 3, 48, 48, generator=torch.Generator().manual_seed(0))
    J = layer_jacobian(lite0, "blocks.15", x, [3, 7])
    module = lite0.net.get_submodule("blocks.15")
    for row, c in enumerate((3, 7)):
        shift = torch.zeros((), requires_grad=True)

        def hook(mod, args, out, c=c, shift=shift):
            bump = torch.zeros(out.shape[1])
            bump[c] = 1.0
            return out + shift * bump.view(1, -1, 1, 1)

        h = module.register_forward_hook(hook)
        try:
            logits = lite0(x)
        finally:
            h.remove()
        for k in (0, 281, 999):
            (g,) = torch.autograd.grad(logits[0, k], shift, retain_graph=True)
            assert J[row, k].item() == pytest.approx(g.item(), rel=1e-3, abs=1e-5)


def test_head_classes_are_exactly_the_classifier_weights(lite0):
    refs = torch.rand(2, 3, 48, 48, generator=torch.Generator().manual_seed(1))
    data = attribute_layer(lite0, "head", 1280, refs, size=64)
    assert data["method"] == "linear"
    W = lite0.net.fc.weight.detach()
    for unit in (0, 5, 1279):
        want = W[:, unit].topk(5).indices.tolist()
        assert [k for k, _ in data["top"][str(unit)]] == want
        assert data["top"][str(unit)][0][1] == pytest.approx(W[want[0], unit].item(), abs=1e-4)


def test_mid_layer_classes_are_a_gradient_average(lite0):
    refs = torch.rand(2, 3, 48, 48, generator=torch.Generator().manual_seed(2))
    data = attribute_layer(lite0, "blocks.15", 320, refs, size=64)
    assert data["method"] == "gradient" and data["inputs"] == 2


# ---------------------------------------------------------------- a whole atlas in-process


def test_the_atlas_records_the_arithmetic_its_renders_compute_in():
    from neuronscope.atlas.settings import render_conditions
    from neuronscope.optim.engine import plan_network
    from neuronscope.optim.engine.fast_copy import native_bf16
    from neuronscope.optim.engine.stages import arithmetic
    from tests import nets

    model = nets.resnet()
    labels = {}
    for settings in (AtlasSettings(size=32, steps=3, batch=6, diversity=2),  # too small for the faster copy
                     AtlasSettings(),  # the default preset, natural
                     AtlasSettings(preset="lucid"),  # a mixed-precision preset
                     AtlasSettings(size=48, steps=300, batch=5)):  # a full batch takes the copy, one unit would not
        label = render_conditions(model, 1, settings)["precision"]
        engine = settings.engine(model.device)
        full = settings.units_per_batch * settings.rows_per_unit
        for rows in (full, settings.rows_per_unit):  # a full batch, and a layer's last batch of one unit
            planned = plan_network(model, ["layer1"], engine, batch=rows, size=settings.size,
                                   steps=settings.resolved_steps())
            assert label == arithmetic([s.describe()["dtype"] for s in planned]), (settings, rows)
        labels[settings.preset, settings.size] = label
    bf16 = native_bf16(model.device)
    assert labels == {("natural", 32): "float32", ("natural", 128): "bfloat16" if bf16 else "float32",
                      ("lucid", 128): "mixed (bfloat16 steps, float32 tail)" if bf16 else "float32",
                      ("natural", 48): "bfloat16" if bf16 else "float32"}


def test_atlas_renders_each_unit_once_and_resumes_without_rendering(lite0, tmp_path):
    out = tmp_path / "site"
    settings = AtlasSettings(size=32, steps=3, batch=6, diversity=2)
    layers = ["blocks.4:0-1", "head:0-1"]
    kw = dict(settings=settings, classes_inputs=2, classes_size=64, progress=False)
    s1 = build_atlas(lite0, layers, out, **kw)
    assert (s1.status, s1.rendered, s1.already, s1.missing) == ("complete", 4, 0, 0)
    with AtlasStore.open(out / "store") as st:
        assert {(r.layer, r.unit) for r in st.units()} == {("blocks.4", 0), ("blocks.4", 1), ("head", 0), ("head", 1)}
        assert all(len(r.diversity) == 2 and r.batch_rows == 6 for r in st.units())  # 2 units x 3 rows per batch
        assert st.check() == []
        assert st.classes("head")[0] == "linear" and st.classes("blocks.4")[0] == "gradient"
        first = {(r.layer, r.unit): (r.file, r.created) for r in st.units()}
    site = json.loads((out / "manifest.json").read_text())  # written at the end: the finished run, not "running"
    assert site["status"] == "complete" and [r["status"] for r in site["runs"]] == ["complete"]
    # 6 rows of 32 px for 3 steps do not repay the faster copy: the model as given, float32 on any CPU
    assert site["threads"] == torch.get_num_threads()
    assert site["precision"] == "float32"
    with pytest.raises(NeuronscopeError, match=r"threads: \d+ -> 7"):  # renders differ with the thread count
        build_atlas(lite0, layers, out, threads=7, **kw)
    page = (out / "units" / "head" / "00001.html").read_text()
    top = lite0.label(int(lite0.net.fc.weight[:, 1].argmax())).split(",")[0]
    assert "exact" in page and top in page

    s2 = build_atlas(lite0, layers, out, **kw)
    assert (s2.rendered, s2.already) == (0, 4)
    with AtlasStore.open(out / "store") as st:
        assert {(r.layer, r.unit): (r.file, r.created) for r in st.units()} == first

    with pytest.raises(NeuronscopeError, match="other conditions"):
        build_atlas(lite0, ["head:0-1"], out, settings=AtlasSettings(size=40, steps=3, batch=6, diversity=2),
                    progress=False)
    s3 = build_atlas(lite0, ["head:0"], out, settings=AtlasSettings(size=40, steps=3), force=True,
                     classes_inputs=0, progress=False)
    assert (s3.rendered, s3.already) == (1, 0)
    with AtlasStore.open(out / "store") as st:
        assert st.done() == {("head", 0)} and st.manifest["size"] == 40 and st.check() == []
    pages = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.html"))
    assert pages == ["index.html", "layers/head.html", "units/head/00000.html"]  # stale pages pruned


def test_atlas_refuses_a_non_empty_folder_and_bad_layers(lite0, tmp_path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(NeuronscopeError, match="not empty"):
        build_atlas(lite0, ["blocks.4:0"], tmp_path / "busy", settings=TINY, progress=False)
    with pytest.raises(NeuronscopeError, match="out of range"):
        build_atlas(lite0, ["blocks.4:40"], tmp_path / "x", settings=TINY, progress=False)
    with pytest.raises(NeuronscopeError, match="blocks.4"):
        build_atlas(lite0, ["blocks.44"], tmp_path / "y", settings=TINY, progress=False)


# ---------------------------------------------------------------- the CLI killed and resumed

CLI_ARGS = ["--layers", "blocks.4:0-13", "--size", "32", "--steps", "6", "--batch", "2", "--classes", "0"]


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.pop("NEURONSCOPE_TEST_SLOW", None)
    return env


def _atlas(out: Path, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "neuronscope", "atlas", "efficientnet_lite0", *CLI_ARGS, "--out", str(out), "--quiet", *extra]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env())


def _recorded(out: Path) -> int:
    db = out / "store" / "atlas.sqlite"
    if not db.is_file():
        return 0
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            return con.execute("SELECT COUNT(*) FROM units").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:
        return 0


def _run_until(out: Path, at_least: int, sig: int) -> tuple[int, str]:
    """Start the CLI, wait until ``at_least`` units are recorded, send ``sig``; (exit code, output)."""
    proc = _atlas(out)
    deadline = time.time() + 120
    try:
        while _recorded(out) < at_least:
            assert proc.poll() is None, f"the atlas finished before it could be stopped:\n{proc.stdout.read()}"
            assert time.time() < deadline, "the atlas recorded nothing within 120 s"
            time.sleep(0.05)
        proc.send_signal(sig)
        text, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, text


def _rows(out: Path) -> dict:
    with AtlasStore.open(out / "store") as st:
        return {(r.layer, r.unit): (r.file, r.created, r.run) for r in st.units()}


def test_killed_and_stopped_runs_resume_and_record_every_unit_exactly_once(tmp_path):
    out = tmp_path / "atlas"
    code, text = _run_until(out, 1, signal.SIGKILL)
    assert code == -signal.SIGKILL
    after_kill = _rows(out)
    assert 1 <= len(after_kill) < 14

    code, text = _run_until(out, len(after_kill) + 2, signal.SIGTERM)
    assert code == 128 + signal.SIGTERM, text
    assert "atlas interrupted" in text and "run the same command again to resume" in text
    after_term = _rows(out)
    assert {k: after_term[k] for k in after_kill} == after_kill  # nothing redone
    assert len(after_term) < 14

    code, text = _run_until(out, len(after_term) + 1, signal.SIGINT)
    assert code == 128 + signal.SIGINT, text
    after_int = _rows(out)
    assert {k: after_int[k] for k in after_term} == after_term

    proc = _atlas(out)
    text, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, text
    assert "atlas complete" in text and f"{14 - len(after_int)} units rendered in this run" in text
    final = _rows(out)
    assert set(final) == {("blocks.4", u) for u in range(14)}
    assert {k: final[k] for k in after_int} == after_int
    with AtlasStore.open(out / "store") as st:
        assert st.check() == []  # every row has its files; no stray or half-written file
        runs = st.runs()
    assert [r["status"] for r in runs] == ["killed", "interrupted", "interrupted", "complete"]
    assert sum(r["rendered"] for r in runs) == 14  # each unit recorded by exactly one run
    assert (out / "index.html").is_file() and (out / "units" / "blocks.4" / "00013.html").is_file()
