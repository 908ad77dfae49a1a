"""``build_atlas``: plan, render (resumably, on a backend), attribute classes, write the site.

A run: check the output folder and the store's manifest; sweep what a killed
run left; render every unit not yet recorded, batch by batch, with an overall
progress bar (units/s, ETA); then (optionally) the top-k dataset pass, the
class attributions, and the static site; then a summary. SIGINT/SIGTERM stop
it cleanly: the optimization in flight is abandoned (nothing half-done is
recorded), the run is marked interrupted, and running the same command again
resumes with the units still missing.
"""

from __future__ import annotations

import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch

from ..errors import NeuronscopeError
from ..images import pil_to_tensor, prepare_output_dir
from ..models import Model
from .backends import make_backend
from .plan import LayerPlan, make_batches, plan_layers
from .settings import AtlasSettings, describe_environment, manifest
from .store import AtlasStore

STORE_DIR = "store"
TOPK_DIR = "topk"


@dataclass
class AtlasSummary:
    site: Path
    store: Path
    layers: list[str]
    asked: int  # units this run was asked for
    already: int  # of those, recorded by earlier runs
    rendered: int = 0  # recorded by this run
    render_seconds: float = 0.0
    wall_seconds: float = 0.0
    status: str = "complete"  # complete | interrupted
    signal: int | None = None
    swept: int = 0
    backend: str = "local"
    workers: int = 1
    index: Path | None = None
    topk: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def missing(self) -> int:
        return self.asked - self.already - self.rendered

    @property
    def units_per_minute(self) -> float:
        return 60.0 * self.rendered / self.render_seconds if self.render_seconds > 0 else 0.0

    def text(self) -> str:
        lines = [
            f"atlas {self.status}: {self.rendered} units rendered in this run, {self.already} already in the store, "
            f"{self.missing} missing, of {self.asked} asked ({len(self.layers)} layers: {', '.join(self.layers)})",
            f"  render time {self.render_seconds:.1f} s ({self.units_per_minute:.1f} units/min, backend "
            f"{self.backend}, {self.workers} worker{'s' if self.workers != 1 else ''}); wall time {self.wall_seconds:.1f} s",
        ]
        if self.swept:
            lines.append(f"  removed {self.swept} unrecorded file(s) left by an interrupted run")
        if self.topk:
            lines.append(f"  dataset examples: {self.topk}")
        lines += [f"  {n}" for n in self.notes]
        if self.status == "complete" and self.index is not None:
            lines.append(f"  site: {self.index}  (open it in a browser; it works from the file system)")
        else:
            lines.append("  run the same command again to resume; finished units are kept")
        lines.append(f"  store: {self.store}")
        return "\n".join(lines)


class _Stopper:
    """SIGINT/SIGTERM -> a stop request (first signal) or KeyboardInterrupt (second, or outside rendering)."""

    def __init__(self):
        self.event = threading.Event()
        self.signum: int | None = None
        self.rendering = False
        self._old = {}

    def _handle(self, signum, frame):
        first = not self.event.is_set()
        self.signum = self.signum or signum
        self.event.set()
        if first and self.rendering:
            import sys

            print(f"\nneuronscope atlas: {signal.Signals(signum).name} received; stopping after abandoning the "
                  "optimization in flight (send it again to stop at once)", file=sys.stderr, flush=True)
            return
        raise KeyboardInterrupt

    @contextmanager
    def installed(self, enabled: bool = True):
        main = threading.current_thread() is threading.main_thread()
        if enabled and main:
            for s in (signal.SIGINT, signal.SIGTERM):
                self._old[s] = signal.signal(s, self._handle)
        try:
            yield self
        finally:
            for s, old in self._old.items():
                signal.signal(s, old)
            self._old.clear()


def _progress_bar(total: int, initial_done: int, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="atlas", unit="unit", dynamic_ncols=True, smoothing=0.1,
                postfix={"done before": initial_done})


