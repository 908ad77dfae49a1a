"""Claim (issue 14): how natural and how recognisable renders are, side by side with the peers.

For each tool (neuronscope presets, its defaults with no arguments, torch-lucent 0.1.8, MACO), at
equal steps and size, on three target sets of EfficientNet-Lite0:

* ``bench16``: the 16 classes of ``benchmarks/classes.py`` (where results are reported);
* ``held31``: 31 other classes (every 29th from 3, none within 2 of a benchmark class), where
  settings are chosen;
* ``channels16``: 16 hidden channels (4 each of blocks 4, 8, 11 and 14).

Renders run in fresh subprocesses, 8 targets per call, and are saved as 8-bit PNGs in a cache folder
(``--work``; an interrupted run resumes, finished chunks are kept). Then one later process that no
renderer shares judges every PNG:

* **recognisability** (class targets): Lite1 and Lite2 top-1, top-5 and mean target probability on
  the evaluation centre crop;
* **HF ratio**: the share of spectral power above a quarter of the Nyquist frequency (grayscale,
  224 px, Hann window; :func:`neuronscope.priors.metrics.hf_share`) divided by the median over the
  offline photos; photos span roughly 0.25-3.7 (10th-90th percentile);
* **KID** (x1000): unbiased MMD^2, cubic polynomial kernel, averaged over 100 random subsets,
  between a tool's renders and the offline photos in Lite2's pooled 1280-d features; the floor is
  the KID between two halves of the photos at the same subset size;
* saturation: the share of pixel values at 0 or 255 (photos: their median);
* contrast and colourfulness (luminance std; Hasler & Suesstrunk), each divided by the photos'
  median: a grey, washed-out render scores well below 1;
* wall time per image (each call renders 8 targets with ``--threads`` threads).

    python benchmarks/naturalness.py                          # all tools, all sets
    python benchmarks/naturalness.py --tools ns-default lucent --sets held31
    python benchmarks/naturalness.py --quick                  # smoke run

Writes ``benchmarks/results/naturalness.json``, a markdown table, and one contact sheet per set
(``benchmarks/results/naturalness_<set>.jpg``: a row per tool).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from _machine import cpu_name, load_average  # benchmarks/ is the script's folder

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "naturalness.json"
WORK = Path(os.environ.get("NEURONSCOPE_BENCH_CACHE", Path.home() / ".cache" / "neuronscope" / "bench")) / "naturalness"
HELD31 = [32, 61, 90, 119, 148, 177, 235, 264, 351, 380, 409, 438, 467, 496, 525, 554, 583, 612, 641, 670, 699,
          728, 757, 786, 815, 844, 873, 902, 931, 960, 989]
CHANNELS16 = [f"blocks.{b}:{c}" for b in (4, 8, 11, 14) for c in range(4)]
#: tool -> how it renders. ``ns-default`` calls render() with nothing but the targets and steps.
TOOLS = {
    "ns-default": {"kind": "ns", "kw": {}},
    "ns-lucid": {"kind": "ns", "kw": {"preset": "lucid"}},
    "ns-maco": {"kind": "ns", "kw": {"preset": "maco"}},
    "lucent": {"kind": "lucent"},
}


def target_sets() -> dict[str, list]:
    sys.path.insert(0, str(HERE))
    from classes import CLASSES

    return {"bench16": [f"class:{k}" for k in CLASSES], "held31": [f"class:{k}" for k in HELD31],
            "channels16": list(CHANNELS16)}


# ---------------------------------------------------------------- child: one render call

def _objective(spec: str, O):
    kind, _, rest = spec.partition(":")
    if kind == "class":
        return O.class_logit(int(rest))
    return O.channel(kind, int(rest))


def _render_child(spec: dict) -> dict:
    import numpy as np
    import torch
    from PIL import Image

    torch.set_num_threads(spec["threads"])
    from neuronscope import load_model

    model = load_model("efficientnet_lite0")
    targets, steps, size = spec["targets"], spec["steps"], spec["size"]
    tool = TOOLS[spec["tool"]]
    t0 = time.perf_counter()
    if tool["kind"] == "ns":
        from neuronscope.optim import objectives as O
        from neuronscope.optim import render

        kw = dict(tool["kw"], **spec.get("kw", {}))
        kw.setdefault("seed", spec.get("seed", 0))
        coarse = kw.pop("coarse", None)
        if size:
            kw["size"] = size
        objectives = [_objective(t, O) for t in targets]
        if coarse:  # coarse to fine: the first N steps at S px, the rest from their bicubic enlargement
            (s1, n1), full = coarse, kw.get("size") or model.input_size
            first = render(model, objectives, steps=n1, progress=False, **dict(kw, size=s1))
            kw["init"] = torch.nn.functional.interpolate(first.images, size=(full, full), mode="bicubic",
                                                         align_corners=False).clamp(0.002, 0.998)
            steps = steps - n1
        res = render(model, objectives, steps=steps, progress=False, **kw)
        images = res.images.permute(0, 2, 3, 1).numpy()
        meta = {k: res.meta.get(k) for k in ("preset", "size", "steps", "prior")} | ({"coarse": coarse} if coarse else {})
    else:
        sys.path.insert(0, str(HERE))
        from _lucent_shim import load_lucent

        lucent = load_lucent()
        torch.manual_seed(spec.get("seed", 0))
        np.random.seed(spec.get("seed", 0))
        terms = []
        for i, t in enumerate(targets):
            kind, _, rest = t.partition(":")
            name = "net_fc" if kind == "class" else "net_" + kind.replace(".", "_")
            terms.append(lucent.objectives.channel(name, int(rest), batch=i))
        out = lucent.render.render_vis(model, lucent.objectives.Objective.sum(terms),
                                       lambda: lucent.param.image(size or 224, batch=len(targets)),
                                       thresholds=(steps,), preprocess=False, progress=False, show_image=False)
        images = out[-1]
        meta = {"lucent": lucent.version}
    seconds = time.perf_counter() - t0
    folder = Path(spec["folder"])
    folder.mkdir(parents=True, exist_ok=True)
    for t, img in zip(targets, images):
        Image.fromarray((np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)).save(folder / _file(t))
    return {"seconds": round(seconds, 2), "n": len(targets), **meta}


def _seed_suffix(seed: int) -> str:
    return f"_seed{seed}" if seed else ""


def work_folder(work, steps: int, size: int, tag: str = "", seed: int = 0) -> Path:
    """The cache folder of one run's renders (a tool's PNGs are in ``<folder>/<tool>/<set>/``)."""
    return Path(work) / f"{steps}steps_{size}px{tag}{_seed_suffix(seed)}"


def _file(target: str) -> str:
    return target.replace(":", "_") + ".png"


# ---------------------------------------------------------------- child: the judges

def _judge_child(spec: dict) -> dict:
    import numpy as np
    import torch

    torch.set_num_threads(spec["threads"])
    from neuronscope import load_model
    from neuronscope.images import center_crop_resize, load_image, pil_to_tensor
    from neuronscope.priors.metrics import colourfulness, contrast, hf_share
    from neuronscope.taps import tap

    paths = spec["images"] + spec["photos"]
    pics = [load_image(p) for p in paths]
    tensors = [pil_to_tensor(im)[None] for im in pics]
    hf = [float(hf_share(t)[0]) for t in tensors]
    sat = [float(((t <= 0) | (t >= 1)).float().mean()) for t in tensors]
    con = [float(contrast(t)[0]) for t in tensors]
    col = [float(colourfulness(t)[0]) for t in tensors]
    out = {"hf": dict(zip(paths, hf)), "sat": dict(zip(paths, sat)), "contrast": dict(zip(paths, con)),
           "colour": dict(zip(paths, col)), "judges": {}}
    for name in ("efficientnet_lite1", "efficientnet_lite2"):
        model = load_model(name)
        probs, feats = [], []
        for i in range(0, len(pics), 16):
            x = torch.stack([pil_to_tensor(center_crop_resize(im, model.input_size, model.info.eval_resize))
                             for im in pics[i:i + 16]])
            with torch.inference_mode(), tap(model, ["pool"]) as taps:
                logits = taps.run(x)
                feats.append(taps["pool"].float().numpy())
            probs.append(logits.softmax(-1).numpy())
        probs = np.concatenate(probs)
        out["judges"][name] = {"probs": {p: probs[i].tolist() for i, p in enumerate(spec["images"])}}
        if name == "efficientnet_lite2":
            out["features"] = np.concatenate(feats).tolist()
    return out


# ---------------------------------------------------------------- parent

def _run_child(kind: str, spec: dict, threads: int, timeout: float) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), f"--{kind}", json.dumps(spec)]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
               OMP_WAIT_POLICY=os.environ.get("OMP_WAIT_POLICY", "PASSIVE"))
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} child failed ({spec.get('tool', '')}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _photo_paths(limit: int | None = None) -> list[str]:
    root = Path(os.environ.get("NEURONSCOPE_PHOTOS", Path.home() / ".cache" / "neuronscope" / "photos"))
    manifest = root / "manifest.json"
    if not manifest.exists():
        raise SystemExit(f"the offline photo set is missing ({manifest}); run `make photos`")
    files = [str(root / e["file"]) for e in json.loads(manifest.read_text())]
    return files[:limit] if limit else files


def summarize(judged: dict, renders: dict[str, dict[str, list[str]]], times: dict, photos: list[str],
              subsets: int = 100) -> dict:
    """Per tool and set: recognisability, HF ratio, saturation, KID; the photos' own figures as reference."""
    import numpy as np

    from neuronscope.priors.metrics import kid

    feats = np.asarray(judged["features"])
    index = {p: i for i, p in enumerate(list(judged["hf"]))}
    photo_hf = float(np.median([judged["hf"][p] for p in photos]))
    pf = feats[[index[p] for p in photos]]
    half = len(pf) // 2
    rng = np.random.default_rng(0)
    order = rng.permutation(len(pf))
    photo_con = float(np.median([judged["contrast"][p] for p in photos]))
    photo_col = float(np.median([judged["colour"][p] for p in photos]))
    summary: dict = {"photos": {"n": len(photos), "hf_share_median": round(photo_hf, 5),
                                "contrast_median": round(photo_con, 4), "colourfulness_median": round(photo_col, 2),
                                "hf_ratio_p10_p90": [round(float(np.percentile([judged["hf"][p] / photo_hf for p in photos], q)), 3)
                                                     for q in (10, 90)],
                                "saturated_median": round(float(np.median([judged["sat"][p] for p in photos])), 5)},
                     "tools": {}}
    for tool, sets in renders.items():
        per: dict = {}
        all_paths = [p for ps in sets.values() for p in ps]
        for set_name, paths in list(sets.items()) + [("all", all_paths)]:
            if not paths:
                continue
            hf = np.array([judged["hf"][p] / photo_hf for p in paths])
            row = {"n": len(paths), "hf_ratio_median": round(float(np.median(hf)), 3),
                   "hf_ratio_mean": round(float(hf.mean()), 3),
                   "in_photo_band": round(float(((hf >= 0.7) & (hf <= 1.5)).mean()), 3),
                   "saturated": round(float(np.mean([judged["sat"][p] for p in paths])), 5),
                   "contrast_ratio": round(float(np.median([judged["contrast"][p] for p in paths])) / photo_con, 3),
                   "colourfulness_ratio": round(float(np.median([judged["colour"][p] for p in paths])) / photo_col, 3)}
            m = min(100, len(paths))
            if m >= 8:
                k, ks = kid(feats[[index[p] for p in paths]], pf, subsets=subsets, subset_size=m)
                floor, _ = kid(pf[order[:half]], pf[order[half:]], subsets=subsets, subset_size=m)
                row.update(kid_x1000=round(1000 * k, 2), kid_std_x1000=round(1000 * ks, 2),
                           kid_floor_x1000=round(1000 * floor, 2), kid_subset=m)
            classes = [(p, int(Path(p).stem.split("_")[1])) for p in paths if Path(p).stem.startswith("class_")]
            for judge in ("efficientnet_lite1", "efficientnet_lite2"):
                if not classes:
                    break
                probs = judged["judges"][judge]["probs"]
                ranks = [int((np.asarray(probs[p]) > probs[p][k]).sum()) for p, k in classes]
                short = judge.replace("efficientnet_", "")
                row[f"{short}_top1"] = round(float(np.mean([r == 0 for r in ranks])), 3)
                row[f"{short}_top5"] = round(float(np.mean([r < 5 for r in ranks])), 3)
                row[f"{short}_prob"] = round(float(np.mean([probs[p][k] for p, k in classes])), 3)
            if set_name in times.get(tool, {}):
                t = times[tool][set_name]
                row["seconds_per_image"] = round(sum(c["seconds"] for c in t) / max(1, sum(c["n"] for c in t)), 2)
            per[set_name] = row
        summary["tools"][tool] = per
    return summary


