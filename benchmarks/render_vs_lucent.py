"""Claim (issues 3 and 14): neuronscope renders class-logit visualizations of Lite0 faster than torch-lucent 0.1.8, at least as well.

Side by side, in one run, on EfficientNet-Lite0 at 224 px, same number of steps:

* **the 8-target claim** (issue 14: at least 4x Lucent's images·steps/s, by the defaults): whole
  render calls of 8 classes, ``--steps`` steps (256, the default preset's), for neuronscope's
  defaults (``render()`` with no settings: the ``natural`` preset, its learned prior included),
  its ``lucid`` preset and Lucent. These are also the quality renders. With ``--rounds N`` the
  batches are rendered N times; the tools take turns in a rotating order. The claim is the median
  of the **paired** ratios (each call over Lucent's call on the same classes in the same round),
  with their range beside it: on this shared 2-core machine one call's wall time moved by up to
  ~35 % within a run.
* **speed of short calls**: images x steps per second for 1, 8 and 32 targets. neuronscope
  renders the targets as rows of one batched optimization (its ``lucid`` preset, the default
  of issue 3's time, and its precision variants). Lucent's own way to render several targets at once is a batched
  parameterization ``param.image(224, batch=B)`` with one objective per row,
  ``objectives.channel(layer, k, batch=i)``, summed (its objectives take a
  ``batch`` argument for this); that is what is measured. Rendering the targets
  one after another instead runs at Lucent's 1-target rate, which is measured
  too and reported as "Lucent sequential". Each configuration runs in a fresh
  subprocess (Lucent's hooks are never removed, and peak memory is per process),
  the runs are interleaved and repeated, and medians are reported. Two rates are
  given: the whole render call (setup included) and the steady state (median
  step time after step 18, i.e. after neuronscope's 17 ReLU-redirection steps).
  Wall time and CPU time (of the process, all threads) are both recorded,
  because the machine is shared: other work inflates wall time, not CPU time.
* **peak memory**: ``ru_maxrss`` of each render subprocess (and its RSS after
  loading the model, before rendering).
* **quality**: the 16 classes of ``benchmarks/classes.py`` rendered with each
  tool (batches of 8 rows, ``--steps`` steps), saved as 8-bit PNGs, then judged in
  a *separate, later* process by Lite1 (240 px) and Lite2 (260 px), which no
  renderer ever loads, with the evaluation transform (resize the short side to
  size/0.875, centre crop): target-class top-1, top-5 and mean probability;
  plus Lite0's own top-1 on the same PNGs.

Both tools use ``torch.set_num_threads(--threads)`` (2 by default) and the same
``OMP_WAIT_POLICY`` (PASSIVE by default: on a shared machine, spinning OpenMP
threads made every 2-thread run several times slower, for both tools). Lucent is
installed for this benchmark only (see ``_lucent_shim.py``). Lucent's own ImageNet
normalization is turned off (``preprocess=False``) because neuronscope's model
applies Lite's preprocessing itself; Lucent addresses the logits as ``net_fc``
(its names join ``_modules`` keys with ``_``; its ``labels`` shortcut would pick
the last module registered, here the preprocessing).

    python benchmarks/render_vs_lucent.py                # full run (see --help)
    python benchmarks/render_vs_lucent.py --quick        # small smoke run

Writes ``benchmarks/results/render_vs_lucent.json`` and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _machine import cpu_name, load_average  # benchmarks/ is the script's folder

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "render_vs_lucent.json"
STEADY_FROM = 18  # first step counted in the steady-state rate (neuronscope redirects ReLUs for steps 0..16)
TOOLS = {"ns-natural": "neuronscope defaults (render() as called with no settings: natural preset)",
         "ns": "neuronscope lucid preset (mixed precision)", "ns-f32": "neuronscope, precision=float32", "ns-bf16": "neuronscope, precision=bfloat16", "ns-plain": "neuronscope, engine=plain",
         "lucent": "Lucent 0.1.8 (batched)", "lucent-heap": "Lucent, glibc heap tuned like neuronscope's"}
#: what neuronscope.optim.engine.heap.roomy_heap sets, as glibc tunables for a Lucent process (for comparison only)
HEAP_TUNABLES = "glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=2147483647:glibc.malloc.top_pad=268435456"


# ---------------------------------------------------------------- child: one render

def _targets(classes: list[int], batch: int) -> list[int]:
    return [classes[i % len(classes)] for i in range(batch)]


def _render_child(spec: dict) -> dict:
    """Render one configuration in this (fresh) process; returns timings, memory and where images went."""
    import numpy as np
    import torch

    torch.set_num_threads(spec["threads"])
    from neuronscope import load_model

    sys.path.insert(0, str(HERE))
    lucent = None
    if spec["tool"].startswith("lucent"):
        from _lucent_shim import load_lucent

        lucent = load_lucent()
    model = load_model("efficientnet_lite0")
    rss_before = _rss_mb()
    ks, steps, size = spec["classes"], spec["steps"], spec["size"]
    stamps: list[float] = []
    cpu0, t0 = time.process_time(), time.perf_counter()
    if spec["tool"].startswith("ns"):
        from neuronscope.optim import objectives as O
        from neuronscope.optim import render
        from neuronscope.optim.engine import Engine

        def callback(step, images, values):
            stamps.append((time.perf_counter(), time.process_time()))

        if spec["tool"] == "ns-natural":  # the library's defaults: preset, precision, prior
            how = {}
        else:
            how = {"preset": "lucid", "engine": Engine(fast=spec["tool"] != "ns-plain", precision={
                "ns-f32": "float32", "ns-bf16": "bfloat16"}.get(spec["tool"], "mixed"))}
        res = render(model, [O.class_logit(k) for k in ks], size=size, steps=steps,
                     seed=[i // 16 for i in range(len(ks))], progress=False, callback=callback,
                     tune_process=True, **how)  # as the command line does: its own process, heap and threads tuned
        images = res.images.permute(0, 2, 3, 1).numpy()
        extra = {"fast": res.meta.get("fast"), "stages": res.meta.get("stages")}
    else:
        torch.manual_seed(0)
        np.random.seed(0)
        B = len(ks)
        obj = lucent.objectives.Objective.sum(
            [lucent.objectives.channel("net_fc", k, batch=i) for i, k in enumerate(ks)])
        timed = lucent.objectives.Objective(
            lambda T: (stamps.append((time.perf_counter(), time.process_time())), obj(T))[1])
        out = lucent.render.render_vis(model, timed, lambda: lucent.param.image(size, batch=B),
                                       thresholds=(steps,), preprocess=False, progress=False, show_image=False)
        images = out[-1]
        extra = {"lucent": lucent.version, "kornia": lucent.kornia_version}
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    saved = []
    if spec.get("save"):
        from PIL import Image

        folder = Path(spec["save"])
        folder.mkdir(parents=True, exist_ok=True)
        for i, (k, img) in enumerate(zip(ks, images)):
            path = folder / f"{spec['tool']}_{k:04d}_{i}.png"
            Image.fromarray((np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)).save(path)
            saved.append({"class": k, "path": str(path)})
    gaps = [(b[0] - a[0], b[1] - a[1]) for a, b in zip(stamps, stamps[1:])]
    steady = gaps[STEADY_FROM - 1:] if len(gaps) >= STEADY_FROM else []
    B = len(ks)
    return {
        "tool": spec["tool"], "batch": B, "steps": steps, "size": size, "threads": spec["threads"],
        "wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
        "rate_call": round(B * steps / wall, 4), "rate_call_cpu": round(B * steps / cpu, 4),
        "rate_steady": round(B / statistics.median(g[0] for g in steady), 4) if steady else None,
        "rate_steady_cpu": round(B / statistics.median(g[1] for g in steady), 4) if steady else None,
        "steady_steps": len(steady),
        "rss_before_mb": rss_before, "peak_rss_mb": _peak_rss_mb(),
        "images": saved, **extra,
    }


def _rss_mb() -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def _peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # KiB on Linux


# ---------------------------------------------------------------- child: the judges

def _judge_child(spec: dict) -> dict:
    """Judge saved PNGs with Lite0 (the rendered model), Lite1 and Lite2 (held out)."""
    import torch

    torch.set_num_threads(spec["threads"])
    from neuronscope import load_model
    from neuronscope.images import center_crop_resize, load_image, pil_to_tensor

    out = {}
    for name in ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"):
        model = load_model(name)
        rows = []
        for item in spec["images"]:
            img = load_image(item["path"])
            x = pil_to_tensor(center_crop_resize(img, model.input_size, model.info.eval_resize))[None]
            with torch.inference_mode():
                p = model(x).softmax(-1)[0]
            k = item["class"]
            rank = int((p > p[k]).sum())
            rows.append({"path": item["path"], "class": k, "prob": float(p[k]), "rank": rank,
                         "top1_label": model.label(int(p.argmax()))})
        out[name] = {"input_size": model.input_size, "rows": rows}
    return out


# ---------------------------------------------------------------- parent

def _run_child(kind: str, spec: dict, timeout: float) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), f"--{kind}", json.dumps(spec)]
    env = dict(os.environ, OMP_NUM_THREADS=str(spec["threads"]), MKL_NUM_THREADS=str(spec["threads"]),
               OMP_WAIT_POLICY=spec.get("omp_wait_policy", "PASSIVE"))
    if spec.get("tool") == "lucent-heap":
        env["GLIBC_TUNABLES"] = HEAP_TUNABLES
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} child failed ({spec.get('tool', '')}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _median(values):
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 4) if values else None


def _quality(judged: dict, runs: list[dict]) -> dict:
    """Per tool and judge: top-1 / top-5 rates and mean target probability over the classes."""
    tool_of = {img["path"]: r["tool"] for r in runs for img in r["images"]}
    summary: dict = {}
    for judge, data in judged.items():
        for row in data["rows"]:
            tool = tool_of[row["path"]]
            s = summary.setdefault(tool, {}).setdefault(judge, {"n": 0, "top1": 0, "top5": 0, "prob": 0.0})
            s["n"] += 1
            s["top1"] += row["rank"] == 0
            s["top5"] += row["rank"] < 5
            s["prob"] += row["prob"]
    for tool in summary.values():
        for s in tool.values():
            n = s["n"]
            s.update(top1=round(s["top1"] / n, 4), top5=round(s["top5"] / n, 4), prob=round(s["prob"] / n, 4))
    return summary


def _table(record: dict) -> str:
    sp = record["speed"]
    lines = ["| targets | tool | img·steps/s: call, wall | steady, wall | call, CPU | steady, CPU | peak RSS MB | "
             "ratio to Lucent: call, wall | steady, wall | call, CPU | steady, CPU |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    keys = ("rate_call", "rate_steady", "rate_call_cpu", "rate_steady_cpu")
    for B, per in sp.items():
        lu = per.get("lucent", {})
        for tool, s in per.items():
            def ratio(key):
                a, b = s.get(key), lu.get(key)
                return f"{a / b:.2f}x" if tool != "lucent" and a and b else ""
            rates = " | ".join(str(s.get(k)) for k in keys)
            ratios = " | ".join(ratio(k) for k in keys)
            lines.append(f"| {B} | {TOOLS[tool]} | {rates} | {s['peak_rss_mb']} | {ratios} |")
        if "lucent" in per and "1" in sp and "lucent" in sp["1"] and B != "1":
            seq = sp["1"]["lucent"]
            rates = " | ".join(str(seq.get(k)) for k in keys)
            lines.append(f"| {B} | Lucent sequential (= its 1-target rate) | {rates} | {seq['peak_rss_mb']} | | | | |")
    full = record.get("speed_full_length_8_targets", {})
    if full:
        lu = full.get("lucent", {}).get("rate_call")
        lines += ["", f"Whole {record['quality_steps']}-step render calls at 8 targets ({record.get('rounds', 1)} "
                  "round(s) of the quality batches), images·steps/s:", "",
                  "| tool | runs | median, wall | min-max | median, CPU | ÷ Lucent: median rates | ÷ Lucent: paired, "
                  "median (min-max) |", "|---|---|---|---|---|---|---|"]
        for tool, f in full.items():
            ratio = f"{f['rate_call'] / lu:.2f}x" if lu and tool != "lucent" else ""
            paired = f"{f['paired_median']:.2f}x ({f['paired_range'][0]:.2f}-{f['paired_range'][1]:.2f})" \
                if "paired_median" in f else ""
            lines.append(f"| {TOOLS[tool]} | {f['runs']} | {f['rate_call']} | {f['rate_call_min']}-{f['rate_call_max']} | "
                         f"{f['rate_call_cpu']} | {ratio} | {paired} |")
    q = record.get("quality", {})
    if q:
        lines += ["", f"Quality on {record['n_classes']} classes, {record['quality_steps']} steps, 224 px "
                  "(judges see 8-bit PNGs through their eval centre crop):", "",
                  "| tool | Lite2 top-1 | Lite2 top-5 | Lite2 mean p | Lite1 top-1 | Lite1 top-5 | Lite1 mean p | "
                  "Lite0 (rendered model) top-1 |", "|---|---|---|---|---|---|---|---|"]
        for tool, j in q.items():
            l2, l1, l0 = j["efficientnet_lite2"], j["efficientnet_lite1"], j["efficientnet_lite0"]
            lines.append(f"| {TOOLS[tool]} | {l2['top1']:.3f} | {l2['top5']:.3f} | {l2['prob']:.3f} | {l1['top1']:.3f} | "
                         f"{l1['top5']:.3f} | {l1['prob']:.3f} | {l0['top1']:.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=256,
                    help="steps of the full-length renders (every tool; 256 is the default preset's)")
    ap.add_argument("--speed-steps", type=int, default=24,
                    help="steps of each speed run (both tools; the steady-state rate uses steps >= 18)")
    ap.add_argument("--targets", default="1,8,32", help="batch sizes (targets per optimization) for speed")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved repeats of each speed configuration")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--no-plain", dest="plain", action="store_false",
                    help="skip timing neuronscope with engine=plain (done at 8 targets by default)")
    ap.add_argument("--omp-wait-policy", default="PASSIVE",
                    help="OMP_WAIT_POLICY of every render process (PASSIVE: idle OpenMP threads sleep instead of "
                         "spinning, which on a shared, oversubscribed machine made 2-thread runs ~8x slower)")
    ap.add_argument("--classes", type=int, nargs="+", default=None,
                    help="ImageNet class indices of the quality renders (default: the 16 of benchmarks/classes.py)")
    ap.add_argument("--full-tools", nargs="+", default=["ns-natural", "ns", "lucent", "ns-f32"], choices=sorted(TOOLS),
                    help="tools of the full-length renders (the classes in batches of 8, judged for quality; their "
                         "whole-call rates are the 8-target speed claim)")
    ap.add_argument("--rounds", type=int, default=2,
                    help="render the full-length batches this many times, interleaved (rounds after the first are "
                         "timed only): the speed claim is the median over all of them")
    ap.add_argument("--quality-only", action="store_true", help="skip the short speed runs")
    ap.add_argument("--quick", action="store_true", help="smoke run: 4 classes, 8 steps, targets 1,8, one repeat")
    ap.add_argument("--timeout", type=float, default=3600)
    ap.add_argument("--out", default=str(RESULTS))
    ap.add_argument("--summarize", metavar="JSON",
                    help="recompute the tables and summary of a saved run (no rendering) and write them back")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--judge", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.child:
        print(json.dumps(_render_child(json.loads(args.child))))
        return {}
    if args.judge:
        print(json.dumps(_judge_child(json.loads(args.judge))))
        return {}

    if args.summarize:
        return _resummarize(Path(args.summarize))
    sys.path.insert(0, str(HERE))
    from classes import CLASSES

    classes = list(args.classes or CLASSES)
    targets = [int(t) for t in args.targets.split(",")]
    if args.quick:
        classes, args.steps, args.speed_steps, targets, args.repeats, args.rounds = classes[:4], 8, 20, [1, 8], 1, 1
        if Path(args.out) == RESULTS:  # a smoke run never replaces the real results
            args.out = str(RESULTS.with_name(RESULTS.stem + "_quick.json"))
    from _lucent_shim import install

    install()  # once, before any timing
    started, load_before = time.time(), load_average()
    work = Path(tempfile.mkdtemp(prefix="ns_render_vs_lucent_"))
    runs: list[dict] = []

    def run(tool, ks, steps, save=None):
        spec = {"tool": tool, "classes": ks, "steps": steps, "size": args.size, "threads": args.threads,
                "save": save, "omp_wait_policy": args.omp_wait_policy}
        r = _run_child("child", spec, args.timeout)
        r["load"] = load_average()
        print(f"  {TOOLS[tool]:28s} B={len(ks):3d} steps={steps:4d}: {r['rate_call']:.2f} img·steps/s "
              f"(steady {r['rate_steady']}, CPU {r['rate_call_cpu']:.2f}), peak {r['peak_rss_mb']} MB", flush=True)
        runs.append(r)
        return r

    # quality renders (the classes in batches of 8): also the full-length speed samples at 8 targets.
    # The tools take turns, in an order rotated from batch to batch and round to round, so that a slow
    # spell of the machine falls on all of them alike.
    print(f"quality renders: {len(classes)} classes, {args.steps} steps, {args.size} px, "
          f"{args.rounds} round(s)", flush=True)
    chunks = [classes[i:i + 8] for i in range(0, len(classes), 8)]
    full_tools = [t for t in dict.fromkeys(args.full_tools) if args.plain or t != "ns-f32"]
    quality_runs, full_runs = [], []
    for rnd in range(args.rounds):
        for i, chunk in enumerate(chunks):
            k = (rnd * len(chunks) + i) % len(full_tools)
            for tool in full_tools[k:] + full_tools[:k]:
                r = run(tool, chunk, args.steps, save=str(work / tool) if rnd == 0 else None)
                r["round"], r["chunk"] = rnd, i
                full_runs.append(r)
                if rnd == 0:
                    quality_runs.append(r)

    # speed runs, interleaved and repeated
    print(f"speed runs: targets {targets}, {args.speed_steps} steps, {args.repeats} repeats", flush=True)
    speed_runs = []
    for rep in range(0 if args.quality_only else args.repeats):
        for B in targets:
            tools = ["ns", "lucent"] if rep % 2 == 0 else ["lucent", "ns"]
            if args.plain and B == 8:
                tools += ["ns-f32", "ns-bf16", "ns-plain", "lucent-heap"]
            for tool in tools:
                r = run(tool, _targets(classes, B), args.speed_steps)
                r["repeat"] = rep
                speed_runs.append(r)

    # the judges, in a later process that no renderer shares
    print("judging with Lite0, Lite1, Lite2 in a separate process", flush=True)
    images = [img for r in quality_runs for img in r["images"]]
    judged = _run_child("judge", {"images": images, "threads": args.threads,
                                  "omp_wait_policy": args.omp_wait_policy}, args.timeout)

    speed: dict = {}
    for B in targets:
        for tool in TOOLS:
            rs = [r for r in speed_runs if r["batch"] == B and r["tool"] == tool]
            if not rs:
                continue
            speed.setdefault(str(B), {})[tool] = {
                key: _median([r[key] for r in rs])
                for key in ("rate_call", "rate_steady", "rate_call_cpu", "rate_steady_cpu", "peak_rss_mb",
                            "rss_before_mb", "wall_s")
            } | {"runs": len(rs)}
    full = _full_length(full_runs)
    record = {
        "claim": "neuronscope vs torch-lucent 0.1.8 on Lite0 class logits: speed, peak memory, judged quality",
        "model": "efficientnet_lite0", "size": args.size, "threads": args.threads,
        "omp_wait_policy": args.omp_wait_policy,
        "quality_steps": args.steps, "speed_steps": args.speed_steps, "steady_from_step": STEADY_FROM,
        "rounds": args.rounds,
        "n_classes": len(classes), "classes": classes, "quick": args.quick,
        "neuronscope_tools": {t: TOOLS[t] for t in full_tools if t.startswith("ns")},
        "lucent_setup": "param.image(224, batch=B) (FFT, decorrelated, sigmoid), Adam 0.05, "
                        "standard_transforms, sum of objectives.channel('net_fc', k, batch=i), preprocess=False",
        "fast": {t: next((r.get("fast") for r in runs if r["tool"] == t), None) for t in ("ns", "ns-natural")},
        "stages": {t: next((r.get("stages") for r in runs if r["tool"] == t), None) for t in ("ns", "ns-natural")},
        "versions": {"python": platform.python_version(), **_versions(runs)},
        "cpu": cpu_name(), "cpu_count": os.cpu_count(),
        "load_average_before": load_before, "load_average_after": load_average(),
        "seconds": round(time.time() - started, 1),
        "speed": speed,
        "speed_full_length_8_targets": full,
        "quality": _quality(judged, quality_runs),
        "judged": judged, "runs": runs,
        "note": "medians over interleaved runs in fresh processes; the machine is shared, so wall-time rates "
                "are noisy and CPU-time rates are given too; see benchmarks/README.md",
    }
    _publish(record, Path(args.out))
    print(f"\nwrote {args.out} ({record['seconds']} s)")
    return record


def _publish(record: dict, out: Path) -> None:
    """The summary into the record, the record into ``out`` (atomically), the tables onto the screen."""
    from neuronscope.images import atomic_write_json

    record["summary"] = _summary(record)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out, record)
    print()
    print(_table(record))
    print()
    print(json.dumps(record["summary"], indent=1))


def _full_length(full_runs: list[dict]) -> dict:
    """Per tool, over its whole 8-target calls: median rates, and for neuronscope's tools the ratio to the
    Lucent call on the same classes in the same round ("paired": the two ran minutes apart, so a slow
    spell of the machine weighs on both)."""
    full: dict = {}
    lucent = {(r["round"], r["chunk"]): r["rate_call"] for r in full_runs if r["tool"] == "lucent" and r["batch"] == 8}
    for tool in TOOLS:
        rs = [r for r in full_runs if r["tool"] == tool and r["batch"] == 8]
        if not rs:
            continue
        full[tool] = {key: _median([r[key] for r in rs])
                      for key in ("rate_call", "rate_steady", "rate_call_cpu", "rate_steady_cpu")}
        full[tool] |= {"runs": len(rs), "rate_call_min": min(r["rate_call"] for r in rs),
                       "rate_call_max": max(r["rate_call"] for r in rs)}
        paired = [round(r["rate_call"] / lucent[r["round"], r["chunk"]], 3)
                  for r in rs if tool != "lucent" and (r["round"], r["chunk"]) in lucent]
        if paired:
            full[tool] |= {"paired_ratios": paired, "paired_median": round(statistics.median(paired), 2),
                           "paired_range": [round(min(paired), 2), round(max(paired), 2)]}
    return full


def _summary(record: dict) -> dict:
    s = {}
    eight = record["speed"].get("8", {})
    if "ns" in eight and "lucent" in eight:
        for key in ("rate_call", "rate_steady", "rate_call_cpu", "rate_steady_cpu"):
            a, b = eight["ns"][key], eight["lucent"][key]
            s[f"speedup_8_targets_{key}"] = round(a / b, 2) if a and b else None
    if "ns" in eight and "lucent-heap" in eight:
        a, b = eight["ns"]["rate_call"], eight["lucent-heap"]["rate_call"]
        s["speedup_8_targets_rate_call_vs_heap_tuned_lucent"] = round(a / b, 2) if a and b else None
    full = record["speed_full_length_8_targets"]
    lu = full.get("lucent", {})
    for tool, f in full.items():
        if tool.startswith("ns") and lu:
            # the ratio of the median rates, and the median and range of the paired ratios (see _full_length)
            s[f"speedup_full_length_{tool}"] = {
                key: round(f[key] / lu[key], 2) for key in ("rate_call", "rate_call_cpu") if f[key] and lu[key]}
            if "paired_median" in f:
                s[f"speedup_full_length_{tool}"] |= {k: f[k] for k in ("paired_median", "paired_range")}
    q = record["quality"]
    for tool in q:
        s[f"lite2_top1_{tool}"] = q[tool]["efficientnet_lite2"]["top1"]
    # the target is judged on whole render calls at 8 targets (what a user runs), by the library's defaults;
    # the 24-step calls (mostly ReLU-redirection steps and set-up) and the steady rate are reported beside it
    default = s.get("speedup_full_length_ns-natural", {}).get("paired_median")
    s["target_4x_met"] = None if default is None else bool(default >= 4)
    if "ns-natural" in q and "lucent" in q:
        s["target_quality_met"] = bool(s["lite2_top1_ns-natural"] >= s["lite2_top1_lucent"])
    return s


def _resummarize(path: Path) -> dict:
    record = json.loads(path.read_text())
    record["speed_full_length_8_targets"] = _full_length([r for r in record["runs"] if "round" in r])
    _publish(record, path)
    return record


def _versions(runs) -> dict:
    import torch

    import neuronscope

    v = {"torch": torch.__version__, "neuronscope": getattr(neuronscope, "__version__", "?")}
    for r in runs:
        if r["tool"] == "lucent":
            v.update(lucent=r.get("lucent"), kornia=r.get("kornia"))
            break
    return v


if __name__ == "__main__":
    main()
