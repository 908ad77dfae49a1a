"""The passes on Ray: atlas, top-k and dissection, with workers that cannot touch the driver's files.

One local Ray instance (2 CPUs) serves every test of this module. Its workers
start in another working directory, and a setup hook installs an audit hook in
every worker process that refuses to open, list, create, rename or delete
anything under the folder where the tests keep their stores (and, for the
runs that send images as bytes, their images and masks); a probe task checks
the hook is in force. So a store or an image opened by a worker fails the run:
the driver alone reads and writes them.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from neuronscope import load_model
from neuronscope.atlas import AtlasSettings, AtlasStore, build_atlas
from neuronscope.data.scan import run_topk
from neuronscope.data.store import Store
from neuronscope.dissect import dissect, load_dataset
from neuronscope.dissect.synthetic import make_shapes_dataset

pytestmark = pytest.mark.usefixtures("one_thread")

DENY_VAR = "NEURONSCOPE_TEST_DENIED"


def _deny_driver_files() -> None:
    """Worker setup hook: any file-system access under $NEURONSCOPE_TEST_DENIED raises PermissionError."""
    import os
    import sys

    denied = os.environ.get(DENY_VAR)
    if not denied:
        return
    events = {"open", "sqlite3.connect", "os.listdir", "os.scandir", "os.mkdir", "os.rename", "os.replace",
              "os.remove", "os.rmdir", "os.chmod", "os.link", "os.symlink", "os.truncate", "shutil.copyfile"}

    def hook(event, args):
        if event in events and args and isinstance(args[0], (str, bytes, os.PathLike)):
            path = os.path.abspath(os.fsdecode(os.fspath(args[0])))
            if path == denied or path.startswith(denied + os.sep):
                raise PermissionError(f"Ray worker denied access to {path}")

    sys.addaudithook(hook)


def _probe(denied: str) -> tuple[str, str]:
    try:
        open(os.path.join(denied, "probe.txt"), "w").close()
        return os.getcwd(), "opened"
    except PermissionError as e:
        return os.getcwd(), str(e)


def _stop_leftover_ray_processes() -> None:
    """Kill this process's descendants that run Ray (read from /proc)."""
    import signal

    parent = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                parent[int(d.name)] = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    mine, grew = {os.getpid()}, True
    while grew:
        new = {p for p, pp in parent.items() if pp in mine} - mine
        mine |= new
        grew = bool(new)
    for pid in mine - {os.getpid()}:
        try:
            if b"ray" in Path(f"/proc/{pid}/cmdline").read_bytes():
                os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def _niceness() -> int:
    return os.nice(0)


@pytest.fixture(scope="module")
def denied(tmp_path_factory):
    try:
        import ray
        from ray import cloudpickle  # the serializer Ray uses
    except ImportError:
        pytest.fail("Ray is missing: the Ray backends are tested with the optional extra; "
                    "pip install 'neuronscope[ray]' (ray>=2.9)")
    folder = tmp_path_factory.mktemp("driver-only")
    cwd = tmp_path_factory.mktemp("worker-cwd")
    (cwd / "README").write_text("the Ray workers' working directory in tests/test_ray_pool.py\n")
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import this test module
    for attempt in range(3):  # an overloaded machine can make Ray's own start-up time out
        try:
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR",
                     object_store_memory=150 * 1024 * 1024, _system_config={"worker_niceness": 0},
                     runtime_env={"working_dir": str(cwd), "worker_process_setup_hook": _deny_driver_files,
                                  "env_vars": {DENY_VAR: str(folder), "OMP_NUM_THREADS": "1"}})
            break
        except Exception as e:
            ray.shutdown()
            _stop_leftover_ray_processes()  # what the failed start left (ray.shutdown does not know them)
            if "timed out during startup" not in str(e) or attempt == 2:
                raise
    try:
        worker_cwd, outcome = ray.get(ray.remote(num_cpus=1)(_probe).remote(str(folder)))
        assert "denied access" in outcome, outcome  # the hook is in force in the workers
        assert Path(worker_cwd).resolve() != Path.cwd().resolve()
        assert ray.get(ray.remote(num_cpus=1)(_niceness).remote()) == os.nice(0)  # workers at our priority
        assert not (folder / "probe.txt").exists()
        yield folder
    finally:
        ray.shutdown()
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


# ---------------------------------------------------------------- atlas

def test_atlas_on_ray_workers_return_pictures_and_the_driver_records_them(denied):
    out = denied / "atlas"
    s = build_atlas("efficientnet_lite0", ["blocks.4:0-13"], out, settings=AtlasSettings(size=32, steps=6, batch=2),
                    backend="ray", workers=2, classes_inputs=0, progress=False, handle_signals=False)
    assert s.status == "complete" and s.rendered == 14 and (s.backend, s.workers) == ("ray", 2)
    with AtlasStore.open(out / "store") as st:
        recs = st.units()
        assert st.check() == []  # every row has its files, no stray files
    assert {(r.layer, r.unit) for r in recs} == {("blocks.4", u) for u in range(14)}  # the local backend's units
    assert len({r.worker for r in recs}) == 2 and all(r.worker.startswith("ray:") for r in recs)
    assert (out / "units" / "blocks.4" / "00013.html").is_file()


# ---------------------------------------------------------------- top-k

