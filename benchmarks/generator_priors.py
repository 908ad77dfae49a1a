"""Generator priors vs pixel-space activation maximization, judged by other networks.

For the 16 classes of ``benchmarks/classes.py`` this renders, with EfficientNet-Lite0 (M):

* ``pixel``: neuronscope's pixel-space default (``render``, preset ``lucid``, 128 px);
* ``dgn-am``: DGN-AM through the generator (last image, 200 steps as the paper);
* ``ppgn``: 8 PPGN samples per class (joint PPGN-h: ``--chains`` chains with
  ``reset_every``, one sample at the end of each segment);

then, in a separate process (the judges never touch the optimization), scores:
Lite0 top-1 at 128 px; Lite1 (240 px) and Lite2 (260 px) top-1, top-5 and mean
p(class) on the images upsampled bilinearly; and PPGN diversity, the mean
pairwise (1 - cosine) of Lite1 pooled features across a class's 8 samples
(with the same measure on 8 held-out real photos' centre crops for scale).

Writes ``benchmarks/results/generator_priors.json`` and a picture of every
image, ``benchmarks/results/generator_priors.png``. Stages cache their images
in ``--cache`` so an interrupted run resumes.

    python benchmarks/generator_priors.py [--generator PATH] [--threads 1]
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
from classes import CLASSES  # noqa: E402

RESULTS = HERE / "results"


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


def stage_dgn(args, model, gen):
    from neuronscope.generators.dgn_am import dgn_am

    t0 = time.time()
    res, rows = dgn_am(gen, model, [f"class:{k}" for k in CLASSES], steps=args.dgn_steps, lr=args.dgn_lr,
                       seed=args.seed, progress=not args.quiet)
    up = F.interpolate(res.images, size=(128, 128), mode="bilinear", align_corners=False)
    return {"images": up, "classes": [t.index for t in rows], "group": list(range(len(rows))), "seconds": time.time() - t0}


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
    return {"images": up, "classes": classes, "group": group, "seconds": time.time() - t0}


def generate(args):
    from neuronscope import load_model
    from neuronscope.generators.shipped import load_generator

    torch.set_num_threads(args.threads)
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    model = load_model("efficientnet_lite0", device="cpu")
    gen = None
    for name in args.methods:
        p = cache / f"{name}.pt"
        cached = torch.load(p, weights_only=False) if p.exists() else None
        if cached is not None and sorted(set(cached["classes"])) == sorted(CLASSES):
            print(f"{name}: cached in {p}")
            continue
        print(f"{name}: generating", flush=True)
        if name == "pixel":
            out = stage_pixel(args, model, cached)  # reuses the rows of classes already rendered
        else:
            gen = gen or load_generator(args.generator, model.name)
            out = stage_dgn(args, model, gen) if name == "dgn-am" else stage_ppgn(args, model, gen)
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
    from neuronscope.images import labelled_grid, save_png
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

    results, sheet_cols = {}, {}
    for name in args.methods:
        blob = torch.load(cache / f"{name}.pt", weights_only=False)
        x, ks = blob["images"].float().clamp(0, 1), torch.tensor(blob["classes"])
        l0, _ = run(m0, x, 128)
        rec = {"n_images": len(x), "seconds_to_generate": round(blob["seconds"], 1),
               "lite0_top1_128": float((l0.argmax(1) == ks).float().mean())}
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
        if name == "ppgn":
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
            for j, im in enumerate(x[group == g][: (8 if name == "ppgn" else 1)]):
                cells.append(im)
                caps.append(f"{name} {m0.label(k)[:10]}" if j == 0 else "")
    ncol = sum(8 if n == "ppgn" else 1 for n in args.methods)
    RESULTS.mkdir(exist_ok=True)
    save_png(labelled_grid(cells, caps, columns=ncol, cell=72, caption_lines=1), RESULTS / "generator_priors.png")
    return results


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--generator", default="shipped")
    ap.add_argument("--cache", default="/tmp/neuronscope_bench_generator_priors")
    ap.add_argument("--methods", nargs="+", default=["pixel", "dgn-am", "ppgn"])
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
    if args.judge_only:
        print("JSON:" + json.dumps(judge(args)))
        return
    generate(args)
    if args.generate_only:
        return
    cmd = [sys.executable, __file__, "--judge-only", "--cache", args.cache, "--threads", str(args.threads), "--methods", *args.methods]
    out = subprocess.run(cmd, capture_output=True, text=True)
    sys.stderr.write(out.stderr[-2000:])
    line = [l for l in out.stdout.splitlines() if l.startswith("JSON:")]
    if out.returncode or not line:
        print(out.stdout)
        raise SystemExit(f"judge process failed ({out.returncode})")
    results = json.loads(line[-1][5:])
    record = {
        "claim": "generator priors (DGN-AM, PPGN) vs pixel-space default, judged by Lite1/Lite2",
        "classes": CLASSES,
        "settings": {k: v for k, v in vars(args).items() if k not in ("judge_only", "generate_only", "quiet")},
        "results": results,
        "command": " ".join(sys.argv),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "generator_priors.json").write_text(json.dumps(record, indent=1) + "\n")
    for name, rec in results.items():
        print(name, rec)


if __name__ == "__main__":
    main()
