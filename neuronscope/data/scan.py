"""The top-k pass: stream an image folder through a model and keep each unit's best images.

``run_topk`` works in memory, or against a :class:`~neuronscope.data.store.Store`
which makes it resumable: the top-k state and each layer's progress are
committed together every ``checkpoint_seconds``, so a run that is killed
restarts from its last checkpoint, and the finished result equals that of an
uninterrupted run (the batches are the same, and merging is order-stable).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch

from ..errors import NeuronscopeError
from ..models.adapter import Model
from ..receptive_field import receptive_field
from ..stats.topk import RunningTopK, spatial_max
from ..taps import channel_count, layer_shapes, tap
from .folder import folder_images, stream_batches
from .store import Store


@dataclass
class TopkRun:
    """The outcome of a pass: per-layer states, the image list and throughput."""

    paths: list[str]
    states: dict[str, RunningTopK]
    store: Store | None = None
    images_processed: int = 0  # in this call (a resumed call skips done images)
    seconds: float = 0.0
    failed: list[tuple[int, str]] = field(default_factory=list)
    resumed_from: int = 0
    startup_seconds: float = 0.0  # Ray: starting (or joining) it and the workers loading the model

    @property
    def images_per_second(self) -> float:
        return self.images_processed / self.seconds if self.seconds > 0 else float("nan")


def _image_list(images: str | os.PathLike | Sequence[str | os.PathLike]) -> tuple[str | None, list[Path]]:
    if isinstance(images, (str, os.PathLike)):
        return str(images), folder_images(images)
    paths = [Path(p) for p in images]
    if not paths:
        raise NeuronscopeError("no images given")
    return None, paths


def _layer_channels(model: Model, layers: Sequence[str], size: int) -> dict[str, int]:
    out = {}  # layer_shapes checks the names (closest valid ones on a typo)
    for layer, shape in layer_shapes(model, layers, size).items():
        out[layer] = channel_count(shape)
        if out[layer] is None:
            raise NeuronscopeError(f"layer {layer!r} has no channels to rank (output shape {shape})")
    return out


def _open_or_create(store, model: Model, folder, paths, size, crop_fraction, batch_size) -> tuple[Store, bool]:
    if isinstance(store, Store):
        return store, True
    if Store.exists(store):
        s = Store.open(store)
        m = s.meta
        wanted = {"model": model.name, "size": size, "crop_fraction": crop_fraction}
        diffs = [f"{k}: store has {m.get(k)!r}, asked {v!r}" for k, v in wanted.items() if m.get(k) != v]
        if folder is not None and m.get("image_folder") != str(Path(folder).resolve()):
            diffs.append(f"image folder: store has {m.get('image_folder')!r}, asked {str(Path(folder).resolve())!r}")
        if diffs:
            s.close()
            raise NeuronscopeError(
                f"the store at {store} was made with other settings ({'; '.join(diffs)}); "
                "use another --store, or the same settings to resume or extend it"
            )
        return s, True
    s = Store.create(
        store, model=model.name, image_folder=folder, images=paths, size=size, crop_fraction=crop_fraction,
        extra={"batch_size": batch_size, "threads": torch.get_num_threads(), "precision": "float32"},
    )
    return s, False


class _recorded_threads:
    """Run with the thread count the store was started with, so a resumed pass computes what one pass would."""

    def __init__(self, st):
        self.want = int(st.meta.get("threads") or 0) if st is not None else 0
        self.before = None

    def __enter__(self):
        if self.want and self.want != torch.get_num_threads():
            self.before = torch.get_num_threads()
            torch.set_num_threads(self.want)

    def __exit__(self, *exc):
        if self.before is not None:
            torch.set_num_threads(self.before)


def scan_batch(model: Model, layers: Sequence[str], states: dict[str, RunningTopK], batch) -> None:
    """Run one batch through the model and add it to the top-k of ``layers`` (local and Ray workers alike)."""
    with torch.inference_mode(), tap(model, layers, stop_early=True) as taps:
        taps.run(batch.x.to(model.device))
        maxima = {l: spatial_max(taps[l], batch.ids) for l in layers}
    for l in layers:
        states[l].update(maxima[l])


def absorb(done: int, shards: list[tuple[int, int]]) -> tuple[int, list[tuple[int, int]]]:
    """Grow the done prefix over the shards that now continue it; (prefix, shards still beyond it)."""
    shards = sorted(shards)
    while shards and shards[0][0] <= done:
        done = max(done, shards.pop(0)[1])
    return done, shards


def run_topk(
    model: Model,
    images: str | os.PathLike | Sequence[str | os.PathLike],
    layers: Sequence[str],
    *,
    k: int = 9,
    store: str | os.PathLike | Store | None = None,
    batch_size: int = 16,
    size: int | None = None,
    crop_fraction: float | None = None,
    checkpoint_seconds: float = 30.0,
    progress: bool = True,
    device: str | torch.device | None = None,
    backend: str = "local",
    workers: int | None = None,
    ray_address: str | None = None,
    threads: int | None = None,
    shard_size: int | None = None,
    send_images: bool = False,
) -> TopkRun:
    """Top-``k`` images per unit of ``layers`` over an image folder (or a list of files).

    With ``store`` (a path or an open :class:`Store`) the pass resumes where a
    previous one stopped, adds layers the store lacks, and keeps the network's
    view of every image that is in some top-k. An existing store keeps the
    batch size and image list it was created with.

    ``backend="ray"`` shards the image list over ``workers`` Ray actors
    (:mod:`.topk_ray`; ``shard_size`` images per task, ``send_images`` to send
    the files' bytes instead of their paths); the result is identical. Workers
    use ``threads`` torch threads, by default the thread count the store records.
    """
    if not layers:
        raise NeuronscopeError("give at least one layer, e.g. --layers blocks.5 blocks.10")
    if backend not in ("local", "ray"):
        raise NeuronscopeError(f"unknown backend {backend!r}; valid: local, ray")
    if backend == "local" and (workers not in (None, 1) or ray_address or send_images):
        raise NeuronscopeError("--workers, --ray-address and --send-images are for --backend ray")
    if device is not None:
        model = model.to(device)
    size = int(size or model.input_size)
    crop_fraction = float(crop_fraction or model.info.eval_resize)
    folder, paths = _image_list(images)
    channels = _layer_channels(model, layers, size)

    st, existed = (None, False)
    if store is not None:
        st, existed = _open_or_create(store, model, folder, paths, size, crop_fraction, batch_size)
        paths = [Path(p) for p in st.image_paths()]
        batch_size = int(st.meta.get("batch_size", batch_size))
    n = len(paths)

    states: dict[str, RunningTopK] = {}
    done: dict[str, int] = {}
    shards: dict[str, list[tuple[int, int]]] = {}
    for layer in layers:
        if st is not None and layer in st.layers():
            if st.k(layer) != k:
                raise NeuronscopeError(
                    f"store {st.path} keeps k={st.k(layer)} for layer {layer!r}, asked k={k}; use k={st.k(layer)} or another store"
                )
            states[layer], done[layer], shards[layer] = st.running(layer), st.images_done(layer), st.shards(layer)
        else:
            states[layer], done[layer], shards[layer] = RunningTopK(channels[layer], k), 0, []
            if st is not None:
                st.add_layer(layer, channels[layer], k, receptive_field(model, layer, size, device=model.device))
    start = min(done.values())
    for layer, d in done.items():
        if d < n and d % batch_size:
            raise NeuronscopeError(f"store progress for {layer!r} ({d}) is not on a batch boundary of {batch_size}")

    run = TopkRun([str(p) for p in paths], states, st, resumed_from=start)
    if start >= n:
        return run
    if backend == "ray":
        from .topk_ray import run_sharded

        run_sharded(run, model, paths, list(layers), done, shards, size=size, crop_fraction=crop_fraction,
                    batch_size=batch_size, workers=workers or 2, address=ray_address,
                    threads=threads or (int(st.meta.get("threads") or 1) if st is not None else 1),
                    shard_size=shard_size, send_images=send_images, device=device, progress=progress)
        return run

    def commit():
        if st is None:
            return
        referenced = set().union(*(s.referenced_ids() for s in states.values()))
        for i, img in pending_views.items():
            if i in referenced and not st.has_view(i):
                st.put_view(i, img)
        pending_views.clear()
        st.checkpoint(states, done, failed_since, shards)
        failed_since.clear()

    pending_views: dict[int, torch.Tensor] = {}
    failed_since: list[tuple[int, str]] = []
    t0 = last = time.perf_counter()
    lock = st.writer() if st is not None else _nullcontext()
    with lock, _recorded_threads(st):
        for batch in stream_batches(paths, size, batch_size, start=start, crop_fraction=crop_fraction,
                                    progress=progress, desc="top-k"):
            active = [l for l in layers if done[l] == batch.start]
            if active and len(batch.ids):
                scan_batch(model, active, states, batch)
                if st is not None:
                    referenced = set().union(*(states[l].referenced_ids() for l in active))
                    for row, i in enumerate(batch.ids):
                        if i in referenced:
                            pending_views[i] = batch.x[row].clone()
            end = min(batch.start + batch_size, n)
            for l in active:  # a sharded run may have done the images after this batch already
                done[l], shards[l] = absorb(end, shards[l])
            if active:
                run.images_processed += len(batch.ids)
                run.failed += batch.failed
                failed_since += batch.failed
            now = time.perf_counter()
            if st is not None and (now - last >= checkpoint_seconds or end >= n):
                commit()
                last = time.perf_counter()
        run.seconds = time.perf_counter() - t0
        if st is not None:
            commit()
            if all(st.complete(l) for l in st.layers()):
                st.prune_views()
    return run


class _nullcontext:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False
