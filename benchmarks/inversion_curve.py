"""Claim: how much of a photo each Lite0 layer keeps (inversion quality by depth), and its cost.

Reconstructs one photo from each of 13 layers, stem to logits, in one batch
(Mahendran & Vedaldi 2015 settings, neuronscope.inversion), and reports per
layer the Pearson correlation with the original after the model's
preprocessing and the relative feature error, plus wall time and this
process's CPU time (1 thread; the machines are shared, so the load average is
recorded too). Prints the figures and writes
``benchmarks/results/inversion_curve.json``.

    python benchmarks/inversion_curve.py [--image coffee|chelsea|PATH] [--size 224] [--steps 300] [--quick]

Full run: ~10-25 min on the shared 2-core machine; --quick: about a minute.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch

from neuronscope import load_model
from neuronscope.images import atomic_write_json, center_crop_resize, load_image, pil_to_tensor
from neuronscope.inversion import invert

RESULTS = Path(__file__).resolve().parent / "results" / "inversion_curve.json"
LAYERS = ["stem", "blocks.0", "blocks.2", "blocks.4", "blocks.5", "blocks.7", "blocks.9", "blocks.10",
          "blocks.12", "blocks.14", "blocks.15", "head", "fc"]


def photo(name: str):
    if Path(name).exists():
        return load_image(name)
    import skimage.data as data
    from PIL import Image

    return Image.fromarray(np.asarray(getattr(data, name)()))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--image", nargs="+", default=["coffee", "chelsea"])
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--layers", nargs="+", default=LAYERS)
    ap.add_argument("--quick", action="store_true", help="smoke run: coffee, 96 px, 30 steps, 4 layers")
    args = ap.parse_args(argv)
    if args.quick:
        args.image, args.size, args.steps = ["coffee"], 96, 30
        args.layers = ["stem", "blocks.4", "blocks.10", "head"]
    torch.set_num_threads(1)
    model = load_model("efficientnet_lite0", device="cpu")
    runs = []
    for name in args.image:
        x = pil_to_tensor(center_crop_resize(photo(name), args.size))
        load0 = os.getloadavg()[0]
        t, c = time.perf_counter(), time.process_time()
        res = invert(model, x, args.layers, steps=args.steps, progress=False)
        wall, cpu = time.perf_counter() - t, time.process_time() - c
        run = {
            "image": name,
            "size": args.size,
            "steps": args.steps,
            "rows": len(res.layers),
            "wall_s": round(wall, 1),
            "cpu_s": round(cpu, 1),
            "cpu_s_per_step": round(cpu / args.steps, 3),
            "load_average": [round(load0, 2), round(os.getloadavg()[0], 2)],
            "layers": [
                {"layer": l, "correlation": round(r, 4), "feature_error": round(e, 4), "lambda_tv": lam}
                for l, r, e, lam in zip(res.layers, res.correlation, res.feature_error, res.lambda_tv)
            ],
        }
        runs.append(run)
        print(f"{name} {args.size}px {args.steps} steps, {len(res.layers)} layers: {wall:.0f} s wall, {cpu:.0f} s CPU")
        for row in run["layers"]:
            print(f"  {row['layer']:<10} r = {row['correlation']:.3f}  feature error {row['feature_error']:.4f}")
    summary = {f"r_{run['image']}": " ".join(f"{row['layer']}:{row['correlation']:.2f}" for row in run["layers"])
               for run in runs}
    summary["cpu_s_per_step"] = [run["cpu_s_per_step"] for run in runs]
    atomic_write_json(RESULTS, {"claim": "inversion quality by depth on efficientnet_lite0", "threads": 1,
                                "quick": args.quick, "torch": torch.__version__, "summary": summary, "runs": runs})
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
