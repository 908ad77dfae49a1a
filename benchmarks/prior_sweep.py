"""The prior's trade-off: HF ratio against Lite2 top-1 as the natural-image prior's weight varies.

Runs ``naturalness.py`` once per weight on held-out classes (never the 16 benchmark classes) with
the ``lucid`` preset plus the prior at that weight (0 = no prior), then plots the curve.

    python benchmarks/prior_sweep.py --weights 0 0.1 0.2 0.3 0.5 --limit 8

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
    """HF ratio (x, log scale) against Lite2 top-1 (y), one labelled point per weight; the photos' band shaded."""
    import math

    from PIL import Image, ImageDraw

    W, H, m = 640, 420, 60
    img = Image.new("RGB", (W, H), "white")
    d = ImageDraw.Draw(img)
    lo, hi = math.log10(0.1), math.log10(10)

    def xy(hf, top1):
        return (m + (math.log10(max(hf, 0.1)) - lo) / (hi - lo) * (W - 2 * m), H - m - top1 * (H - 2 * m))

    x0, _ = xy(0.7, 0)
    x1, _ = xy(1.5, 0)
    d.rectangle([x0, m, x1, H - m], fill=(225, 240, 225))
    d.rectangle([m, m, W - m, H - m], outline="black")
    for v in (0.1, 0.3, 1, 3, 10):
        x, _ = xy(v, 0)
        d.line([x, H - m, x, H - m + 5], fill="black")
        d.text((x - 8, H - m + 8), f"{v:g}", fill="black")
    for t in (0, 0.25, 0.5, 0.75, 1.0):
        _, y = xy(1, t)
        d.line([m - 5, y, m, y], fill="black")
        d.text((m - 38, y - 6), f"{t:.2f}", fill="black")
    d.text((W // 2 - 120, H - 28), "HF ratio (median, 1 = photos; band 0.7-1.5 shaded)", fill="black")
    d.text((8, 12), "Lite2 top-1 on held-out classes vs fine detail, as the prior's weight varies", fill="black")
    pts = [xy(p["hf_ratio_median"], p["lite2_top1"]) for p in points]
    d.line(pts, fill=(40, 90, 200), width=2)
    for p, (x, y) in zip(points, pts):
        d.ellipse([x - 4, y - 4, x + 4, y + 4], fill=(40, 90, 200))
        d.text((x + 6, y - 14), f"w={p['weight']:g}", fill="black")
    tmp = path.with_suffix(".tmp.png")
    img.save(tmp)
    tmp.replace(path)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", type=float, nargs="+", default=[0, 0.1, 0.2, 0.3, 0.5])
    ap.add_argument("--sigma", type=float, nargs=2, default=None, help="the prior's noise schedule (default: the natural preset's)")
    ap.add_argument("--limit", type=int, default=8, help="held-out classes used (the first N of the 31)")
    ap.add_argument("--steps", type=int, default=256)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    from neuronscope.optim.presets import NATURAL_PRIOR

    points = []
    for w in args.weights:
        prior = False if w == 0 else dict(NATURAL_PRIOR, weight=w, **({"sigma": args.sigma} if args.sigma else {}))
        rec = naturalness.main(["--tools", "ns-lucid", "--sets", "held31", "--limit", str(args.limit), "--steps",
                                str(args.steps), "--threads", str(args.threads), "--kw", json.dumps({"prior": prior}),
                                "--tag", f"_sweep_w{w:g}" + (f"_s{args.sigma[0]:g}-{args.sigma[1]:g}" if args.sigma else ""),
                                "--out", str(naturalness.WORK / "sweep" / f"w{w:g}.json")])
        r = rec["summary"]["tools"]["ns-lucid"]["held31"]
        points.append({"weight": w, "prior": prior, **{k: r.get(k) for k in (
            "hf_ratio_median", "in_photo_band", "lite2_top1", "lite2_top5", "lite2_prob", "lite1_top1", "saturated",
            "seconds_per_image")}})
        print(points[-1], flush=True)
    out = HERE / "results" / "prior_sweep.json"
    from neuronscope.images import atomic_write_json

    atomic_write_json(out, {"claim": "HF ratio vs Lite2 top-1 as the prior weight varies (held-out classes)",
                            "limit": args.limit, "steps": args.steps, "points": points})
    plot(points, out.with_suffix(".png"))
    print(f"wrote {out} and {out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
