"""Claim: EfficientNet-Lite0's forward time per image at 224 px on this CPU.

Measures ``model(x)`` under ``torch.inference_mode()`` for batch 1 and batch 8,
with 1 and 2 threads: a few warm-up passes, then the median of 10 timed passes,
reported per image, as wall time and as this process's CPU time (the latter is
what the wall time would be with 1 thread on an idle machine; the machines here
are shared, so the load average is recorded too). Prints the figures and writes
``benchmarks/results/forward_speed.json``.

    python benchmarks/forward_speed.py [--size 224] [--repeats 10] [--model efficientnet_lite0]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import torch

from neuronscope import __version__, load_model
from neuronscope.images import atomic_write_json

from _machine import cpu_name, load_average  # noqa: E402 - benchmarks/ is the script's folder

RESULTS = Path(__file__).resolve().parent / "results" / "forward_speed.json"


def time_forward(model, batch: int, size: int, threads: int, repeats: int, warmup: int = 3) -> dict:
    """Median and spread of ``repeats`` forward passes, in milliseconds."""
    torch.set_num_threads(threads)
    x = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(0))
    times, cpu = [], []
    with torch.inference_mode():
        for _ in range(warmup):
            model(x)
        for _ in range(repeats):
            t, c = time.perf_counter(), time.process_time()
            model(x)
            times.append((time.perf_counter() - t) * 1000.0)
            cpu.append((time.process_time() - c) * 1000.0)
    med = statistics.median(times)
    return {
        "batch": batch,
        "threads": threads,
        "size": size,
        "median_ms_per_batch": round(med, 2),
        "median_ms_per_image": round(med / batch, 2),
        "images_per_second": round(1000.0 * batch / med, 1),
        # CPU time of this process (all its threads): close to the wall time of an idle
        # machine with 1 thread, and unaffected by other processes sharing the cores.
        "median_cpu_ms_per_image": round(statistics.median(cpu) / batch, 2),
        "min_ms_per_batch": round(min(times), 2),
        "max_ms_per_batch": round(max(times), 2),
        "repeats": repeats,
    }


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="efficientnet_lite0")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args(argv)

    model = load_model(args.model, device="cpu")
    load_before = load_average()
    runs = []
    for threads in (1, 2):
        for batch in (1, 8):
            r = time_forward(model, batch, args.size, threads, args.repeats)
            runs.append(r)
            print(
                f"{args.model} {args.size}px batch {batch:>2} threads {threads}: "
                f"{r['median_ms_per_image']:7.1f} ms/image  ({r['median_ms_per_batch']:.1f} ms/batch, "
                f"min {r['min_ms_per_batch']:.1f}, max {r['max_ms_per_batch']:.1f}; "
                f"{r['images_per_second']:.1f} images/s; CPU time {r['median_cpu_ms_per_image']:.1f} ms/image)"
            )
    result = {
        "claim": f"{args.model} forward time per image at {args.size}px on CPU",
        "model": args.model,
        "neuronscope": __version__,
        "torch": torch.__version__,
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "note": "median of timed passes after warm-up; the machine is shared, so the load average is recorded",
        "runs": runs,
    }
    atomic_write_json(args.out, result)
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
