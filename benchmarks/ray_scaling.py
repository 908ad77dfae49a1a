"""Claim: throughput of the top-k pass and of the atlas on 1 and 2 local Ray workers, and what that projects to.

Measured on this machine (2 shared cores; the load average is recorded):

* top-k: ``run_topk`` over ``--images`` (default: the first 64 photos of the offline
  photo set) for Lite0 blocks.5 + blocks.10, k = 9, 224 px, batch 16, with a store:
  the local pass (1 thread) and ``--backend ray`` with 1 and 2 workers (1 thread
  each, images sent as bytes, shards of 16 images). images/s exclude Ray's start-up
  (reported separately).
* atlas: ``build_atlas`` of 16 units of blocks.4 at 64 px, 48 steps, 8 units per
  optimization, local and on 1 and 2 Ray workers; units/min exclude start-up.
* dissection per-image cost: the local two-pass ``dissect`` of blocks.10 on 32
  synthetic 224-px images (labels at 112 px), for the Broden projection.

Then a projection (written into the JSON and printed) from the measured per-image
and per-unit costs of one worker, assuming N nodes of W such workers each scale
linearly (the 2-worker figure says how well this holds on one machine): wall time
of ImageNet-val (50,000 images), ImageNet-train (1,281,167), Broden (63,305 images,
dissection) and an atlas of every unit of a ResNet-50 (15,104 units in its 16
bottleneck outputs) at the atlas's default settings, with the per-unit cost
measured on this CPU by ``atlas_speed.py`` (``results/atlas_speed.json``, part 3;
else scaled from the small-settings Lite0 figure by FLOPs).

    python benchmarks/ray_scaling.py [--images DIR] [--limit 64] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch

from neuronscope import __version__, load_model
from neuronscope.images import atomic_write_json, list_images

from _machine import cpu_name, load_average  # benchmarks/ is the script's folder

RESULTS = Path(__file__).resolve().parent / "results" / "ray_scaling.json"
LAYERS = ["blocks.5", "blocks.10"]
DATASETS = {"ImageNet-val": 50_000, "ImageNet-train": 1_281_167, "Broden": 63_305}
RESNET50_UNITS = 15_104  # channels of the 16 bottleneck outputs (3x256 + 4x512 + 6x1024 + 3x2048)
FLOPS = {"efficientnet_lite0": 0.40e9, "resnet50": 4.1e9}  # multiply-adds x 2 per 224-px image, forward


def _topk(model, paths, workers: int | None, tmp: Path) -> dict:
    from neuronscope.data import run_topk

    kw = {} if workers is None else dict(backend="ray", workers=workers, shard_size=16, send_images=True)
    load = load_average()
    t = time.perf_counter()
    run = run_topk(model, paths, LAYERS, k=9, store=tmp / f"store-{workers}", batch_size=16, progress=False, **kw)
    wall = time.perf_counter() - t
    run.store.close()
    return {"workers": workers or 0, "backend": "ray" if workers else "local", "images": run.images_processed,
            "seconds": round(run.seconds, 2), "startup_seconds": round(run.startup_seconds, 2),
            "wall_seconds": round(wall, 2), "images_per_second": round(run.images_processed / run.seconds, 2),
            "load_before": load, "load_after": load_average()}


def _atlas(workers: int | None, tmp: Path, units: int, steps: int) -> dict:
    from neuronscope.atlas import AtlasSettings, build_atlas

    load = load_average()
    s = build_atlas("efficientnet_lite0", [f"blocks.4:0-{units - 1}"], tmp / f"atlas-{workers}",
                    settings=AtlasSettings(size=64, steps=steps, batch=8), backend="ray" if workers else "local",
                    workers=workers, classes_inputs=0, site=False, progress=False, handle_signals=False, threads=1)
    startup = next((float(n.split(": ")[1].split(" s")[0]) for n in s.notes if n.startswith("Ray start-up")), 0.0)
    return {"workers": workers or 0, "backend": s.backend, "units": s.rendered, "render_seconds": round(s.render_seconds, 2),
            "startup_seconds": startup, "units_per_minute": round(s.units_per_minute, 2),
            "load_before": load, "load_after": load_average()}


def _dissect_cost(model, tmp: Path, n: int) -> dict:
    from neuronscope.dissect import dissect, load_dataset
    from neuronscope.dissect.synthetic import make_shapes_dataset

    data = load_dataset(make_shapes_dataset(tmp / "shapes", n=n, size=224, seed=0), progress=False)
    t = time.perf_counter()
    dissect(model, data, ["blocks.10"], size=224, label_size=112, batch_size=16, progress=False)
    wall = time.perf_counter() - t
    return {"images": n, "seconds": round(wall, 2), "seconds_per_image": round(wall / n, 4)}


def _project(topk_1: dict, atlas_1: dict, dissect: dict, atlas_speed: dict | None) -> dict:
    img_s = topk_1["images_per_second"]  # one worker, one thread
    unit_s = 60.0 / atlas_1["units_per_minute"]  # one worker, these small settings
    r50_unit_s = None
    part3 = (atlas_speed or {}).get("part3_resnet50_cpu") or {}
    if part3.get("units"):
        r50_unit_s = float(part3["wall_s"]) / float(part3["units"])  # default settings, this CPU, 2 threads
    basis = ("results/atlas_speed.json part 3: default settings (128 px, 512 steps, batch 32), 2 threads"
             if r50_unit_s else "Lite0's measured per-unit cost (small settings) x ResNet-50/Lite0 FLOPs")
    if r50_unit_s is None:
        r50_unit_s = unit_s * FLOPS["resnet50"] / FLOPS["efficientnet_lite0"]
    out = {"assumptions": {
        "per_worker": "one worker = one core (1 torch thread), the measured 1-worker throughput; workers scale "
                      "linearly across nodes (the shards are independent and the driver only merges states)",
        "resnet50_topk": "per-image cost scaled from Lite0 by forward FLOPs (4.1 vs 0.40 GFLOP)",
        "resnet50_atlas_unit_seconds_basis": basis,
        "atlas_settings": "the benchmark's small settings (64 px, 48 steps) unless atlas_speed.json gives a cost",
    }, "per_image_seconds": {"lite0_topk": round(1 / img_s, 4),
                             "resnet50_topk": round(FLOPS["resnet50"] / FLOPS["efficientnet_lite0"] / img_s, 4),
                             "lite0_dissect_two_passes": dissect["seconds_per_image"]},
           "per_unit_seconds": {"lite0_atlas": round(unit_s, 2), "resnet50_atlas": round(r50_unit_s, 2)},
           "hours": {}}
    for nodes, workers in ((1, 2), (8, 16), (32, 32)):
        cores = nodes * workers
        key = f"{nodes} node(s) x {workers} workers"
        out["hours"][key] = {
            **{f"topk Lite0 {name}": round(n / img_s / cores / 3600, 2) for name, n in DATASETS.items() if name != "Broden"},
            **{f"topk ResNet-50 {name}": round(n * out["per_image_seconds"]["resnet50_topk"] / cores / 3600, 2)
               for name, n in DATASETS.items() if name != "Broden"},
            "dissect Lite0 Broden": round(DATASETS["Broden"] * dissect["seconds_per_image"] / cores / 3600, 2),
            "atlas every ResNet-50 unit": round(RESNET50_UNITS * r50_unit_s / cores / 3600, 2),
        }
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", default=None, help="image folder (default: the offline photo set)")
    ap.add_argument("--limit", type=int, default=64)
    ap.add_argument("--units", type=int, default=16)
    ap.add_argument("--steps", type=int, default=48)
    ap.add_argument("--quick", action="store_true", help="32 images, 8 units, 16 steps")
    args = ap.parse_args(argv)
    if args.quick:
        args.limit, args.units, args.steps = 32, 8, 16
    if args.images is None:
        from neuronscope.data.photoset import photo_folder

        args.images = str(photo_folder())
    paths = list_images(args.images)[: args.limit]
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    model = load_model("efficientnet_lite0", device="cpu")
    tmp = Path(tempfile.mkdtemp(prefix="ns_ray_bench_"))
    try:
        topk = [_topk(model, paths, w, tmp) for w in (None, 1, 2)]
        for r in topk:
            print(f"top-k {r['backend']} {r['workers']} worker(s): {r['images']} images, {r['images_per_second']} images/s "
                  f"(start-up {r['startup_seconds']} s not counted; load {r['load_before']})", flush=True)
        atlas = [_atlas(w, tmp, args.units, args.steps) for w in (None, 1, 2)]
        for r in atlas:
            print(f"atlas {r['backend']} {r['workers']} worker(s): {r['units']} units, {r['units_per_minute']} units/min "
                  f"(start-up {r['startup_seconds']} s not counted; load {r['load_before']})", flush=True)
        dis = _dissect_cost(model, tmp, 16 if args.quick else 32)
        print(f"dissection (local, two passes, blocks.10): {dis['seconds_per_image']} s per image", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    speed_file = RESULTS.parent / "atlas_speed.json"
    atlas_speed = json.loads(speed_file.read_text()) if speed_file.is_file() else None
    projection = _project(topk[1], atlas[1], dis, atlas_speed)
    print(json.dumps(projection, indent=1))
    result = {
        "claim": "images/s of the top-k pass and units/min of the atlas on 1 and 2 local Ray workers, and projections",
        "neuronscope": __version__, "torch": torch.__version__, "cpu": cpu_name(), "cores": os.cpu_count(),
        "settings": {"images": len(paths), "topk_layers": LAYERS, "topk_size": 224, "atlas_units": args.units,
                     "atlas_steps": args.steps, "atlas_size": 64},
        "topk": topk, "atlas": atlas, "dissect": dis, "projection": projection,
        "summary": {
            "topk_images_per_s": {f"{r['backend']}-{r['workers']}": r["images_per_second"] for r in topk},
            "atlas_units_per_min": {f"{r['backend']}-{r['workers']}": r["units_per_minute"] for r in atlas},
        },
    }
    atomic_write_json(RESULTS, result)
    return result


if __name__ == "__main__":
    main()
