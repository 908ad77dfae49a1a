"""Claim: multifaceted renders of a class are more diverse than plain random-seed renders, at equal judge accuracy.

For each class (default: goldfish, palace, hammer — classes the offline photo set covers):

1. **facets** — ``multifaceted`` on the offline photo set with EfficientNet-Lite0:
   K facets (K by the silhouette criterion), each rendered from its mean image with
   (a) the paper's mean-image schedule (``mfv``, with the default target-driven
   refinement) and (b) the lucid preset with the cluster anchor (``facet-lucid``;
   ``--anchor``, default the frozen ``facets.pipeline.ANCHOR``; 0 = plain unit objective);
2. **seeds** — K plain renders of the same class logit with the lucid preset from
   K random seeds (no data, no diversity term).

Only after all rendering, a separate process loads the held-out judge J1 =
EfficientNet-Lite1 (240 px; never seen by the renders) and computes, per image, its
pooled penultimate features and whether the class is in J1's top-5 (the image goes
through the evaluation transform: resize to 240/0.875, centre crop). Per method:

* accuracy = share of images with the class in J1's top-5;
* D = mean pairwise (1 - cosine) of J1 features over the images that pass (needs 2);
* D_eff = D * passed / K;
* contrast and colourfulness (:mod:`neuronscope.priors.metrics`) of every image, with the
  medians of the offline photos (at full resolution) for scale; the facets' mean images
  (``mean-image``, where both renders start) are measured and judged too.

``--methods mfv`` renders only the paper-schedule rows (no preset render, no seeds) and
writes ``facet_diversity_mfv.{json,png}`` instead, leaving the full run's files alone.

Writes ``benchmarks/results/facet_diversity.json`` and a picture of every image,
``benchmarks/results/facet_diversity.jpg``. Each class's renders are kept in ``--work`` (one folder per
settings, under ``~/.cache/neuronscope/bench/facet_diversity``), so an interrupted run resumes at the
next class; delete that folder after changing the render code.

    python benchmarks/facet_diversity.py [--classes goldfish palace hammer] [--size 160] [--quick] [--methods mfv]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "facet_diversity.json"
PICTURE = HERE / "results" / "facet_diversity.jpg"
WORK = Path(os.environ.get("NEURONSCOPE_BENCH_CACHE", Path.home() / ".cache" / "neuronscope" / "bench")) / "facet_diversity"
METHODS = ("mfv", "facet-lucid", "seeds")
SHOWN = ("mean-image", *METHODS)  # the mean images are measured and judged beside the renders


def load_average():
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


# ---------------------------------------------------------------- rendering (Lite0 only)

def render_all(classes, images: str, size: int, views: int, iter_scale: float, steps: int | None, out: Path,
               anchor: float, sheets: Path | None = None, methods=METHODS, mfv_colour: str | None = "photo") -> dict:
    from neuronscope import load_model
    from neuronscope.facets import labels_from_manifest, multifaceted, parse_unit
    from neuronscope.images import atomic_write_json
    from neuronscope.optim import render

    model = load_model("efficientnet_lite0", device="cpu")
    labels = labels_from_manifest(images)
    info = {}
    for name in classes:
        unit = parse_unit(model, f"class:{name}")
        done = out / f"{name}.info.json"
        if done.exists():  # rendered by an earlier, interrupted run with the same settings
            info[name] = json.loads(done.read_text())
            print(f"{unit.label}: cached in {out}", flush=True)
            continue
        t = time.perf_counter()
        res = multifaceted(model, unit, images, views=views, labels=labels, size=size, iter_scale=iter_scale,
                           preset="lucid" if "facet-lucid" in methods else None, preset_steps=steps, anchor=anchor,
                           mfv_colour=mfv_colour, progress=False)
        k = len(res.facets)
        t_facets = time.perf_counter() - t
        if sheets is not None:  # the same sheet and JSON as `neuronscope facets ... --views V --size S`
            from neuronscope.cli.facets import summary
            from neuronscope.facets import write_facet_sheet
            from neuronscope.images import atomic_write_json

            d = sheets / f"facets_{name}"
            d.mkdir(parents=True, exist_ok=True)
            write_facet_sheet(res, d)
            atomic_write_json(d / f"{unit.slug}.json", summary(res))
        t = time.perf_counter()
        imgs = {"mean-image": torch.stack([f.mean_image for f in res.facets]),
                "mfv": torch.stack([f.image for f in res.facets])}
        if "facet-lucid" in methods:
            imgs["facet-lucid"] = torch.stack([f.preset_image for f in res.facets])
        if "seeds" in methods:
            imgs["seeds"] = render(model, [unit.objective() for _ in range(k)], size=size, steps=steps, preset="lucid",
                                   seed=[1000 + i for i in range(k)], progress=False).images
        t_seeds = time.perf_counter() - t
        for method, x in imgs.items():
            np.save(out / f"{unit.index}_{method}.npy", x.numpy())
        info[name] = {"class": unit.index, "label": unit.label, "k": k, "k_rule": res.meta["k_rule"],
                      "examples": res.meta["examples"], "duplicates_dropped": len(res.duplicates),
                      "anchor_applied": res.meta.get("anchor_layer") is not None,
                      "mfv_refine_iterations": [f.refine_iterations for f in res.facets],
                      "mfv_colour": res.meta.get("mfv_colour"),
                      "lite0_value": {"mean-image": [f.mean_value for f in res.facets],
                                      "mfv": [f.value for f in res.facets],
                                      **({"facet-lucid": [f.preset_value for f in res.facets]}
                                         if "facet-lucid" in methods else {}),
                                      "best_real": [f.best_real for f in res.facets]},
                      "seconds": {"facets": round(t_facets, 1), "seeds": round(t_seeds, 1)}}
        atomic_write_json(done, info[name])  # last: the class's images are all saved
        print(f"{unit.label}: {k} facets ({res.meta['k_rule']}) in {t_facets:.0f} s; {k} seed renders in {t_seeds:.0f} s",
              flush=True)
    return info


# ---------------------------------------------------------------- judging (Lite1, separate process)

def judge(folder: Path) -> None:
    """Run in a fresh process: J1 features and top-5 membership for every saved image."""
    from neuronscope import load_model
    from neuronscope.facets.embed import embed
    from neuronscope.facets.mfv import eval_view

    j1 = load_model("efficientnet_lite1", device="cpu")
    out = {}
    for f in sorted(folder.glob("*.npy")):
        k = int(f.stem.split("_", 1)[0])
        x = eval_view(j1, torch.from_numpy(np.load(f)))
        feats = embed(j1, x)
        with torch.inference_mode():
            top5 = j1(x).topk(5, dim=1).indices
        out[f.stem] = {"features": feats.tolist(), "top5": (top5 == k).any(1).tolist()}
    (folder / "judge.json").write_text(json.dumps(out))


def diversity(feats: np.ndarray) -> float:
    if len(feats) < 2:
        return float("nan")
    e = feats / (np.linalg.norm(feats, axis=1, keepdims=True) + 1e-8)
    sim = e @ e.T
    iu = np.triu_indices(len(e), 1)
    return float(np.mean(1.0 - sim[iu]))


def picture(folder: Path, info: dict, methods, path: Path) -> None:
    from PIL import Image

    from neuronscope.atomic import atomic_write_bytes, png_bytes
    from neuronscope.priors.metrics import colourfulness, contrast
    from neuronscope.sheets import as_pil, caption_block, stack

    rows = []
    for name, c in info.items():
        for method in methods:
            x = torch.from_numpy(np.load(folder / f"{c['class']}_{method}.npy"))
            tiles = [as_pil(i).resize((96, 96), Image.LANCZOS) for i in x]
            stats = (f"contrast {float(contrast(x).median()):.2f}, colourfulness {float(colourfulness(x).median()):.0f}")
            rows.append(caption_block(stack(tiles, gap=2), [f"{c['label']} - {method}", stats], width=200))
    # JPEG: a PNG of this many rendered tiles weighed 2.2 MB in the repository
    atomic_write_bytes(path, png_bytes(stack(rows, direction="vertical", gap=4), "JPEG", quality=88))


def photo_statistics(images: str) -> dict:
    """Medians of the contrast and colourfulness of the photos in ``images`` (full resolution)."""
    from neuronscope.images import list_images, load_image, pil_to_tensor
    from neuronscope.priors.metrics import colourfulness, contrast

    con, col = [], []
    for p in list_images(images):
        t = pil_to_tensor(load_image(p))[None]
        con.append(float(contrast(t)[0]))
        col.append(float(colourfulness(t)[0]))
    return {"photos": len(con), "contrast": round(float(np.median(con)), 4),
            "colourfulness": round(float(np.median(col)), 2)}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--classes", nargs="+", default=["goldfish", "palace", "hammer"])
    ap.add_argument("--images", default=None, help="image folder (default: the offline photo set)")
    ap.add_argument("--size", type=int, default=160, help="render and example size in px")
    ap.add_argument("--views", type=int, default=6)
    ap.add_argument("--iter-scale", type=float, default=1.0)
    ap.add_argument("--steps", type=int, default=None, help="lucid steps (default the preset's 512)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--anchor", type=float, default=None,
                    help="cluster-anchor weight of the facet renders (default: facets.pipeline.ANCHOR; 0 = plain)")
    ap.add_argument("--sheets", default=None, help="also write each class's facet sheet to SHEETS/facets_CLASS/")
    ap.add_argument("--quick", action="store_true", help="one class, short schedules")
    ap.add_argument("--mfv-colour", choices=["photo", "none"], default="photo",
                    help="the MFV start (default photo: the mean image at photo contrast and colourfulness; none: as published)")
    ap.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS),
                    help="what to render (default all); without all three the results go to facet_diversity_<methods>.*")
    ap.add_argument("--work", default=str(WORK), help="where renders are kept, per settings (a killed run resumes)")
    ap.add_argument("--judge", default=None, help=argparse.SUPPRESS)  # internal: the judge process
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.judge:
        judge(Path(args.judge))
        return {}
    if args.images is None:
        from neuronscope.data.photoset import photo_folder

        args.images = str(photo_folder())
    if args.anchor is None:
        from neuronscope.facets.pipeline import ANCHOR

        args.anchor = ANCHOR
    if not args.anchor >= 0:
        ap.error(f"--anchor must be >= 0, got {args.anchor}")
    if args.quick:
        args.classes, args.iter_scale, args.steps, args.size = args.classes[:1], 0.2, 96, 128
    methods = [m for m in METHODS if m in args.methods]
    shown = ["mean-image", *methods]
    results, pic = RESULTS, PICTURE
    tag = "" if methods == list(METHODS) and args.mfv_colour == "photo" else \
        "_".join(methods) + ("_mfv-as-published" if args.mfv_colour != "photo" else "")
    if args.quick:  # a smoke run never replaces a real one
        tag = f"{tag}_quick" if tag else "quick"
    if tag:
        results = RESULTS.with_name(f"facet_diversity_{tag}.json")
        pic = results.with_suffix(".jpg")
    load = load_average()
    t0 = time.perf_counter()
    # renders are kept per settings (an interrupted run resumes class by class; delete the folder after
    # changing the render code, as for naturalness.py's cache)
    key = json.dumps([args.size, args.views, args.iter_scale, args.steps, args.anchor, methods, args.mfv_colour,
                      str(args.images)])
    folder = Path(args.work) / hashlib.sha256(key.encode()).hexdigest()[:12]
    folder.mkdir(parents=True, exist_ok=True)
    print(f"renders in {folder}", flush=True)
    info = render_all(args.classes, args.images, args.size, args.views, args.iter_scale, args.steps, folder,
                      args.anchor, Path(args.sheets) if args.sheets else None, methods,
                      None if args.mfv_colour == "none" else args.mfv_colour)
    subprocess.run([sys.executable, __file__, "--judge", str(folder), "--threads", str(args.threads)], check=True)
    verdicts = json.loads((folder / "judge.json").read_text())
    picture(folder, info, shown, pic)
    stats = {}
    from neuronscope.priors.metrics import colourfulness, contrast

    for c in info.values():
        for m in shown:
            x = torch.from_numpy(np.load(folder / f"{c['class']}_{m}.npy"))
            stats[f"{c['class']}_{m}"] = (contrast(x).tolist(), colourfulness(x).tolist())
    photos = photo_statistics(args.images)
    per_class, totals = {}, {m: {"passed": 0, "images": 0, "D": [], "contrast": [], "colourfulness": []} for m in shown}
    for name, c in info.items():
        row = dict(c)
        for m in shown:
            v = verdicts[f"{c['class']}_{m}"]
            con, col = stats[f"{c['class']}_{m}"]
            ok = np.array(v["top5"], dtype=bool)
            feats = np.array(v["features"])
            d, d_all = diversity(feats[ok]), diversity(feats)
            row[m] = {"images": len(ok), "passed": int(ok.sum()), "accuracy": round(float(ok.mean()), 3),
                      "D": None if np.isnan(d) else round(d, 4),
                      "D_eff": None if np.isnan(d) else round(d * ok.sum() / len(ok), 4),
                      "D_all": None if np.isnan(d_all) else round(d_all, 4),  # None: fewer than 2 images
                      "contrast": [round(a, 4) for a in con], "colourfulness": [round(a, 2) for a in col]}
            totals[m]["contrast"] += con
            totals[m]["colourfulness"] += col
            totals[m]["passed"] += int(ok.sum())
            totals[m]["images"] += len(ok)
            if not np.isnan(d):
                totals[m]["D"].append(d)
        per_class[name] = row
        print(f"{c['label']} (K={c['k']}): " + "; ".join(
            f"{m}: top-5 {row[m]['passed']}/{row[m]['images']}, D {row[m]['D']}, D_all {row[m]['D_all']}, "
            f"contrast {np.median(row[m]['contrast']):.3f}, colourfulness {np.median(row[m]['colourfulness']):.1f}"
            for m in shown),
            flush=True)
    summary = {m: {"judge_top5_accuracy": round(t["passed"] / max(1, t["images"]), 3),
                   "mean_D_over_classes": round(float(np.mean(t["D"])), 4) if t["D"] else None,
                   "classes_with_D": len(t["D"]),
                   "median_contrast": round(float(np.median(t["contrast"])), 4),
                   "median_colourfulness": round(float(np.median(t["colourfulness"])), 2),
                   "contrast_ratio_to_photos": round(float(np.median(t["contrast"])) / photos["contrast"], 3),
                   "colourfulness_ratio_to_photos": round(float(np.median(t["colourfulness"])) / photos["colourfulness"], 3)}
               for m, t in totals.items()}
    from neuronscope import __version__
    from neuronscope.images import atomic_write_json

    result = {
        "claim": "facet renders are more diverse in a held-out judge's (Lite1) feature space than K random-seed "
                 "renders of the same class, counting only images the judge puts the class in its top-5",
        "neuronscope": __version__, "torch": torch.__version__, "model": "efficientnet_lite0",
        "judge": "efficientnet_lite1 (loaded in a separate process after all rendering)",
        "settings": {"size": args.size, "views": args.views, "iter_scale": args.iter_scale,
                     "lucid_steps": args.steps or 512, "threads": args.threads, "classes": args.classes,
                     "anchor": args.anchor, "mfv_refinement": True, "methods": methods,
                     "mfv_colour": args.mfv_colour},
        "photo_statistics": photos,
        "load_average_start": load, "load_average_end": load_average(),
        "seconds": round(time.perf_counter() - t0, 1), "per_class": per_class, "summary": summary,
        "picture": str(pic.name),
    }
    atomic_write_json(results, result)
    print(json.dumps(summary, indent=1))
    print(f"photos: {photos}")
    print(f"wrote {results} and {pic}")
    return result


if __name__ == "__main__":
    main()
