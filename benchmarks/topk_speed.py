"""Claim: images per second of the top-k pass (``neuronscope topk``) over the offline photo set.

Runs ``run_topk`` for two Lite0 layers (blocks.5 and blocks.10, k = 9) over the
offline photo set at 224 px, batch 16, with a store (checkpoints every 30 s, views
kept for max patches) and in memory, with 1 and 2 threads. Reports images/s as
wall time and as this process's CPU time (the machine is shared; the load average
is recorded), and writes ``benchmarks/results/topk_speed.json``.

    python benchmarks/topk_speed.py [--images DIR] [--limit N] [--quick]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import torch

from neuronscope import __version__, load_model
from neuronscope.data import run_topk
from neuronscope.images import atomic_write_json, list_images

from _machine import cpu_name, load_average  # benchmarks/ is the script's folder

RESULTS = Path(__file__).resolve().parent / "results" / "topk_speed.json"
LAYERS = ["blocks.5", "blocks.10"]


def one_run(model, paths, threads: int, store: bool, batch: int) -> dict:
    torch.set_num_threads(threads)
    tmp = Path(tempfile.mkdtemp(prefix="ns_topk_bench_"))
    try:
        load = load_average()
        t, c = time.perf_counter(), time.process_time()
        run = run_topk(model, paths, LAYERS, k=9, store=tmp / "store" if store else None, batch_size=batch,
                       progress=False)
        wall, cpu = time.perf_counter() - t, time.process_time() - c
        if run.store is not None:
            run.store.close()
        n = run.images_processed
        return {"threads": threads, "store": store, "batch": batch, "images": n, "seconds": round(wall, 2),
                "images_per_second": round(n / wall, 2), "cpu_seconds": round(cpu, 2),
                "images_per_cpu_second": round(n / cpu, 2), "load_before": load, "load_after": load_average()}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", default=None, help="image folder (default: the offline photo set)")
    ap.add_argument("--limit", type=int, default=None, help="only the first N images")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--quick", action="store_true", help="96 images, 2 threads, with a store only")
    args = ap.parse_args(argv)
    if args.images is None:
        from neuronscope.data.photoset import photo_folder

        args.images = str(photo_folder())
    paths = list_images(args.images)
    limit = 96 if args.quick and args.limit is None else args.limit
    paths = paths[:limit] if limit else paths
    model = load_model("efficientnet_lite0", device="cpu")
    configs = [(2, True)] if args.quick else [(1, True), (2, True), (2, False)]
    runs = []
    for threads, store in configs:
        r = one_run(model, paths, threads, store, args.batch)
        print(f"threads {threads}, {'store' if store else 'in memory'}: {r['images']} images in {r['seconds']} s = "
              f"{r['images_per_second']} images/s wall, {r['images_per_cpu_second']} images per CPU-second "
              f"(load {r['load_before']})", flush=True)
        runs.append(r)
    best = max(runs, key=lambda r: r["images_per_second"])
    result = {
        "claim": "images/s of the top-k pass over the offline photo set, Lite0 at 224 px, layers blocks.5 + blocks.10, k=9",
        "neuronscope": __version__, "torch": torch.__version__, "model": "efficientnet_lite0", "size": 224,
        "layers": LAYERS, "images_folder": str(args.images), "runs": runs,
        "summary": {"images": best["images"], "best_images_per_second": best["images_per_second"],
                    "with_store_2_threads": next((r["images_per_second"] for r in runs if r["threads"] == 2 and r["store"]), None),
                    "images_per_cpu_second": best["images_per_cpu_second"]},
    }
    atomic_write_json(RESULTS, result)
    print(f"wrote {RESULTS}")
    return result


if __name__ == "__main__":
    main()
