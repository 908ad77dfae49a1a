"""The prior's trade-off: HF ratio against Lite2 top-1 as the natural-image prior's weight varies.

Runs ``naturalness.py`` once per setting on the 31 held-out classes (never the 16 benchmark classes)
with the ``natural`` recipe and the prior at weight W applied every E-th step (``W:E``; 0 = no prior,
the plain lucid recipe), then plots the curve. Renders are cached per setting, so a rerun only judges.

    python benchmarks/prior_sweep.py --points 0 0.2:1 0.3:1 0.3:2 0.4:2 0.5:4 0.65:4 0.8:4

Writes ``benchmarks/results/prior_sweep.json`` and ``benchmarks/results/prior_sweep.png``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import naturalness  # noqa: E402


def plot(points: list[dict], path: Path) -> None:
    """HF ratio (x, log scale) against Lite2 top-1 (y), one labelled point per setting; the photos' band shaded."""
    import math

    from PIL import Image, ImageDraw

    W, H, m = 640, 420, 60
    img = Image.new("RGB", (W, H), "white")
    d = ImageDraw.Draw(img)
    lo, hi = math.log10(0.1), math.log10(10)

    y0 = 0.5  # top-1 axis from 0.5 to 1: every setting sits in the upper half

    def xy(hf, top1):
        return (m + (math.log10(max(hf, 0.1)) - lo) / (hi - lo) * (W - 2 * m),
                H - m - (max(top1, y0) - y0) / (1 - y0) * (H - 2 * m))

    x0, _ = xy(0.7, 0)
    x1, _ = xy(1.5, 0)
    d.rectangle([x0, m, x1, H - m], fill=(225, 240, 225))
    d.rectangle([m, m, W - m, H - m], outline="black")
    for v in (0.1, 0.3, 1, 3, 10):
        x, _ = xy(v, 0)
        d.line([x, H - m, x, H - m + 5], fill="black")
        d.text((x - 8, H - m + 8), f"{v:g}", fill="black")
    for t in (0.5, 0.6, 0.7, 0.8, 0.9, 1.0):
        _, y = xy(1, t)
        d.line([m - 5, y, m, y], fill="black")
        d.text((m - 38, y - 6), f"{t:.2f}", fill="black")
    d.text((W // 2 - 120, H - 28), "HF ratio (median, 1 = photos; band 0.7-1.5 shaded)", fill="black")
    d.text((8, 12), "Lite2 top-1 on held-out classes vs fine detail, as the prior's weight varies", fill="black")
    for every, colour in ((1, (40, 90, 200)), (2, (200, 90, 40)), (4, (40, 160, 60))):
        line = sorted((p for p in points if p["every"] in (every, 0)), key=lambda p: p["weight"])
        pts = [xy(p["hf_ratio_median"], p["lite2_top1"]) for p in line]
        if len(pts) > 1:
            d.line(pts, fill=colour, width=2)
        for p, (x, y) in zip(line, pts):
            d.ellipse([x - 4, y - 4, x + 4, y + 4], fill=colour)
    for i, p in enumerate(sorted(points, key=lambda p: p["hf_ratio_median"])):
        x, y = xy(p["hf_ratio_median"], p["lite2_top1"])
        label = "no prior" if p["weight"] == 0 else f"{p['weight']:g}/{p['every']}"
        d.text((x - 10, y + (8 if i % 2 else -20)), label, fill="black")
    d.text((m + 8, H - m - 20), "label W/E: weight W every E-th step; lines join equal E", fill="black")
    tmp = path.with_suffix(".tmp.png")
    img.save(tmp)
    tmp.replace(path)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", nargs="+", default=["0", "0.2:1", "0.3:1", "0.3:2", "0.4:2", "0.5:4", "0.65:4", "0.8:4"],
                    help="prior settings W:E (weight W every E-th step; 0: no prior)")
    ap.add_argument("--sigma", type=float, nargs=2, default=None, help="the prior's noise schedule (default: the natural preset's)")
    ap.add_argument("--limit", type=int, default=None, help="only the first N of the 31 held-out classes")
    ap.add_argument("--steps", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    from neuronscope.optim.presets import NATURAL_PRIOR

    points = []
    for spec in args.points:
        w, _, e = spec.partition(":")
        w, every = float(w), int(e or 1) if float(w) else 0
        prior = False if w == 0 else dict(NATURAL_PRIOR, weight=w, every=every,
                                          **({"sigma": args.sigma} if args.sigma else {}))
        tag = "_sweep_none" if w == 0 else f"_k_e{every}w{w:g}"
        tag += f"_s{args.sigma[0]:g}-{args.sigma[1]:g}" if args.sigma else ""
        rec = naturalness.main(["--tools", "ns-default", "--sets", "held31", "--steps", str(args.steps),
                                "--threads", str(args.threads), "--kw", json.dumps({"prior": prior}), "--tag", tag,
                                "--out", str(naturalness.WORK / "sweep" / f"{tag}.json")]
                               + (["--limit", str(args.limit)] if args.limit else []))
        r = rec["summary"]["tools"]["ns-default"]["held31"]
        points.append({"weight": w, "every": every, "prior": prior, **{k: r.get(k) for k in (
            "hf_ratio_median", "in_photo_band", "kid_x1000", "lite2_top1", "lite2_top5", "lite2_prob", "lite1_top1",
            "contrast_ratio", "colourfulness_ratio", "saturated", "seconds_per_image")}})
        print(points[-1], flush=True)
    out = HERE / "results" / "prior_sweep.json"
    from neuronscope.images import atomic_write_json

    atomic_write_json(out, {"claim": "HF ratio vs Lite2 top-1 as the prior's weight and period vary "
                                     "(held-out classes)", "limit": args.limit or 31, "steps": args.steps,
                            "points": points})
    plot(points, out.with_suffix(".png"))
    print(f"wrote {out} and {out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
