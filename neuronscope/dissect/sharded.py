"""Network Dissection's two passes sharded over Ray workers.

The driver cuts the dataset into shards (index ranges of ``shard_size``
samples) and hands them to whichever worker is free; each worker holds the
model and the dataset description and returns plain values:

- pass 1: per layer the state of its quantile sketch (seeded by the shard, so
  shards flip independent coins) and of its top images; the driver merges them
  in shard order (reproducible), within the sketch's stated error bound;
- pass 2, with the thresholds from the merged sketches: per layer the
  intersection and union counts, which add up exactly.

Images and masks reach the workers as paths on storage every node sees at the
same path, or with ``send_images`` as bytes read by the driver; a worker then
keeps them in a private temporary folder for the shard and deletes them after.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch

from ..errors import NeuronscopeError
from ..ray_pool import ActorPool
from .dataset import SegmentationDataset
from .iou import ThresholdStats, iou_pass, threshold_pass

DEFAULT_SHARD_SAMPLES = 128


def _read(path: Path | None) -> bytes | None:
    if path is None:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise NeuronscopeError(f"cannot read {path} to send it to the workers ({e.strerror or e})") from None


class _DissectActor:
    """A Ray worker holding the model and the dataset's description (no files of the driver's)."""

    def __init__(self, model, dataset: SegmentationDataset, layers: list[str], settings: dict, threads: int, device):
        import socket

        from ..models import load_model

        torch.set_num_threads(max(1, threads))
        self.model = load_model(model, device=device)
        self.dataset, self.layers, self.s = dataset, layers, settings
        self._name = f"ray:{socket.gethostname()}:{os.getpid()}"

    def name(self) -> str:
        return self._name

    def _local(self, files: dict | None):
        """The dataset, with the shard's samples in a private folder when they came as bytes."""
        if not files:
            return self.dataset, None
        tmp = Path(tempfile.mkdtemp(prefix="ns-dissect-"))
        samples = list(self.dataset.samples)
        for i, (img, mask) in files.items():
            s = samples[i]
            ip = tmp / f"{i}-image{s.image.suffix}"
            ip.write_bytes(img)
            mp = None
            if mask is not None:
                mp = tmp / f"{i}-mask{s.mask.suffix}"
                mp.write_bytes(mask)
            samples[i] = dataclasses.replace(s, image=ip, mask=mp)
        ds = copy.copy(self.dataset)
        ds.samples = samples
        return ds, tmp

    def thresholds(self, start: int, stop: int, seed: int, files: dict | None) -> dict:
        t0 = time.perf_counter()
        ds, tmp = self._local(files)
        try:
            stats = threshold_pass(self.model, ds, self.layers, range(start, stop), size=self.s["size"],
                                   batch_size=self.s["batch_size"], top=self.s["top"], sketch_k=self.s["sketch_k"],
                                   seed=seed)
        finally:
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)
        return {"stats": {n: st.state_dict() for n, st in stats.items()}, "seconds": time.perf_counter() - t0}

    def iou(self, start: int, stop: int, thresholds: dict, saturated: dict, files: dict | None) -> dict:
        t0 = time.perf_counter()
        ds, tmp = self._local(files)
        try:
            counts = iou_pass(self.model, ds, self.layers, range(start, stop), thresholds, saturated,
                              size=self.s["size"], label_size=self.s["label_size"], batch_size=self.s["batch_size"])
        finally:
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)
        return {"counts": {n: (i.cpu(), u.cpu()) for n, (i, u) in counts.items()}, "seconds": time.perf_counter() - t0}


class ShardedDissection:
    """Both passes of :func:`~.iou.dissect` on a pool of Ray workers (a context manager)."""

    def __init__(self, model, dataset: SegmentationDataset, layers: list[str], settings: dict, *, workers: int,
                 address: str | None, threads: int, shard_size: int | None, send_images: bool, progress: bool):
        shard_size = int(shard_size or DEFAULT_SHARD_SAMPLES)
        if shard_size < 1:
            raise NeuronscopeError(f"--shard-size must be at least 1, got {shard_size}")
        bs = settings["batch_size"]
        shard_size = -(-shard_size // bs) * bs  # whole batches: the local pass's batches
        n = len(dataset)
        self.shards = [(a, min(a + shard_size, n)) for a in range(0, n, shard_size)]
        self.dataset, self.send_images, self.progress = dataset, send_images, progress
        self.workers = workers
        self.pool = ActorPool(_DissectActor, (model, dataset, layers, settings, threads, None), workers=workers,
                              address=address, threads=threads)
        self.startup_seconds = 0.0
        self.seconds: dict[str, float] = {}

    def __enter__(self) -> "ShardedDissection":
        t0 = time.perf_counter()
        self.pool.__enter__()
        self.startup_seconds = time.perf_counter() - t0
        return self

    def __exit__(self, *exc) -> None:
        self.pool.__exit__(*exc)

    def _files(self, a: int, b: int) -> dict | None:
        if not self.send_images:
            return None
        return {i: (_read(self.dataset.samples[i].image), _read(self.dataset.samples[i].mask)) for i in range(a, b)}

    def _bar(self, desc: str):
        from tqdm.auto import tqdm

        return tqdm(total=len(self.dataset), desc=f"{desc} on {self.workers} Ray workers", unit="img",
                    disable=not self.progress, leave=False)

    def threshold_pass(self) -> dict[str, ThresholdStats]:
        t0 = time.perf_counter()
        order = {shard: j for j, shard in enumerate(self.shards)}
        waiting: dict[int, dict] = {}
        merged: dict[str, ThresholdStats] | None = None
        nxt = 0
        bar = self._bar("dissect 1/2 thresholds")
        tasks = self.pool.run("thresholds", self.shards,
                              args_of=lambda t: (t[0], t[1], order[t], self._files(*t)))
        for shard, res in tasks:
            waiting[order[shard]] = res["stats"]
            while nxt in waiting:  # merge in shard order: the same sketch run after run
                stats = {n: ThresholdStats.from_state_dict(s) for n, s in waiting.pop(nxt).items()}
                merged = stats if merged is None else {n: merged[n].merge(stats[n]) for n in merged}
                nxt += 1
            bar.update(shard[1] - shard[0])
        bar.close()
        self.seconds["thresholds"] = time.perf_counter() - t0
        return merged

    def iou_pass(self, thresholds: dict, saturated: dict) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        t0 = time.perf_counter()
        thresholds = {n: t.cpu() for n, t in thresholds.items()}
        saturated = {n: t.cpu() for n, t in saturated.items()}
        total: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        bar = self._bar("dissect 2/2 IoU")
        tasks = self.pool.run("iou", self.shards,
                              args_of=lambda t: (t[0], t[1], thresholds, saturated, self._files(*t)))
        for shard, res in tasks:
            for n, (i, u) in res["counts"].items():
                total[n] = (i, u) if n not in total else (total[n][0] + i, total[n][1] + u)
            bar.update(shard[1] - shard[0])
        bar.close()
        self.seconds["iou"] = time.perf_counter() - t0
        return total
