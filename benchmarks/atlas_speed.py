"""Claim: atlas throughput (units per minute) on this CPU, and what a whole-network atlas would cost.

Part 1, measured: the local backend (render + PNG + SQLite record, the path the
atlas uses) on ``--layer`` (default blocks.6 of Lite0) at batch sizes 1, 8 and
32: units per minute, wall and process-CPU time (the machine is shared: the
load average is recorded before and after each run).

Part 2, measured: per-unit cost at the atlas's *default* settings (128 px,
lucid preset, 512 steps, batch 32) for every block output of Lite0, from the
median step time of a short optimization (plus its fixed cost), so the wall
time of a whole-Lite0 atlas on this CPU is a sum over layers of channels x
per-unit cost. The FLOPs of one unit-step (forward to the layer, backward to
the image, at the ~140 px the transforms feed the model) are counted with
torch's FlopCounterMode, giving this CPU's achieved FLOP/s.

Part 3: ResNet-50 (a definition written here with random weights: FLOPs and
time do not depend on the weights): FLOPs per unit-step of every block, the
measured per-unit cost of the last block of each stage on this CPU (other blocks
scaled by FLOPs), and estimates for Lite0 and ResNet-50 on 1 and 16 GPUs from
the counted FLOPs, stated GPU throughput assumptions and the loop's per-step
floor measured here (all stored with the figures). Prints everything and writes
``benchmarks/results/atlas_speed.json``.

    python benchmarks/atlas_speed.py [--size 64] [--steps 32] [--units 32] [--threads 1]
    python benchmarks/atlas_speed.py --quick     # smoke run: part 1 only, 8 units, 8 steps (overwrites the JSON)
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path

import torch
from torch import nn

from neuronscope import __version__, load_model
from neuronscope.images import atomic_write_json

from _machine import cpu_name, load_average  # benchmarks/ is the script's folder

RESULTS = Path(__file__).resolve().parent / "results" / "atlas_speed.json"

# GPU assumptions for part 3 (stated, not measured here: there is no GPU on this machine).
GPU = {
    "name": "one NVIDIA A100 40 GB per worker, TF32 convolutions, 32 rows of ~140 px per step",
    "peak_tflops_tf32": 156.0,
    # achieved FLOP/s for forward-to-layer + gradient-to-image of 32 small images:
    "achieved_tflops": {"resnet50": 25.0, "efficientnet_lite0": 5.0},
    "why": "ResNet-50 training in TF32 runs at roughly 1,000-1,200 img/s at 224 px on an A100, i.e. "
           "~3 x 8.2 GFLOP x 1,100 = ~27 TFLOP/s; 32 images of 140 px per step fill the GPU less, so 25; "
           "Lite0's depthwise convolutions are memory-bound (assumed 5 TFLOP/s, ~3% of peak). "
           "Treat the results as +-2x.",
    "startup_s": 60.0,  # start Ray, ship the model, warm up cuDNN, per run (parallel over workers)
    "launch_us": 10.0,  # PyTorch eager dispatch + CUDA launch per tensor operation (typically 5-20 us)
}
def git_state() -> dict:
    """The commit measured, and whether the render engine had uncommitted changes (it is shared work)."""
    import subprocess

    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "neuronscope/optim", "neuronscope/atlas"], cwd=root,
                               capture_output=True, text=True).stdout.strip().splitlines()
    except OSError:
        return {}
    return {"commit": head, "uncommitted": dirty}


# ---------------------------------------------------------------- part 1: units per minute


def units_per_minute(model, layer: str, units: int, batch: int, size: int, steps: int) -> dict:
    """Run the local backend over ``units`` channels of ``layer`` into a fresh store."""
    from neuronscope.atlas import AtlasSettings, AtlasStore, LocalBackend, make_batches
    from neuronscope.atlas.settings import manifest

    settings = AtlasSettings(size=size, steps=steps, batch=batch)
    with tempfile.TemporaryDirectory() as tmp:
        store = AtlasStore.open_or_create(Path(tmp) / "store", manifest(model, settings))
        shape = tuple(model_shape(model, layer))
        store.add_layers([(layer, shape[0], shape)])
        batches = make_batches([(layer, u) for u in range(units)], settings.units_per_batch)
        done = []
        l0, t0, c0 = load_average(), time.perf_counter(), time.process_time()
        LocalBackend().run(model, batches, settings, store, "bench", {layer: shape},
                           lambda b, rec, s: done.extend(rec), threading.Event())
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        assert len(done) == units and store.check() == []
        store.close()
    return {"batch": batch, "units": units, "size": size, "steps": steps, "wall_s": round(wall, 2),
            "cpu_s": round(cpu, 2), "units_per_minute": round(60 * units / wall, 1),
            "units_per_minute_cpu_time": round(60 * units / cpu, 1), "load_before": l0, "load_after": load_average()}


def model_shape(model, layer: str, size: int | None = None) -> tuple:
    from neuronscope.taps import layer_shapes

    return layer_shapes(model, [layer], size)[layer]


# ---------------------------------------------------------------- part 2: per-unit cost per layer


def unit_step_flops(model, layer: str, size: int = 140) -> float:
    """FLOPs of one unit-step: forward to ``layer`` and back to the image, one row at ``size`` px."""
    from torch.utils.flop_counter import FlopCounterMode

    from neuronscope.taps import tap

    x = torch.rand(1, 3, size, size, requires_grad=True)
    with FlopCounterMode(display=False) as fc, tap(model, [layer], stop_early=True) as taps:
        taps.run(x)
        taps[layer].mean().backward()
    return float(fc.get_total_flops())


def step_cost(model, layer: str, size: int, steps: int, batch: int) -> dict:
    """Median seconds per optimization step of ``batch`` units, and the fixed cost of one optimization."""
    from neuronscope.optim import objectives as O
    from neuronscope.optim import render

    n = min(batch, model_shape(model, layer)[0])
    stamps = []
    t0 = time.perf_counter()
    c0 = time.process_time()
    render(model, O.Objective.sum(O.channel(layer, c).on(i) for i, c in enumerate(range(n))), batch=n, size=size, steps=steps, progress=False,
           callback=lambda step, img, v: stamps.append(time.perf_counter()) and False)
    total, cpu = time.perf_counter() - t0, time.process_time() - c0
    gaps = [b - a for a, b in zip(stamps, stamps[1:])]
    per_step = statistics.median(gaps[1:] or gaps)
    fixed = max(0.0, total - per_step * steps)
    return {"rows": n, "step_s": per_step, "fixed_s": fixed, "cpu_fraction": cpu / total if total else 1.0}


def lite0_layer_costs(model, size: int, steps_measured: int, batch: int, full_steps: int) -> list[dict]:
    from neuronscope.atlas import default_layers

    rows = []
    for layer in default_layers(model):
        ch = model_shape(model, layer)[0]
        c = step_cost(model, layer, size, steps_measured, batch)
        per_unit = (c["fixed_s"] + full_steps * c["step_s"]) / c["rows"]
        rows.append({"layer": layer, "channels": ch, "step_s_batch": round(c["step_s"], 4),
                     "fixed_s": round(c["fixed_s"], 2), "unit_s": round(per_unit, 3),
                     "cpu_fraction": round(c["cpu_fraction"], 2),
                     "unit_step_gflops": round(unit_step_flops(model, layer) / 1e9, 4)})
        print(f"  {layer:10s} {ch:5d} ch  {c['step_s']:.3f} s/step (batch {c['rows']})  ->  {per_unit:.2f} s/unit "
              f"at {full_steps} steps; {rows[-1]['unit_step_gflops']:.3f} GFLOP/unit-step", flush=True)
    return rows


# ---------------------------------------------------------------- part 3: ResNet-50


class Bottleneck(nn.Module):
    def __init__(self, cin: int, width: int, stride: int):
        super().__init__()
        cout = 4 * width
        self.conv1, self.bn1 = nn.Conv2d(cin, width, 1, bias=False), nn.BatchNorm2d(width)
        self.conv2, self.bn2 = nn.Conv2d(width, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width)
        self.conv3, self.bn3 = nn.Conv2d(width, cout, 1, bias=False), nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return self.relu(y + (x if self.down is None else self.down(x)))


class ResNet50(nn.Module):
    """He et al. 2016, 50 layers (3-4-6-3 bottlenecks), torchvision's layer names; random weights."""

    def __init__(self, classes: int = 1000):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64)
        self.relu, self.maxpool = nn.ReLU(), nn.MaxPool2d(3, 2, 1)
        cin, layers = 64, []
        for width, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
            seq = []
            for i in range(blocks):
                seq.append(Bottleneck(cin, width, stride if i == 0 else 1))
                cin = 4 * width
            layers.append(nn.Sequential(*seq))
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.avgpool, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(2048, classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def ops_per_step(model, layer: str) -> int:
    """Tensor operations one optimization step dispatches (1 row, 32 px): forward, backward,
    transforms, parameterization and Adam. On a GPU each is at least one kernel launch."""
    from torch.utils._python_dispatch import TorchDispatchMode

    from neuronscope.optim import objectives as O
    from neuronscope.optim import render

    class Count(TorchDispatchMode):
        n = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            Count.n += 1
            return func(*args, **(kwargs or {}))

    render(model, O.channel(layer, 0), size=32, steps=1, progress=False)  # one-off work (e.g. BN folding) first
    counts = []
    for steps in (4, 8):
        Count.n = 0
        with Count():
            render(model, O.channel(layer, 0), size=32, steps=steps, progress=False)
        counts.append(Count.n)
    return (counts[1] - counts[0]) // 4


def step_floor(ops: int) -> float:
    """Seconds per step that no amount of FLOP/s removes: ``ops`` launches at GPU["launch_us"] each."""
    return ops * GPU["launch_us"] * 1e-6


def gpu_estimate(layers: list[dict], model_key: str, steps: int, batch: int, gpus: int, floor_s: float,
                 speed: float = 1.0) -> dict:
    """Wall time on ``gpus`` GPUs from FLOPs per unit-step and the stated throughput (x ``speed``)."""
    tflops = GPU["achieved_tflops"][model_key] * 1e12 * speed
    seconds, tail = 0.0, 0.0
    for l in layers:
        step = max(batch * l["unit_step_gflops"] * 1e9 / tflops, floor_s)
        seconds += -(-l["channels"] // batch) * steps * step
        tail = max(tail, steps * step)
    wall = seconds / gpus + GPU["startup_s"] + (tail if gpus > 1 else 0.0)
    return {"gpus": gpus, "units": sum(l["channels"] for l in layers), "gpu_seconds": round(seconds, 1),
            "wall_s": round(wall, 1), "wall_h": round(wall / 3600, 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="efficientnet_lite0")
    ap.add_argument("--layer", default="blocks.6")
    ap.add_argument("--size", type=int, default=64, help="part 1 render size (default 64)")
    ap.add_argument("--steps", type=int, default=32, help="part 1 steps (default 32)")
    ap.add_argument("--units", type=int, default=32, help="part 1 units per batch size (default 32)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--full-size", type=int, default=128, help="the atlas default size for parts 2-3")
    ap.add_argument("--full-steps", type=int, default=512, help="the lucid preset's steps")
    ap.add_argument("--measure-steps", type=int, default=5, help="steps timed per layer in part 2")
    ap.add_argument("--rounds", type=int, default=2, help="part 1 rounds (default 2)")
    ap.add_argument("--quick", action="store_true", help="part 1 only")
    args = ap.parse_args()
    if args.quick:  # a smoke run: part 1 with fewer units and steps, one round
        args.units, args.steps, args.rounds = min(args.units, 8), min(args.steps, 8), 1

    torch.set_num_threads(args.threads)
    model = load_model(args.model, device="cpu")
    out = {"claim": "atlas units per minute on this CPU (local backend), per-unit cost of a whole-network atlas, "
                    "and estimates for Lite0 and ResNet-50 on 1 and 16 GPUs",
           "model": args.model, "neuronscope": __version__, "torch": torch.__version__, "cpu": cpu_name(),
           "cpu_count": os.cpu_count(), "threads": args.threads, "load_average_start": load_average(), "code": git_state(),
           "note": "the machine is shared with other engineers' jobs; wall times depend on the load recorded with "
                   "each run, CPU (process) times much less so"}

    print(f"part 1: local backend, {args.layer}, {args.units} units, {args.size} px, {args.steps} steps, "
          f"{args.threads} thread(s); load {load_average()}", flush=True)
    model_shape(model, args.layer)
    units_per_minute(model, args.layer, 4, 4, args.size, 2)  # warm-up
    part1 = []
    for rnd in range(args.rounds):  # interleaved rounds, so a burst of load hits every batch size alike
        for batch in (1, 8, 32):
            r = units_per_minute(model, args.layer, args.units, batch, args.size, args.steps)
            r["round"] = rnd
            part1.append(r)
            print(f"  round {rnd} batch {batch:2d}: {r['units_per_minute']:7.1f} units/min wall ({r['wall_s']:.1f} s), "
                  f"{r['units_per_minute_cpu_time']:7.1f} units/min of CPU time; load {r['load_before']} -> "
                  f"{r['load_after']}", flush=True)
    best = {}
    for batch in (1, 8, 32):
        rs = [r for r in part1 if r["batch"] == batch]
        best[batch] = {"best_wall_units_per_minute": max(r["units_per_minute"] for r in rs),
                       "median_cpu_time_units_per_minute": statistics.median(r["units_per_minute_cpu_time"] for r in rs)}
        print(f"  batch {batch:2d}: best {best[batch]['best_wall_units_per_minute']:.1f} units/min wall, "
              f"median {best[batch]['median_cpu_time_units_per_minute']:.1f} units/min of CPU time")
    out["part1_units_per_minute"] = part1
    out["part1_summary"] = {str(k): v for k, v in best.items()}
    out["summary"] = {f"units_per_min_batch{b}": v["best_wall_units_per_minute"] for b, v in best.items()}
    if args.quick:
        out["quick"] = True
        atomic_write_json(RESULTS, out)
        return

    print(f"part 2: Lite0 per-unit cost at {args.full_size} px, {args.full_steps} steps, batch 32 "
          f"(median of {args.measure_steps} timed steps per layer); load {load_average()}", flush=True)
    lite = lite0_layer_costs(model, args.full_size, args.measure_steps, 32, args.full_steps)
    units = sum(l["channels"] for l in lite)
    cpu_s = sum(l["channels"] * l["unit_s"] for l in lite)
    flops = sum(l["channels"] * l["unit_step_gflops"] for l in lite) * 1e9 * args.full_steps
    out["part2_lite0_layers"] = lite
    idle_s = sum(l["channels"] * l["unit_s"] * min(1.0, l["cpu_fraction"]) for l in lite)
    out["part2_lite0_cpu"] = {"units": units, "wall_s": round(cpu_s, 1), "wall_h": round(cpu_s / 3600, 2),
                              "cpu_time_h": round(idle_s / 3600, 2),
                              "total_tflop": round(flops / 1e12, 1),
                              "achieved_gflops_per_s": round(flops / cpu_s / 1e9, 2), "load_after": load_average()}
    print(f"  Lite0 every block-output channel: {units} units -> {cpu_s / 3600:.1f} h on this CPU "
          f"({args.threads} thread, shared; {idle_s / 3600:.1f} h of CPU time), {flops / 1e12:.0f} TFLOP, "
          f"achieved {flops / cpu_s / 1e9:.1f} GFLOP/s", flush=True)

    print("part 3: ResNet-50 (random weights): FLOPs per unit-step, measured cost of the last block of each "
          "stage, and GPU estimates", flush=True)
    rn = load_model(ResNet50().eval(), preprocess="imagenet", input_size=224, name="resnet50")
    rn_layers = []
    for name in [f"layer{i}.{j}" for i, n in ((1, 3), (2, 4), (3, 6), (4, 3)) for j in range(n)]:
        rn_layers.append({"layer": name, "channels": model_shape(rn, name)[0],
                          "unit_step_gflops": round(unit_step_flops(rn, name) / 1e9, 4)})
    probes = {}
    for name in ("layer1.2", "layer2.3", "layer3.5", "layer4.2"):
        c = step_cost(rn, name, args.full_size, 3, 32)
        probes[name] = c
        print(f"  {name:9s} {c['step_s']:.3f} s/step (batch 32), fixed {c['fixed_s']:.1f} s", flush=True)
    for l in rn_layers:  # other blocks of a stage: the stage probe's cost scaled by FLOPs
        stage = l["layer"].split(".")[0]
        probe_name = next(p for p in probes if p.startswith(stage + "."))
        probe = next(x for x in rn_layers if x["layer"] == probe_name)
        c = probes[probe_name]
        step = c["step_s"] * l["unit_step_gflops"] / probe["unit_step_gflops"]
        l["unit_s"] = round((c["fixed_s"] + args.full_steps * step) / 32, 3)
        l["measured"] = l["layer"] == probe_name
    rn_units = sum(l["channels"] for l in rn_layers)
    rn_cpu_s = sum(l["channels"] * l["unit_s"] for l in rn_layers)
    rn_flops = sum(l["channels"] * l["unit_step_gflops"] for l in rn_layers) * 1e9 * args.full_steps
    ratio = rn_flops / flops
    ops = {"efficientnet_lite0": ops_per_step(model, "head"), "resnet50": ops_per_step(rn, "layer4.2")}
    floors = {k: step_floor(v) for k, v in ops.items()}
    out["part3_resnet50_layers"] = rn_layers
    out["part3_resnet50_cpu"] = {"units": rn_units, "wall_s": round(rn_cpu_s, 1), "wall_h": round(rn_cpu_s / 3600, 1),
                                 "total_tflop": round(rn_flops / 1e12, 1),
                                 "achieved_gflops_per_s": round(rn_flops / rn_cpu_s / 1e9, 2)}
    out["part3_ops_per_step"] = ops
    out["part3_step_floor_s"] = {k: round(v, 4) for k, v in floors.items()}
    estimates = {}
    for key, layers in (("efficientnet_lite0", lite), ("resnet50", rn_layers)):
        for g in (1, 16):
            e = gpu_estimate(layers, key, args.full_steps, 32, g, floors[key])
            e["range_h"] = [gpu_estimate(layers, key, args.full_steps, 32, g, floors[key], sp)["wall_h"] for sp in (2.0, 0.5)]
            estimates[f"{key}_{g}gpu"] = e
    out["part3_estimates"] = estimates
    out["gpu_assumptions"] = GPU
    out["assumptions"] = [
        f"every channel of the block outputs: Lite0 {units} units (stem, blocks.0-15, head), "
        f"ResNet-50 {rn_units} units (layer1.0 .. layer4.2)",
        f"atlas defaults: {args.full_size} px (the model sees ~140 px after Lucid's transforms), "
        f"{args.full_steps} steps, 32 rows per optimization, no diversity images",
        "FLOPs counted by torch.utils.flop_counter on forward-to-layer + backward-to-image at 140 px (parameters "
        f"frozen); ResNet-50 / Lite0 total FLOPs ratio {ratio:.1f} ({rn_units / units:.1f}x the units)",
        "GPU time = sum over batches of steps x max(FLOPs of the batch step / achieved FLOP/s, a per-step floor "
        "of (tensor operations per step, counted here) x launch_us); 16 GPUs split the batches evenly (units are "
        "independent), plus start-up and one batch of tail; range_h = throughput x2 and x0.5",
    ]
    out["load_average_end"] = load_average()
    out["summary"].update({"lite0_all_units_cpu_h": round(cpu_s / 3600, 1),
                           **{f"{k}_min": round(v["wall_h"] * 60, 1) for k, v in estimates.items()}})
    atomic_write_json(RESULTS, out)
    print(f"  ResNet-50: {rn_units} units, {rn_flops / 1e12:.0f} TFLOP ({ratio:.1f}x Lite0); on this CPU "
          f"{rn_cpu_s / 3600:.0f} h ({rn_flops / rn_cpu_s / 1e9:.1f} GFLOP/s achieved)")
    print(f"  per-step floor: Lite0 {ops['efficientnet_lite0']} ops -> {floors['efficientnet_lite0'] * 1000:.1f} ms, "
          f"ResNet-50 {ops['resnet50']} ops -> {floors['resnet50'] * 1000:.1f} ms")
    for k, v in estimates.items():
        print(f"  {k:24s} {v['wall_h'] * 60:7.1f} min  (range {v['range_h'][0] * 60:.1f}-{v['range_h'][1] * 60:.1f} min, "
              f"{v['units']} units, {v['gpu_seconds'] / 3600:.2f} GPU-hours)")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