def _references(store: AtlasStore, topk, layer: str, n: int) -> tuple[torch.Tensor | None, str]:
    """Reference inputs for a layer's gradient attribution: dataset views, else the layer's renders."""
    if topk is not None:
        views = topk.reference_views(layer, n)
        if views is not None:
            return views, f"the top dataset images of the layer's units in {topk.path}"
    recs = store.units(layer)
    if not recs:
        return None, ""
    step = max(1, len(recs) // n)
    chosen = recs[::step][:n]
    from PIL import Image

    imgs = torch.stack([pil_to_tensor(Image.open(r.file).convert("RGB")) for r in chosen])
    return imgs, f"the atlas's renders of {len(chosen)} units of this layer"


def attribute_classes(model: Model, store: AtlasStore, topk=None, *, inputs: int = 8, size: int | None = None,
                      layers: Sequence[str] | None = None, should_stop=None) -> list[str]:
    """Compute (or reuse) each layer's unit -> classes table in the store; notes on what was done."""
    from .classes import attribute_layer

    notes = []
    for layer in layers or store.layers():
        if should_stop is not None and should_stop():
            raise KeyboardInterrupt
        if layer == "logits":
            continue
        n_rendered = len(store.done(layer))
        cached = store.classes(layer)
        source_kind = "topk" if topk is not None and topk.complete(layer) else "renders"
        if cached is not None:
            method, data = cached
            same_size = data.get("size") == int(size or model.input_size)
            if method == "none" or (method == "linear" and same_size) or (
                    same_size and data.get("source_kind") == source_kind and data.get("requested") == inputs
                    and (source_kind == "topk" or data.get("rendered") == n_rendered)):
                continue
        refs, source = _references(store, topk, layer, inputs)
        if refs is None:
            continue
        t0 = time.perf_counter()
        try:
            data = attribute_layer(model, layer, store.channels(layer), refs, size=size)
        except NeuronscopeError as e:
            store.put_classes(layer, "none", {"reason": str(e)})
            notes.append(f"classes of {layer}: not computable ({e})")
            continue
        data.update(source=source, source_kind=source_kind, rendered=n_rendered, requested=inputs)
        store.put_classes(layer, data["method"], data)
        notes.append(f"classes of {layer}: {data['method']} ({data['inputs']} input(s), {time.perf_counter() - t0:.1f} s)")
    return notes


def build_atlas(
    model: Model | str,
    layers: Sequence[str] | None,
    out: str | Path,
    *,
    settings: AtlasSettings | None = None,
    backend: str = "local",
    workers: int | None = None,
    ray_address: str | None = None,
    threads: int | None = None,
    force: bool = False,
    images: str | Path | None = None,
    topk_store: str | Path | None = None,
    topk_k: int = 9,
    dissection: str | Path | None = None,
    classes_inputs: int = 8,
    classes_size: int | None = None,
    site: bool = True,
    progress: bool = True,
    handle_signals: bool = True,
    device: str | None = None,
    render: bool = True,
) -> AtlasSummary:
    """Render every unit of ``layers`` into the atlas at ``out`` (resuming), then write the site.

    ``render=False`` renders nothing and rebuilds the site (and the top-k pass
    and class attributions) from what the store holds, whatever its settings.
    """
    from ..models import load_model

    t_wall = time.perf_counter()
    settings = settings or AtlasSettings()
    model = load_model(model, device=device)
    plans: list[LayerPlan] = plan_layers(model, layers)
    be = make_backend(backend, workers=workers, address=ray_address, device=device, threads=threads)
    if classes_inputs < 0:
        raise NeuronscopeError(f"--classes must be 0 (off) or a number of reference inputs, got {classes_inputs}")
    if dissection is not None:
        from .sources import DissectionLabels

        DissectionLabels(dissection)  # fail before the long work
    if images is not None:
        from ..images import first_readable_image

        first_readable_image(images)  # a folder with no readable image is an error, before any work

    out = Path(out)
    store_path = out / STORE_DIR
    if out.exists() and not AtlasStore.exists(store_path) and (not out.is_dir() or any(out.iterdir())):
        raise NeuronscopeError(f"{out} exists and is not empty, and holds no atlas; choose another --out "
                               "(an existing atlas folder is resumed, never overwritten)")
    prepare_output_dir(out, resume=True)
    from .settings import render_conditions

    man = {**manifest(model, settings), **describe_environment(), "batch": settings.batch,
           **render_conditions(model, be.threads if be.name != "ray" else (be.threads or 1), settings)}
    if render:
        store = AtlasStore.open_or_create(store_path, man, force=force)
    else:
        store = AtlasStore.open(store_path)
        try:
            store.acquire()
            if store.manifest.get("model_fingerprint") != man["model_fingerprint"]:
                raise NeuronscopeError(f"the atlas in {out} was made with other weights or another model "
                                       f"({store.manifest.get('model')}); give that model")
        except BaseException:
            store.close()
            raise
    stopper = _Stopper()
    summary = AtlasSummary(out, store_path, [p.name for p in plans], sum(len(p.units) for p in plans), 0,
                           backend=be.name, workers=be.workers)
    run_id = None
    try:
        summary.swept = store.sweep()
        if store.mark_dead_runs():
            summary.notes.append("an earlier run was killed; its finished units are kept")
        if render:
            store.set_meta(**{k: man[k] for k in ("python", "platform", "batch")})
            store.add_layers([(p.name, p.channels, p.shape) for p in plans])
        done = store.done()
        pending = [(p.name, u) for p in plans for u in p.units if (p.name, u) not in done] if render else []
        if not render:
            summary.asked = len(done)
        summary.already = summary.asked - len(pending)
        batches = make_batches(pending, settings.units_per_batch)
        shapes = {p.name: p.shape for p in plans}
        run_id = store.start_run(be.name, be.workers)
        bar = _progress_bar(len(pending), summary.already, progress and bool(pending))

        def on_done(batch, recorded, seconds):
            summary.rendered += len(recorded)
            if bar is not None:
                bar.update(len(recorded))
                bar.set_postfix_str(f"{batch[0][0]} · {seconds:.1f} s/batch of {len(batch)}", refresh=False)

        t0 = time.perf_counter()

        def on_ready():  # workers are up: time the rendering from here
            nonlocal t0
            t0 = time.perf_counter()
            if bar is not None:
                bar.reset(total=len(pending))

        with stopper.installed(handle_signals):
            stopper.rendering = True
            try:
                if batches:
                    be.run(model, batches, settings, store, run_id, shapes, on_done, stopper.event, on_ready)
            finally:
                stopper.rendering = False
                summary.render_seconds = time.perf_counter() - t0
                if bar is not None:
                    bar.close()
            if getattr(be, "startup_seconds", 0):
                summary.notes.append(f"Ray start-up (cluster and {be.workers} workers loading the model): "
                                     f"{be.startup_seconds:.1f} s, not counted in the render time")
            if stopper.event.is_set():
                raise KeyboardInterrupt

            topk_src = None
            topk_path = Path(topk_store) if topk_store is not None else out / TOPK_DIR
            if images is not None:
                from ..data.scan import run_topk

                targets = [p.name for p in plans]
                res = run_topk(model, images, targets, k=topk_k, store=topk_path, progress=progress)
                res.store.close()
            from .sources import DissectionLabels, open_topk

            topk_src = open_topk(topk_path, model.name)
            if topk_store is not None and topk_src is None:
                raise NeuronscopeError(f"no top-k store at {topk_store}; make one with `neuronscope topk` or pass --images")
            if topk_src is not None:
                summary.topk = f"top-k store {topk_path} (layers: {', '.join(topk_src.store.layers())})"
            try:
                if classes_inputs:
                    summary.notes += attribute_classes(model, store, topk_src, inputs=classes_inputs,
                                                       size=classes_size, should_stop=stopper.event.is_set)
                if site:
                    from .site import SiteBuilder, SiteInputs

                    inputs = SiteInputs(topk=topk_src, dissection=DissectionLabels(dissection) if dissection else None,
                                        labels=model.labels, examples_k=topk_k)
                    summary.index = SiteBuilder(out, store, inputs).build(should_stop=stopper.event.is_set,
                                                                          progress=progress)
            finally:
                if topk_src is not None:
                    topk_src.close()
        store.finish_run(run_id, "complete" if summary.missing == 0 else "partial")
        summary.status = "complete"
        if summary.index is not None:  # the site's manifest was written while the run was running
            from ..images import atomic_write_json

            atomic_write_json(out / "manifest.json", {**store.manifest, "status": "complete" if summary.missing == 0
                                                      else "partial", "runs": store.runs()})
    except KeyboardInterrupt:
        summary.status = "interrupted"
        summary.signal = stopper.signum or signal.SIGINT
        if run_id is not None:
            store.finish_run(run_id, "interrupted")
    except BaseException:
        if run_id is not None:
            store.finish_run(run_id, "failed")
        raise
    finally:
        if run_id is not None:  # the store's count is authoritative (a Ray worker may finish as we stop)
            summary.rendered = next((r["rendered"] for r in store.runs() if r["id"] == run_id), summary.rendered)
        store.close()
        summary.wall_seconds = time.perf_counter() - t_wall
    return summary
