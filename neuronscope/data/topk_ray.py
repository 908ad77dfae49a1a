"""The top-k pass sharded over Ray workers, with the same result as one local pass.

The driver cuts the images still missing into shards (index ranges, aligned on
the store's batches, ``shard_size`` images at most) and hands them to
whichever worker is free. A worker streams its shard in the same batches the
local pass would use and returns, as plain values, each layer's top-k state
(:meth:`RunningTopK.state_dict`), the views (PNG bytes) of the images in its
top-k, the images it could not read, and timings. The driver merges the states
(exact, order-independent) and alone writes the store, one checkpoint per
shard: a layer's progress is its done prefix plus the shards done beyond it,
so a killed run resumes with the shards that were not committed, and a local
run can finish what a Ray run started (and the other way round).

Images reach the workers as paths, which every node must see at the same path
(shared storage), or with ``send_images`` as bytes read by the driver, so a
laptop driver with a folder of photos can use a cluster.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Sequence

import torch

from ..errors import NeuronscopeError
from ..images import png_bytes
from ..ray_pool import ActorPool
from ..stats.topk import RunningTopK
from .folder import ImageBytes, stream_batches

DEFAULT_SHARD_IMAGES = 256


class _Window:
    """Items ``start .. start + len(items) - 1`` of an image list (the rest is never read)."""

    def __init__(self, start: int, items: list):
        self.start, self.items = start, items

    def __len__(self) -> int:
        return self.start + len(self.items)

    def __getitem__(self, i: int):
        return self.items[i - self.start]


class _TopkActor:
    """A Ray worker: holds the model and streams shards into top-k states; it never opens the store."""

    def __init__(self, model, size: int, crop_fraction: float, batch_size: int, threads: int, device):
        import socket

        from ..models import load_model

        torch.set_num_threads(max(1, threads))
        self.model = load_model(model, device=device)
        self.size, self.crop_fraction, self.batch_size = size, crop_fraction, batch_size
        self._name = f"ray:{socket.gethostname()}:{os.getpid()}"

    def name(self) -> str:
        return self._name

    def shard(self, start: int, stop: int, layers: dict[str, tuple[int, int]], items: list) -> dict:
        from .scan import scan_batch

        t0 = time.perf_counter()
        states = {l: RunningTopK(units, k) for l, (units, k) in layers.items()}
        kept: dict[int, torch.Tensor] = {}
        failed: list[tuple[int, str]] = []
        images = 0
        for batch in stream_batches(_Window(start, items), self.size, self.batch_size, start=start, end=stop,
                                    crop_fraction=self.crop_fraction, progress=False):
            if batch.ids:
                scan_batch(self.model, list(states), states, batch)
                referenced = set().union(*(s.referenced_ids() for s in states.values()))
                kept = {i: v for i, v in kept.items() if i in referenced}
                kept.update({i: batch.x[row].clone() for row, i in enumerate(batch.ids) if i in referenced})
            failed += batch.failed
            images += len(batch.ids)
        return {"states": {l: s.state_dict() for l, s in states.items()},
                "views": {i: png_bytes(v) for i, v in kept.items()}, "failed": failed, "images": images,
                "seconds": time.perf_counter() - t0, "worker": self._name}


def plan_shards(n: int, layers: Sequence[str], done: dict[str, int], shards: dict[str, list[tuple[int, int]]],
                shard_size: int) -> list[tuple[int, int, list[str]]]:
    """(start, stop, layers missing it) for every range still to do, cut at multiples of ``shard_size``."""
    missing: dict[str, list[tuple[int, int]]] = {}
    for l in layers:
        covered = sorted([(0, done[l])] + list(shards[l]))
        gaps, at = [], 0
        for a, b in covered:
            if a > at:
                gaps.append((at, a))
            at = max(at, b)
        if at < n:
            gaps.append((at, n))
        missing[l] = gaps
    cuts = {0, n, *range(0, n, shard_size)}
    for gaps in missing.values():
        for a, b in gaps:
            cuts.update((a, b))
    points = sorted(c for c in cuts if 0 <= c <= n)
    tasks = []
    for a, b in zip(points, points[1:]):
        need = [l for l in layers if any(ga <= a and b <= gb for ga, gb in missing[l])]
        if need:
            tasks.append((a, b, need))
    return tasks


def run_sharded(run, model, paths: Sequence[Path], layers: list[str], done: dict[str, int],
                shards: dict[str, list[tuple[int, int]]], *, size: int, crop_fraction: float, batch_size: int,
                workers: int, address: str | None, threads: int, shard_size: int | None, send_images: bool,
                device, progress: bool) -> None:
    """Fill ``run.states`` (and ``run.store``) from the shards still missing, on Ray workers."""
    from tqdm.auto import tqdm

    from .scan import absorb

    st, states, n = run.store, run.states, len(paths)
    shard_size = int(shard_size or DEFAULT_SHARD_IMAGES)
    if shard_size < 1:
        raise NeuronscopeError(f"--shard-size must be at least 1, got {shard_size}")
    shard_size = -(-shard_size // batch_size) * batch_size  # whole batches: the local pass's batches
    tasks = plan_shards(n, layers, done, shards, shard_size)
    shape = {l: (states[l].units, states[l].k) for l in layers}

    def args_of(task):
        a, b, need = task
        items = [ImageBytes.read(p) for p in paths[a:b]] if send_images else [str(p) for p in paths[a:b]]
        return a, b, {l: shape[l] for l in need}, items

    t0 = time.perf_counter()
    pool = ActorPool(_TopkActor, (model, size, crop_fraction, batch_size, threads, device), workers=workers,
                     address=address, threads=threads, device=device)
    lock = st.writer() if st is not None else _Null()
    with lock, pool:
        run.startup_seconds = time.perf_counter() - t0
        bar = tqdm(total=sum(b - a for a, b, _ in tasks), desc=f"top-k on {workers} Ray workers", unit="img",
                   disable=not progress, dynamic_ncols=True)
        t1 = time.perf_counter()
        try:
            for (a, b, need), res in pool.run("shard", tasks, args_of=args_of):
                for l in need:
                    states[l].merge(RunningTopK.from_state_dict(res["states"][l]))
                    done[l], shards[l] = absorb(done[l], shards[l] + [(a, b)])
                run.images_processed += res["images"]
                run.failed += res["failed"]
                if st is not None:
                    referenced = set().union(*(s.referenced_ids() for s in states.values()))
                    for i, png in res["views"].items():
                        if i in referenced and not st.has_view(i):
                            st.put_view(i, png)
                    st.checkpoint({l: states[l] for l in need}, done, res["failed"], {l: shards[l] for l in need})
                bar.update(b - a)
        finally:
            bar.close()
            run.seconds = time.perf_counter() - t1
        if st is not None and all(st.complete(l) for l in st.layers()):
            st.prune_views()


class _Null:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False
