"""Claim: Network Dissection of Lite0 on a 200-photo colour-concept set: results and runtime.

Builds the colour dataset of scripts/make_dissect_demo_data.py (unless --data is
given), dissects the given layers in one run (two passes over the data), and
reports per layer the number of detectors and the best units, with wall time
and this process's CPU time per phase (1 thread; the machines are shared, so
the load average is recorded too). Prints the figures and writes
``benchmarks/results/dissect_lite0.json``.

    python benchmarks/dissect_lite0.py [--data DIR] [--layers stem blocks.4] [--limit 200] [--quick]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

from neuronscope import load_model
from neuronscope.images import atomic_write_json

RESULTS = Path(__file__).resolve().parent / "results" / "dissect_lite0.json"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=None, help="dataset folder (default: build the colour set)")
    ap.add_argument("--layers", nargs="+", default=["stem", "blocks.0", "blocks.1.expand_act", "blocks.2", "blocks.4"])
    ap.add_argument("--limit", type=int, default=200)
    ap.add_argument("--quick", action="store_true", help="smoke run: 24 photos, layers stem and blocks.4")
    args = ap.parse_args(argv)
    if args.quick:
        args.limit, args.layers = 24, ["stem", "blocks.4"]
    torch.set_num_threads(1)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
    from make_dissect_demo_data import find_photos

    from neuronscope.dissect import dissect, load_dataset, render_strips
    from neuronscope.dissect.synthetic import make_colour_dataset

    with tempfile.TemporaryDirectory() as tmp:
        data = args.data
        phases = {}
        if data is None:
            t, c = time.perf_counter(), time.process_time()
            photos = find_photos(None, args.limit, Path(tmp))
            data = make_colour_dataset(photos, Path(tmp) / "colours", progress=False)
            phases["build_dataset"] = (time.perf_counter() - t, time.process_time() - c)
        model = load_model("efficientnet_lite0", device="cpu")
        load0 = os.getloadavg()[0]
        t, c = time.perf_counter(), time.process_time()
        ds = load_dataset(data, limit=args.limit, progress=False)
        phases["validate"] = (time.perf_counter() - t, time.process_time() - c)
        t, c = time.perf_counter(), time.process_time()
        results = dissect(model, ds, args.layers, progress=False)
        phases["dissect_two_passes"] = (time.perf_counter() - t, time.process_time() - c)
        t, c = time.perf_counter(), time.process_time()
        for r in results.values():
            render_strips(model, ds, r, size=model.input_size, progress=False)
        phases["report_images"] = (time.perf_counter() - t, time.process_time() - c)
    layers = []
    for name, r in results.items():
        ranked = r.ranked()
        det = [u for u in ranked if u.detector]
        layers.append({
            "layer": name, "units": r.units, "detectors": len(det),
            "concepts": sorted({u.concept.name for u in det}),
            "best": [{"unit": u.unit, "label": u.concept.name if u.concept else None, "iou": round(u.iou, 4)} for u in ranked[:5]],
            "max_rank_error": float(r.rank_error.max()),
        })
        print(f"{name}: {len(det)} of {r.units} units are detectors {sorted({u.concept.name for u in det})}; best "
              + ", ".join(f"{b['unit']}:{b['label']} {b['iou']:.3f}" for b in layers[-1]["best"][:3]))
    for k, (w, c) in phases.items():
        print(f"  {k}: {w:.1f} s wall, {c:.1f} s CPU")
    summary = {"images": len(ds), **{f"detectors_{r['layer']}": f"{r['detectors']}/{r['units']}" for r in layers},
               "cpu_s": round(sum(c for k, (w, c) in phases.items() if k != "build_dataset"), 1)}
    atomic_write_json(RESULTS, {
        "claim": "Network Dissection of efficientnet_lite0 on colour concepts", "images": len(ds), "threads": 1,
        "quick": args.quick, "summary": summary,
        "load_average": [round(load0, 2), round(os.getloadavg()[0], 2)],
        "phases": {k: {"wall_s": round(w, 1), "cpu_s": round(c, 1)} for k, (w, c) in phases.items()},
        "layers": layers,
    })
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
