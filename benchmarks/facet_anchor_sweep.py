"""Choose the facet anchor weight on ONE class outside the facet-diversity benchmark.

For ``--class`` (default daisy: no overlap with the benchmark's goldfish, palace, hammer,
dam, screwdriver, lion), the facets are found once on the offline photo set (Lite0,
160 px, 6 views), then rendered with the lucid preset for every anchor weight in
``--anchors`` (one batch; the same seeds for every weight), next to K random-seed renders.
The held-out judge Lite1 (a separate process, as in ``facet_diversity.py``) scores each
set: top-5 pass count and D = mean pairwise (1 - cosine) of its features over the passing
images. The MFV schedule is not run (the anchor only enters the preset renders).

Writes ``benchmarks/results/facet_anchor_sweep.json``.

    python benchmarks/facet_anchor_sweep.py [--class daisy] [--anchors 0 1 3 10]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from facet_diversity import diversity, load_average  # noqa: E402

RESULTS = HERE / "results" / "facet_anchor_sweep.json"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--class", dest="cls", default="daisy")
    ap.add_argument("--anchors", type=float, nargs="+", default=[0.0, 1.0, 3.0, 10.0])
    ap.add_argument("--images", default=None)
    ap.add_argument("--size", type=int, default=160)
    ap.add_argument("--views", type=int, default=6)
    ap.add_argument("--steps", type=int, default=None, help="lucid steps (default the preset's 512)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if any(a < 0 for a in args.anchors):
        ap.error("anchor weights must be >= 0")
    from neuronscope import load_model
    from neuronscope.facets import labels_from_manifest, parse_unit
    from neuronscope.facets.mfv import measure
    from neuronscope.facets.pipeline import discover_facets, facet_objectives
    from neuronscope.images import atomic_write_json
    from neuronscope.optim import render

    if args.images is None:
        from neuronscope.data.photoset import photo_folder

        args.images = str(photo_folder())
    load0, t0 = load_average(), time.perf_counter()
    model = load_model("efficientnet_lite0", device="cpu")
    unit = parse_unit(model, f"class:{args.cls}")
    facets, ex, cl = discover_facets(model, unit, args.images, views=args.views, size=args.size,
                                     labels=labels_from_manifest(args.images), progress=False)
    k = len(facets)
    if k < 2:
        raise SystemExit(f"{unit.label}: {k} facet ({cl.k_rule}); the anchor needs at least 2 - choose another class")
    print(f"{unit.label}: {k} facets ({cl.k_rule}), {ex.how}", flush=True)
    init = torch.stack([f.mean_image for f in facets])
    init = torch.nn.functional.interpolate(init, size=(args.size, args.size), mode="bilinear", align_corners=False,
                                           antialias=True).clamp(0.02, 0.98)
    objs, seeds_init = [], []
    for a in args.anchors:
        o, _ = facet_objectives(model, unit, facets, a)
        objs += o
    n = len(args.anchors)
    r = render(model, objs, size=args.size, steps=args.steps, preset="lucid",
               seed=[1 + i for i in range(k)] * n, init=init.repeat(n, 1, 1, 1), progress=False)
    seeds = render(model, [unit.objective() for _ in range(k)], size=args.size, steps=args.steps, preset="lucid",
                   seed=[1000 + i for i in range(k)], progress=False)
    values = measure(model, unit, r.images, size=args.size)
    with tempfile.TemporaryDirectory(prefix="ns_anchor_") as tmp:
        folder = Path(tmp)
        for i, a in enumerate(args.anchors):
            np.save(folder / f"{unit.index}_anchor{i}.npy", r.images[i * k:(i + 1) * k].numpy())
        np.save(folder / f"{unit.index}_seeds.npy", seeds.images.numpy())
        subprocess.run([sys.executable, str(HERE / "facet_diversity.py"), "--judge", str(folder),
                        "--threads", str(args.threads)], check=True)
        verdicts = json.loads((folder / "judge.json").read_text())
    rows = {}
    for name in [f"anchor{i}" for i in range(n)] + ["seeds"]:
        v = verdicts[f"{unit.index}_{name}"]
        ok = np.array(v["top5"], bool)
        d = diversity(np.array(v["features"])[ok])
        label = name if name == "seeds" else f"anchor={args.anchors[int(name[6:])]:g}"
        rows[label] = {"passed": int(ok.sum()), "images": len(ok), "D": None if np.isnan(d) else round(d, 4),
                       "D_all": round(diversity(np.array(v["features"])), 4)}
        if name != "seeds":
            i = int(name[6:])
            rows[label]["lite0_value"] = [round(float(x), 2) for x in values[i * k:(i + 1) * k]]
        print(f"{label}: top-5 {rows[label]['passed']}/{k}, D {rows[label]['D']}", flush=True)
    result = {"class": unit.label, "k": k, "k_rule": cl.k_rule, "examples": ex.how,
              "best_real": [round(f.best_real, 2) for f in facets], "anchors": args.anchors, "results": rows,
              "settings": {"size": args.size, "views": args.views, "lucid_steps": args.steps or 512,
                           "threads": args.threads},
              "load_average_start": load0, "load_average_end": load_average(),
              "seconds": round(time.perf_counter() - t0, 1)}
    atomic_write_json(RESULTS, result)
    print(f"wrote {RESULTS}")
    return result


if __name__ == "__main__":
    main()