def table(summary: dict) -> str:
    lines = ["| tool | set | Lite2 top-1 | Lite2 top-5 | Lite2 p | Lite1 top-1 | HF ratio (median) | in 0.7-1.5 | "
             "KID x1000 (floor) | contrast | colourfulness | saturated | s/image |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for tool, per in summary["tools"].items():
        for set_name, r in per.items():
            kid_s = f"{r['kid_x1000']} ({r['kid_floor_x1000']})" if "kid_x1000" in r else ""
            lines.append(f"| {tool} | {set_name} | {r.get('lite2_top1', '')} | {r.get('lite2_top5', '')} | "
                         f"{r.get('lite2_prob', '')} | {r.get('lite1_top1', '')} | {r['hf_ratio_median']} | "
                         f"{r['in_photo_band']} | {kid_s} | {r.get('contrast_ratio', '')} | {r.get('colourfulness_ratio', '')} | "
                         f"{r['saturated']} | {r.get('seconds_per_image', '')} |")
    ph = summary["photos"]
    lines.append(f"\nPhotos: {ph['n']}, HF share median {ph['hf_share_median']}, HF ratio 10th-90th percentile "
                 f"{ph['hf_ratio_p10_p90']}, saturated median {ph['saturated_median']}, luminance std median "
                 f"{ph.get('contrast_median')}, colourfulness median {ph.get('colourfulness_median')} (contrast and "
                 "colourfulness columns: the renders' median over the photos')")
    return "\n".join(lines)


def contact_sheet(renders: dict, set_name: str, path: Path, cell: int = 112) -> None:
    from PIL import Image, ImageDraw

    tools = [t for t in renders if renders[t].get(set_name)]
    if not tools:
        return
    n = max(len(renders[t][set_name]) for t in tools)
    label = 90
    sheet = Image.new("RGB", (label + n * cell, len(tools) * cell), "white")
    draw = ImageDraw.Draw(sheet)
    for r, tool in enumerate(tools):
        draw.text((4, r * cell + cell // 2 - 6), tool, fill="black")
        for c, p in enumerate(renders[tool][set_name]):
            sheet.paste(Image.open(p).convert("RGB").resize((cell, cell), Image.LANCZOS), (label + c * cell, r * cell))
    tmp = path.with_suffix(".tmp.jpg")
    sheet.save(tmp, quality=88)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tools", nargs="+", default=list(TOOLS), choices=list(TOOLS))
    ap.add_argument("--sets", nargs="+", default=["bench16", "held31", "channels16"])
    ap.add_argument("--steps", type=int, default=256, help="steps of every render, every tool")
    ap.add_argument("--size", type=int, default=224, help="render size in px, every tool (0: the tool's default)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--kw", default="{}", help="extra render() keywords for neuronscope tools, as JSON; "
                    "\"coarse\": [S, N] renders the first N of the steps at S px, then the rest at full size "
                    "from their bicubic enlargement")
    ap.add_argument("--seed", type=int, default=0, help="seed of every render, every tool (the render noise between "
                    "seeds shows how far a KID difference on 16 classes is chance)")
    ap.add_argument("--tag", default="", help="suffix of the cache folder and result name (for sweeps)")
    ap.add_argument("--limit", type=int, default=None, help="only the first N targets of each set")
    ap.add_argument("--quick", action="store_true", help="smoke run: 8 targets per set, 16 steps")
    ap.add_argument("--work", default=str(WORK), help="cache folder of the rendered PNGs (resumable)")
    ap.add_argument("--timeout", type=float, default=7200)
    ap.add_argument("--out", default=None)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--judge", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(_render_child(json.loads(args.child))))
        return {}
    if args.judge:
        print(json.dumps(_judge_child(json.loads(args.judge))))
        return {}

    sets = {k: v for k, v in target_sets().items() if k in args.sets}
    if args.quick:
        args.limit, args.steps = 8, 16
    if args.limit:
        sets = {k: v[:args.limit] for k, v in sets.items()}
    started, load_before = time.time(), load_average()
    coarse = json.loads(args.kw).get("coarse")
    if coarse is not None and not (isinstance(coarse, list) and len(coarse) == 2 and all(isinstance(v, int) for v in coarse)
                                   and coarse[0] >= 16 and 0 < coarse[1] < args.steps):
        ap.error(f"--kw coarse must be [S, N]: S px (at least 16) for the first N of the {args.steps} steps, "
                 f"0 < N < {args.steps}; got {coarse!r}")
    work = work_folder(args.work, args.steps, args.size, args.tag, args.seed)
    renders: dict = {}
    times: dict = {}
    for set_name, targets in sets.items():
        for tool in args.tools:
            folder = work / tool / set_name
            record = folder / "times.json"
            done = json.loads(record.read_text()) if record.exists() else []
            for i in range(0, len(targets), 8):
                chunk = targets[i:i + 8]
                if all((folder / _file(t)).exists() for t in chunk) and any(c["first"] == chunk[0] for c in done):
                    continue
                spec = {"tool": tool, "targets": chunk, "steps": args.steps, "size": args.size,
                        "threads": args.threads, "folder": str(folder), "kw": json.loads(args.kw), "seed": args.seed}
                r = _run_child("child", spec, args.threads, args.timeout)
                r["first"] = chunk[0]
                r["load"] = load_average()
                done.append(r)
                record.write_text(json.dumps(done, indent=1))
                print(f"  {tool:12s} {set_name:10s} {i + len(chunk):3d}/{len(targets)}: "
                      f"{r['seconds'] / r['n']:.1f} s/image", flush=True)
            renders.setdefault(tool, {})[set_name] = [str(folder / _file(t)) for t in targets]
            times.setdefault(tool, {})[set_name] = done

    print("judging (Lite1, Lite2; HF ratio; KID against the offline photos) in a separate process", flush=True)
    photos = _photo_paths(40 if args.quick else None)
    images = sorted({p for s in renders.values() for ps in s.values() for p in ps})
    judged = _run_child("judge", {"images": images, "photos": photos, "threads": args.threads}, args.threads,
                        args.timeout)
    summary = summarize(judged, renders, times, photos, subsets=20 if args.quick else 100)
    record = {
        "claim": "naturalness and recognisability of Lite0 renders: neuronscope presets and defaults vs "
                 "torch-lucent 0.1.8 and MACO, equal steps and size",
        "steps": args.steps, "size": args.size, "threads": args.threads, "kw": json.loads(args.kw), "seed": args.seed,
        "sets": sets, "tools": {t: TOOLS[t] for t in args.tools}, "quick": args.quick,
        "cpu": cpu_name(), "cpu_count": os.cpu_count(), "load_average_before": load_before,
        "load_average_after": load_average(), "seconds": round(time.time() - started, 1),
        "summary": summary, "times": times,
        "maco_note": "MACO is neuronscope's `maco` preset (phase-only FFT with a fixed magnitude spectrum of the "
                     "offline photos); Horama 0.3 needs torchvision and downloads its spectrum at run time",
    }
    quick = "_quick" if args.quick else ""  # a smoke run never replaces a real one
    out = Path(args.out) if args.out else RESULTS.with_name(f"naturalness{args.tag}{_seed_suffix(args.seed)}{quick}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(HERE.parent))
    from neuronscope.images import atomic_write_json

    atomic_write_json(out, record)
    for set_name in sets:
        contact_sheet(renders, set_name, out.with_name(f"{out.stem}_{set_name}.jpg"))
    print()
    print(table(summary))
    print(f"\nwrote {out} ({record['seconds']} s)")
    return record


if __name__ == "__main__":
    main()
