"""How the natural render's last prior step was chosen: its noise level and weight, on the held-out classes.

A ``natural`` render used to end on the Adam steps after its last every-4th prior step, and its
picture kept their finest-scale noise. ``DenoisingPrior(final_sigma=...)`` ends the render on one
more prior step. This sweep renders the 31 held-out classes of ``naturalness.py`` (never the 16
benchmark classes) *without* that step, once per seed, then applies the step at each (noise level,
weight) to the finished renders (the same operation the render's last step performs, on the 8-bit
PNGs) and judges every variant with ``naturalness.py``'s own protocol (Lite2 recognition, HF ratio,
KID to the offline photos).

    python benchmarks/last_step_sweep.py                       # seeds 0 and 1, the default grid
    python benchmarks/last_step_sweep.py --seeds 0 --points 0.05:0.8

Renders are cached by ``naturalness.py`` (``--work``); writes ``benchmarks/results/last_step_sweep.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import naturalness  # noqa: E402

RESULTS = HERE / "results" / "last_step_sweep.json"
POINTS = ["0.03:0.8", "0.04:0.8", "0.05:0.8", "0.05:1.0", "0.06:0.8", "0.08:0.8"]


def with_last_step(paths: list[str], folder: Path, sigma: float, weight: float) -> list[str]:
    """Each PNG of ``paths`` after one prior step at ``sigma`` and ``weight``, saved as an 8-bit PNG in ``folder``."""
    import numpy as np
    import torch
    from PIL import Image

    from neuronscope.images import load_image, pil_to_tensor
    from neuronscope.priors import DenoisingPrior

    prior = DenoisingPrior(weight=weight, sigma=(sigma, sigma), final_sigma=sigma).start(2, "cpu", torch.float32)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for p in paths:
        x = pil_to_tensor(load_image(p))[None]
        y = prior.apply(x, 1)[0].permute(1, 2, 0).numpy()
        dst = folder / Path(p).name
        Image.fromarray((np.clip(y, 0, 1) * 255 + 0.5).astype(np.uint8)).save(dst)
        out.append(str(dst))
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--points", nargs="+", default=POINTS, help="SIGMA:WEIGHT of the last step")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", default=str(naturalness.WORK))
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args(argv)
    points = [tuple(float(v) for v in p.split(":")) for p in args.points]

    from neuronscope.optim.presets import NATURAL_PRIOR

    started = time.time()
    no_last = {**NATURAL_PRIOR, "sigma": list(NATURAL_PRIOR["sigma"]), "final_sigma": None}
    rows: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            record = naturalness.main(["--sets", "held31", "--tools", "ns-default", "--seed", str(seed),
                                       "--kw", json.dumps({"prior": no_last}), "--tag", "_nolast",
                                       "--threads", str(args.threads), "--work", args.work,
                                       "--out", str(Path(tmp) / f"nolast{seed}.json")])
            folder = naturalness.work_folder(args.work, record["steps"], record["size"], "_nolast", seed) / "ns-default" / "held31"
            paths = [str(folder / naturalness._file(t)) for t in record["sets"]["held31"]]
            renders = {f"none s{seed}": {"held31": paths}}
            for sigma, weight in points:
                renders[f"{sigma}/{weight} s{seed}"] = {"held31": with_last_step(
                    paths, Path(tmp) / f"s{seed}_{sigma}_{weight}", sigma, weight)}
            photos = naturalness._photo_paths()
            images = sorted({p for s in renders.values() for ps in s.values() for p in ps})
            judged = naturalness._run_child("judge", {"images": images, "photos": photos, "threads": args.threads},
                                            args.threads, 7200)
            summary = naturalness.summarize(judged, renders, {}, photos)
            for name, per in summary["tools"].items():
                rows[name] = {k: per["held31"].get(k) for k in ("lite2_top1", "lite2_prob", "hf_ratio_median",
                                                                "kid_x1000", "contrast_ratio", "saturated")}
    print("| last step (sigma/weight, seed) | Lite2 top-1 | Lite2 p | HF ratio | KID x1000 | saturated |")
    print("|---|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['lite2_top1']} | {r['lite2_prob']} | {r['hf_ratio_median']} | {r['kid_x1000']} | "
              f"{r['saturated']} |")
    from neuronscope.images import atomic_write_json

    result = {"claim": "the natural render's last prior step, chosen on the 31 held-out classes",
              "seeds": args.seeds, "points": args.points, "rows": rows, "seconds": round(time.time() - started, 1)}
    atomic_write_json(Path(args.out), result)
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