def _image_folder(folder: Path, sample_photos: dict[str, Path], n_noise: int = 12) -> Path:
    folder.mkdir(parents=True)
    for name, p in sample_photos.items():
        Image.open(p).convert("RGB").resize((96, 80)).save(folder / f"{name}.png")
    rng = np.random.default_rng(0)
    for i in range(n_noise):
        a = rng.uniform(0, 1, (72, 72, 3)) * rng.uniform(0.2, 1.0, 3)
        Image.fromarray((a * 255).astype(np.uint8)).save(folder / f"noise_{i:02d}.png")
    (folder / "broken.png").write_bytes(b"not a png")  # read by nobody: reported by the worker
    return folder


def test_topk_on_ray_equals_the_local_pass_and_resumes_shard_by_shard(denied, lite0, sample_photos, monkeypatch):
    images = _image_folder(denied / "photos", sample_photos)  # under the denied folder: sent as bytes
    layers, common = ["blocks.2", "blocks.4"], dict(k=3, size=64, batch_size=2, progress=False)
    local = run_topk(lite0, images, layers, store=denied / "local", **common)
    local.store.close()

    calls = {"n": 0}
    real = Store.checkpoint

    def killed_after_two_shards(self, *a, **kw):  # the driver dies before its third checkpoint
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(self, *a, **kw)

    monkeypatch.setattr(Store, "checkpoint", killed_after_two_shards)
    sharded = dict(backend="ray", workers=2, shard_size=4, send_images=True)
    with pytest.raises(KeyboardInterrupt):
        run_topk(lite0, images, layers, store=denied / "ray", **common, **sharded)
    monkeypatch.setattr(Store, "checkpoint", real)
    with Store.open(denied / "ray") as st:
        assert st.progress() == {l: (8, 17) for l in layers}  # two shards of four images
        assert all(st.images_done(l) + sum(b - a for a, b in st.shards(l)) == 8 for l in layers)

    shutil.copytree(denied / "ray", denied / "ray-then-local")
    finished_locally = run_topk(lite0, images, layers, store=denied / "ray-then-local", **common)  # skips done shards
    finished_locally.store.close()
    resumed = run_topk(lite0, images, layers, store=denied / "ray", **common, **sharded)
    try:
        assert resumed.images_processed + len(resumed.failed) == 17 - 8  # only the shards not committed
        with Store.open(denied / "local") as a:
            b = resumed.store
            assert a.progress() == b.progress() == {l: (17, 17) for l in layers}
            assert all(b.shards(l) == [] for l in layers)  # the prefix absorbed every shard
            for l in layers:
                assert a.running(l).equals(b.running(l))  # same images, values and positions
            with Store.open(denied / "ray-then-local") as c:
                assert c.progress() == a.progress() and all(a.running(l).equals(c.running(l)) for l in layers)
            assert [p for p, _ in a.failed_images()] == [p for p, _ in b.failed_images()] == [str(images / "broken.png")]
            for i in sorted({e.image_id for l in layers for u in range(3) for e in a.entries(l, u)}):
                assert (a.path / "views" / f"{i:06d}.png").read_bytes() == (b.path / "views" / f"{i:06d}.png").read_bytes()
    finally:
        resumed.store.close()


# ---------------------------------------------------------------- dissection

class Colours(nn.Module):
    """Unit 0 fires on red, unit 1 on blue, unit 2 on green; 2x2 average pooling."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([[1.0, -0.5, -0.5], [-0.5, -0.5, 1.0], [-0.5, 1.0, -0.5]]).view(3, 3, 1, 1))
            self.conv.bias.fill_(-0.2)
        self.act = nn.ReLU()
        self.pool = nn.AvgPool2d(2)

    def forward(self, x):
        return self.pool(self.act(self.conv(x))).mean((2, 3))


def test_dissection_on_ray_gives_the_local_thresholds_counts_and_labels(denied):
    data = load_dataset(make_shapes_dataset(denied / "shapes", n=20, size=48, seed=1), progress=False)
    model = load_model(Colours(), preprocess="none", input_size=48, name="colours")
    # a sketch this large stays exact, so the thresholds, and with them the IoU counts, must agree exactly
    common = dict(label_size=48, batch_size=4, top=5, sketch_k=65536, progress=False)
    local = dissect(model, data, ["pool"], **common)["pool"]
    ray = dissect(model, data, ["pool"], backend="ray", workers=2, shard_size=8, send_images=True, **common)["pool"]
    assert ray.settings["sketch_exact"] and local.settings["sketch_exact"]
    assert torch.equal(ray.thresholds, local.thresholds)
    assert torch.equal(ray.intersection, local.intersection) and torch.equal(ray.union, local.union)
    assert torch.equal(ray.top_images, local.top_images) and torch.equal(ray.top_scores, local.top_scores)
    assert [(u.concept, u.iou) for u in ray.labels()] == [(u.concept, u.iou) for u in local.labels()]
    assert ray.labels()[0].concept.name == "red square" and ray.labels()[0].detector


# ---------------------------------------------------------------- without Ray

def test_without_ray_the_cli_says_how_to_install_it(monkeypatch, capsys, tmp_path):
    from neuronscope.cli import main

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    folder = tmp_path / "imgs"
    folder.mkdir()
    assert main(["topk", "efficientnet_lite0", "--images", str(folder), "--layers", "stem", "--backend", "ray",
                 "--out", str(tmp_path / "o")]) == 2
    assert main(["dissect", "efficientnet_lite0", "--layer", "blocks.2", "--data", str(folder), "--backend", "ray"]) == 2
    err = capsys.readouterr().err
    assert err.count("pip install 'neuronscope[ray]'") == 2 and "Traceback" not in err
    assert not (tmp_path / "o").exists()  # refused before any work
