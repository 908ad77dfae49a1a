"""Generator priors vs pixel-space activation maximization, judged by other networks.

For the 16 classes of ``benchmarks/classes.py`` this renders, with EfficientNet-Lite0 (M):

* ``pixel``: neuronscope's pixel-space default (``render``, preset ``lucid``, 128 px);
* ``dgn-am``: DGN-AM through the generator (last image, 200 steps as the paper);
* ``ppgn``: 8 PPGN samples per class (joint PPGN-h: ``--chains`` chains with
  ``reset_every``, one sample at the end of each segment);
* ``dgn-red:W``: DGN-AM with the natural-image prior's regularization-by-denoising
  term through G, its code step W times the condition's (``dgn_am(prior=...)``);
* ``dgn-refine:N``: DGN-AM, then N steps of the ``natural`` preset at the model's
  size (224 px) from G's image (``dgn_am(refine=N)``: a hybrid);
* ``ppgn-refine:N``: every ``ppgn`` sample refined the same way (``sample(refine=N)``);
* ``natural:N``: the control for the hybrid, the same N ``natural`` steps at 224 px
  from the preset's own random start;

then, in a separate process (the judges never touch the optimization), scores:
Lite0 top-1 at 128 px; Lite1 (240 px) and Lite2 (260 px) top-1, top-5 and mean
p(class) on the images upsampled bilinearly; and PPGN diversity, the mean
pairwise (1 - cosine) of Lite1 pooled features across a class's 8 samples
(with the same measure on 8 held-out real photos' centre crops for scale); and
the naturalness measures of :mod:`neuronscope.priors.metrics` (median per method):
the HF ratio (``hf_share`` over the offline photos' median), contrast and
colourfulness over the photos' medians (read from ``results/naturalness.json``).

``--classes held8`` runs 8 of the 31 held-out classes of ``naturalness.py`` (every
4th) to choose settings, writing ``generator_priors_held8.json``; the default
``bench16`` reports on the 16 benchmark classes.

Writes ``benchmarks/results/generator_priors.json`` and a picture of every
image, ``benchmarks/results/generator_priors.jpg``. Stages cache their images
in ``--cache`` so an interrupted run resumes.

    python benchmarks/generator_priors.py [--generator PATH] [--threads 1]
    python benchmarks/generator_priors.py --classes held8 --methods dgn-am dgn-red:0.5 dgn-refine:64 natural:64
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from classes import CLASSES as BENCH16  # noqa: E402

RESULTS = HERE / "results"
#: the held-out classes of naturalness.py (never within 2 of a benchmark class); held8 is every 4th
HELD31 = [32, 61, 90, 119, 148, 177, 235, 264, 351, 380, 409, 438, 467, 496, 525, 554, 583, 612, 641, 670, 699,
          728, 757, 786, 815, 844, 873, 902, 931, 960, 989]
CLASS_SETS = {"bench16": BENCH16, "held8": HELD31[::4], "held31": HELD31}
CLASSES = list(BENCH16)
#: the offline photos' medians (benchmarks/naturalness.py over 525 photos), used when its results file is absent
PHOTO_MEDIANS = {"hf_share_median": 0.04032, "contrast_median": 0.2084, "colourfulness_median": 31.92}


def photo_medians() -> dict:
    p = RESULTS / "naturalness.json"
    try:
        return {**PHOTO_MEDIANS, **json.loads(p.read_text())["summary"]["photos"]}
    except (OSError, KeyError, ValueError):
        return dict(PHOTO_MEDIANS)


def method_arg(name: str, default: float) -> float:
    """The number after ``:`` in a method name (``dgn-red:0.5``), or ``default``."""
    return float(name.split(":", 1)[1]) if ":" in name else default


def stage_pixel(args, model, cached=None):
    """Renders every class; rows of a cached run for the same classes are reused (rows are independent)."""
    from neuronscope.optim import objectives as O
    from neuronscope.optim import render

    have = {}
    if cached is not None and cached.get("pixel_steps") == args.pixel_steps:
        have = {k: im for k, im in zip(cached["classes"], cached["images"])}
    todo = [k for k in CLASSES if k not in have]
    seconds = cached.get("seconds", 0.0) if have else 0.0
    if todo:
        res = render(model, [O.class_logit(k) for k in todo], size=128, steps=args.pixel_steps, preset="lucid",
                     seed=args.seed, progress=not args.quiet)
        have.update(zip(todo, res.images))
        seconds += res.seconds
    images = torch.stack([have[k] for k in CLASSES])
    return {"images": images, "classes": list(CLASSES), "group": list(range(len(CLASSES))), "seconds": seconds,
            "pixel_steps": args.pixel_steps, "rendered_now": todo}


def stage_dgn(args, model, gen, name="dgn-am"):
    """DGN-AM, plain (``dgn-am``), with the RED term (``dgn-red:W``) or refined (``dgn-refine:N``)."""
    from neuronscope.generators.dgn_am import dgn_am

    kw = {"prior": False, "refine": 0}
    if name.startswith("dgn-red"):
        kw["prior"] = {"weight": method_arg(name, 0.5), "every": args.red_every}
    elif name.startswith("dgn-refine"):
        kw["refine"] = int(method_arg(name, 64))
        plain = Path(args.cache) / f"{args.classes}_dgn-am.pt"
        if plain.exists():  # the same chains as dgn-am (same seed): refine its images, add its time
            return refine_cached(args, model, torch.load(plain, weights_only=False), kw["refine"])
    t0 = time.time()
    res, rows = dgn_am(gen, model, [f"class:{k}" for k in CLASSES], steps=args.dgn_steps, lr=args.dgn_lr,
                       seed=args.seed, progress=not args.quiet, **kw)
    ims = res.images
    if ims.shape[-1] < 128:
        ims = F.interpolate(ims, size=(128, 128), mode="bilinear", align_corners=False)
    return {"images": ims, "classes": [t.index for t in rows], "group": list(range(len(rows))), "seconds": time.time() - t0,
            "generated": res.images if res.generated is None else res.generated}


def refine_cached(args, model, plain: dict, steps: int) -> dict:
    """``dgn-refine:N`` from the cached ``dgn-am`` run: exactly what ``dgn_am(refine=N)`` does after its chain."""
    from neuronscope.generators.image_prior import refine, refine_size
    from neuronscope.units import parse_units

    rows = parse_units(model, [f"class:{k}" for k in plain["classes"]], size=128)
    t0 = time.time()
    out = refine(model, rows, plain["generated"], steps=steps, size=refine_size(model, rows, 128), seed=args.seed,
                 progress=not args.quiet)
    return {"images": out.images, "classes": plain["classes"], "group": plain["group"],
            "seconds": plain["seconds"] + time.time() - t0, "refine_seconds": time.time() - t0}


def stage_natural(args, model, name):
    """The hybrid's control: ``natural:N``, N natural-preset steps at the model's size from its random start."""
    from neuronscope.optim import objectives as O
    from neuronscope.optim import render

    res = render(model, [O.class_logit(k) for k in CLASSES], preset="natural", steps=int(method_arg(name, 64)),
                 seed=args.seed, progress=not args.quiet)
    return {"images": res.images, "classes": list(CLASSES), "group": list(range(len(CLASSES))), "seconds": res.seconds}


def stage_ppgn(args, model, gen):
    from neuronscope.generators.ppgn import sample

    t0 = time.time()
    seg = args.ppgn_steps
    per_chain = max(1, args.samples // args.chains)
    res, rows = sample(gen, model, [f"class:{k}" for k in CLASSES], n=args.chains, variant=args.variant,
                       seed=args.seed, progress=not args.quiet, steps=seg * per_chain, reset_every=seg if per_chain > 1 else None,
                       save_every=seg, burn_in=0)
    ims, classes, group = [], [], []
    for r, t in enumerate(rows):
        frames, _ = res.samples(r)
        for f in frames[-per_chain:]:
            ims.append(f)
            classes.append(t.index)
            group.append(CLASSES.index(t.index))
    up = F.interpolate(torch.stack(ims), size=(128, 128), mode="bilinear", align_corners=False)
    return {"images": up, "classes": classes, "group": group, "seconds": time.time() - t0, "generated": torch.stack(ims)}


def stage_ppgn_refine(args, model, name):
    """``ppgn-refine:N``: every cached ``ppgn`` sample refined by N natural-preset steps at the model's size
    (what ``sample(refine=N)`` does to each chain's last image)."""
    from neuronscope.generators.image_prior import refine, refine_size
    from neuronscope.units import parse_units

    plain = Path(args.cache) / f"{args.classes}_ppgn.pt"
    if not plain.exists():
        raise SystemExit(f"{name} refines the ppgn samples: run the ppgn method first (before it in --methods)")
    blob = torch.load(plain, weights_only=False)
    rows = parse_units(model, [f"class:{k}" for k in blob["classes"]], size=128)
    t0 = time.time()
    out = refine(model, rows, blob["generated"], steps=int(method_arg(name, 64)), size=refine_size(model, rows, 128),
                 seed=args.seed, progress=not args.quiet)
    return {"images": out.images, "classes": blob["classes"], "group": blob["group"],
            "seconds": blob["seconds"] + time.time() - t0, "refine_seconds": time.time() - t0}


def generate(args):
    from neuronscope import load_model
    from neuronscope.generators.shipped import load_generator

    torch.set_num_threads(args.threads)
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    model = load_model("efficientnet_lite0", device="cpu")
    gen = None
    for name in args.methods:
        p = cache / f"{args.classes}_{name}.pt"
        cached = torch.load(p, weights_only=False) if p.exists() else None
        if cached is not None and sorted(set(cached["classes"])) == sorted(CLASSES):
            print(f"{name}: cached in {p}")
            continue
        print(f"{name}: generating", flush=True)
        if name == "pixel":
            out = stage_pixel(args, model, cached)  # reuses the rows of classes already rendered
        elif name.startswith("natural"):
            out = stage_natural(args, model, name)
        elif name.startswith("ppgn-refine"):
            out = stage_ppgn_refine(args, model, name)
        else:
            gen = gen or load_generator(args.generator, model.name)
            out = stage_dgn(args, model, gen, name) if name.startswith("dgn") else stage_ppgn(args, model, gen)
        torch.save(out, p)
        print(f"{name}: {out['seconds']:.0f} s", flush=True)


def _bootstrap(x: np.ndarray, n: int = 2000, seed: int = 0) -> list[float]:
    rng = np.random.default_rng(seed)
    means = [float(np.mean(rng.choice(x, len(x)))) for _ in range(n)]
    return [round(float(np.percentile(means, 5)), 3), round(float(np.percentile(means, 95)), 3)]


@torch.no_grad()
def judge(args):
    """Runs in its own process: loads the judges and scores the cached images."""
    from neuronscope import load_model
    from neuronscope.images import labelled_grid
    from neuronscope.priors.metrics import colourfulness, contrast, hf_share
    from neuronscope.taps import tap

    torch.set_num_threads(args.threads)
    cache = Path(args.cache)
    m0 = load_model("efficientnet_lite0", device="cpu")
    judges = {"lite1": load_model("efficientnet_lite1", device="cpu"), "lite2": load_model("efficientnet_lite2", device="cpu")}

    def run(model, x, size, feats=False):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
        logits, pooled = [], []
        for i in range(0, len(x), 16):
            with tap(model, ["pool", "logits"]) as taps:
                taps.run(x[i : i + 16])
                logits.append(taps["logits"])
                pooled.append(taps["pool"])
        return torch.cat(logits), torch.cat(pooled)

    def diversity(feat: torch.Tensor) -> float:
        f = F.normalize(feat, dim=1)
        sim = f @ f.T
        n = len(f)
        return float((1 - sim)[~torch.eye(n, dtype=bool)].mean())

    photos = photo_medians()
    results, sheet_cols = {}, {}
    for name in args.methods:
        blob = torch.load(cache / f"{args.classes}_{name}.pt", weights_only=False)
        x, ks = blob["images"].float().clamp(0, 1), torch.tensor(blob["classes"])
        l0, _ = run(m0, x, 128)
        rec = {"n_images": len(x), "size": int(x.shape[-1]), "seconds_to_generate": round(blob["seconds"], 1),
               "lite0_top1_128": float((l0.argmax(1) == ks).float().mean()),
               "hf_ratio_median": round(float(hf_share(x).median()) / photos["hf_share_median"], 3),
               "contrast_ratio": round(float(contrast(x).median()) / photos["contrast_median"], 3),
               "colourfulness_ratio": round(float(colourfulness(x).median()) / photos["colourfulness_median"], 3)}
        per_class = {"lite0_top1": (l0.argmax(1) == ks).float()}
        feats = None
        for jn, jm in judges.items():
            lg, pooled = run(jm, x, jm.input_size)
            p = lg.softmax(1)
            top5 = lg.topk(5, 1).indices
            per_class[f"{jn}_top1"] = (lg.argmax(1) == ks).float()
            per_class[f"{jn}_top5"] = (top5 == ks[:, None]).any(1).float()
            per_class[f"{jn}_p"] = p.gather(1, ks[:, None]).squeeze(1)
            if jn == "lite1":
                feats = pooled
        group = torch.tensor(blob["group"])
        for key, v in per_class.items():
            by_class = np.array([float(v[group == g].mean()) for g in range(len(CLASSES))])
            rec[key] = round(float(by_class.mean()), 3)
            rec[key + "_ci90"] = _bootstrap(by_class)
        if name.startswith("ppgn"):
            divs = [diversity(feats[group == g]) for g in range(len(CLASSES))]
            rec["diversity_lite1"] = round(float(np.mean(divs)), 4)
            rec["diversity_lite1_ci90"] = _bootstrap(np.array(divs))
            rec["samples_per_class"] = int((group == 0).sum())
        results[name] = rec
        sheet_cols[name] = (x, group)
        print(name, json.dumps(rec), flush=True)

    # reference diversity: 8 random-crop views of the same real photo would be trivial; use distinct
    # real photos of one coarse label instead when the photo set is present
    try:
        from neuronscope.generators.train import center_view, views_to_tensors
        from neuronscope.images import load_image
        from neuronscope.data.photoset import list_photos

        entries = list_photos()
        rng = np.random.default_rng(0)
        pick = rng.choice(len(entries), size=min(64, len(entries)), replace=False)
        xs = views_to_tensors([center_view(load_image(entries[i]["path"])) for i in pick], 128)
        _, f = run(judges["lite1"], xs, 240)
        divs = [diversity(f[i : i + 8]) for i in range(0, len(f) - 7, 8)]
        results["reference"] = {"diversity_lite1_random_photos_8": round(float(np.mean(divs)), 4)}
    except Exception as e:  # the photo set is optional here
        results["reference"] = {"note": f"photo set unavailable: {e}"}

    # picture: one row per class: pixel, DGN-AM, then the PPGN samples
    cells, caps = [], []
    for g, k in enumerate(CLASSES):
        for name in args.methods:
            x, group = sheet_cols[name]
            for j, im in enumerate(x[group == g][: (8 if name.startswith("ppgn") else 1)]):
                cells.append(F.interpolate(im[None], size=(128, 128), mode="bilinear", align_corners=False,
                                           antialias=True)[0])
                caps.append(f"{name} {m0.label(k)[:10]}" if j == 0 else "")
    ncol = sum(min(8, int((sheet_cols[n][1] == 0).sum())) for n in args.methods)  # samples per class, at most 8
    RESULTS.mkdir(exist_ok=True)
    cell = 72 if "ppgn" in args.methods else 128
    sheet = RESULTS / f"{args.out_name}.jpg"  # JPEG: the photo-like cells would make a PNG of several MB
    tmp = sheet.with_name(sheet.name + ".tmp")
    labelled_grid(cells, caps, columns=ncol, cell=cell, caption_lines=1).save(tmp, "JPEG", quality=88)
    tmp.replace(sheet)
    return results


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--generator", default="shipped")
    ap.add_argument("--cache", default="/tmp/neuronscope_bench_generator_priors")
    ap.add_argument("--methods", nargs="+", default=["pixel", "dgn-am", "ppgn"],
                    help="pixel, dgn-am, ppgn, dgn-red:W, dgn-refine:N, ppgn-refine:N (after ppgn), natural:N")
    ap.add_argument("--classes", choices=sorted(CLASS_SETS), default="bench16",
                    help="bench16 (report) or held8 / held31 (choose settings)")
    ap.add_argument("--red-every", type=int, default=1, help="the RED term every K steps (dgn-red)")
    ap.add_argument("--out-name", default=None, help="results file stem (default generator_priors[_SET])")
    ap.add_argument("--pixel-steps", type=int, default=512)
    ap.add_argument("--dgn-steps", type=int, default=200)
    ap.add_argument("--dgn-lr", type=float, default=0.3)
    ap.add_argument("--variant", default="joint-ppgn-h")
    ap.add_argument("--ppgn-steps", type=int, default=80, help="steps per chain segment (reset_every)")
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--judge-only", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--generate-only", action="store_true")
    args = ap.parse_args()
    CLASSES[:] = CLASS_SETS[args.classes]
    if args.out_name is None:
        args.out_name = "generator_priors" + ("" if args.classes == "bench16" else f"_{args.classes}")
    if args.judge_only:
        print("JSON:" + json.dumps(judge(args)))
        return
    generate(args)
    if args.generate_only:
        return
    cmd = [sys.executable, __file__, "--judge-only", "--cache", args.cache, "--threads", str(args.threads),
           "--classes", args.classes, "--out-name", args.out_name, "--methods", *args.methods]
    out = subprocess.run(cmd, capture_output=True, text=True)
    sys.stderr.write(out.stderr[-2000:])
    line = [l for l in out.stdout.splitlines() if l.startswith("JSON:")]
    if out.returncode or not line:
        print(out.stdout)
        raise SystemExit(f"judge process failed ({out.returncode})")
    results = json.loads(line[-1][5:])
    record = {
        "claim": "generator priors (DGN-AM, PPGN, with the natural-image prior) vs pixel-space rendering, judged by "
                 "Lite1/Lite2, with the HF ratio, contrast and colourfulness against the offline photos",
        "classes": CLASSES,
        "settings": {k: v for k, v in vars(args).items() if k not in ("judge_only", "generate_only", "quiet")},
        "results": results,
        "command": " ".join(sys.argv),
    }
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{args.out_name}.json"
    try:  # methods of an earlier run on the same classes that this run did not repeat are kept, with its command
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        old = None
    if old is not None and old.get("classes") == record["classes"]:
        kept = {k: v for k, v in old["results"].items() if k not in results}
        for k in kept:
            record.setdefault("earlier_runs", {})[k] = old.get("earlier_runs", {}).get(k) or {
                "command": old.get("command"), "settings": old.get("settings")}
        record["results"] = {**kept, **results}
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    tmp.replace(path)
    for name, rec in results.items():
        print(name, rec)


if __name__ == "__main__":
    main()
