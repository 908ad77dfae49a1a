"""Where the batches run: this process (``local``) or a Ray cluster (``ray``).

Both backends take the same list of batches and report each finished batch to
``on_done(batch, recorded, seconds)`` in the calling thread, so progress and
the summary do not depend on the backend.

- :class:`LocalBackend`: one process, one batch (many units, one optimization)
  at a time; a stop request abandons the current optimization at its next step.
- :class:`RayBackend`: one actor per worker, each holding the model once and
  recording its units into the store itself (SQLite WAL + unique file names:
  see :mod:`.store`); the driver hands the next batch to whichever actor
  finishes first. ``address=None`` starts a local Ray instance with
  ``workers`` CPUs and stops it at the end; otherwise it joins that cluster.
  The store folder must be visible at the same path to every worker, on a
  local file system (SQLite's WAL mode does not work over network file
  systems), i.e. one machine, or a cluster whose nodes share a local disk.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import deque
from pathlib import Path
from typing import Callable, Sequence

import torch

from ..errors import NeuronscopeError
from .plan import Job
from .settings import AtlasSettings
from .store import AtlasStore
from .worker import Stopped, render_batch

OnDone = Callable[[list[Job], list[Job], float], None]

BACKENDS = ("local", "ray")


class LocalBackend:
    name = "local"

    def __init__(self, threads: int | None = None):
        self.threads = threads
        self.workers = 1

    def run(self, model, batches: Sequence[list[Job]], settings: AtlasSettings, store: AtlasStore, run_id: str,
            shapes: dict[str, tuple], on_done: OnDone, stop: threading.Event, on_ready=None) -> None:
        if on_ready is not None:
            on_ready()
        if self.threads:
            torch.set_num_threads(self.threads)
        for batch in batches:
            if stop.is_set():
                return
            t0 = time.perf_counter()
            try:
                results = render_batch(model, batch, settings, shape=shapes.get(batch[0][0], ()), stop=stop)
            except Stopped:
                return
            recorded = store.put_units(results, worker=f"local:{os.getpid()}", run=run_id)
            on_done(batch, recorded, time.perf_counter() - t0)


class _AtlasActor:
    """A Ray worker: loads the model once, renders batches and records them into the store."""

    def __init__(self, model, settings: AtlasSettings, store_path: str, run_id: str, threads: int, device: str | None):
        import socket

        from ..models import load_model

        torch.set_num_threads(max(1, threads))
        self.model = load_model(model, device=device)
        self.settings = settings
        self.store = AtlasStore.open(store_path)
        self.run_id = run_id
        self.name = f"ray:{socket.gethostname()}:{os.getpid()}"

    def render(self, batch: list[Job], shape: tuple) -> tuple[list[Job], float]:
        t0 = time.perf_counter()
        results = render_batch(self.model, batch, self.settings, shape=shape)
        recorded = self.store.put_units(results, worker=self.name, run=self.run_id)
        return recorded, time.perf_counter() - t0

    def pid(self) -> int:
        return os.getpid()


def _import_ray():
    try:
        import ray
    except ImportError:
        raise NeuronscopeError(
            "--backend ray needs Ray: pip install 'neuronscope[ray]' (or pip install ray)"
        ) from None
    return ray


class RayBackend:
    name = "ray"

    def __init__(self, workers: int = 2, *, address: str | None = None, threads_per_worker: int = 1,
                 device: str | None = None, object_store_mb: int = 256):
        if workers < 1:
            raise NeuronscopeError(f"--workers must be at least 1, got {workers}")
        self.workers = workers
        self.address = address
        self.threads = threads_per_worker
        self.device = device
        self.object_store_mb = object_store_mb
        self.worker_pids: list[int] = []
        self.startup_seconds = 0.0  # starting Ray and the actors (each loads the model)

    def _init(self, ray) -> bool:
        """Start or join Ray; True when this call started it (and must stop it)."""
        if ray.is_initialized():
            return False
        kw = dict(include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        # ray.init installs its own SIGTERM handler (sys.exit) in the driver; keep ours, so a
        # SIGTERM stops the run cleanly and the actors and the local Ray instance are shut down.
        main = threading.current_thread() is threading.main_thread()
        saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)} if main else {}
        try:
            if self.address:
                ray.init(address=self.address, **kw)
            else:
                ray.init(num_cpus=self.workers, num_gpus=0 if not str(self.device or "").startswith("cuda") else None,
                         object_store_memory=self.object_store_mb * 1024 * 1024, **kw)
        finally:
            for s, handler in saved.items():
                if handler is not None:
                    signal.signal(s, handler)
        return True

    def run(self, model, batches: Sequence[list[Job]], settings: AtlasSettings, store: AtlasStore, run_id: str,
            shapes: dict[str, tuple], on_done: OnDone, stop: threading.Event, on_ready=None) -> None:
        ray = _import_ray()
        t0 = time.perf_counter()
        started = self._init(ray)
        actors = []
        try:
            gpus = 1 if str(self.device or "").startswith("cuda") else 0
            remote = ray.remote(num_cpus=self.threads, num_gpus=gpus)(_AtlasActor)
            model_ref = ray.put(model)
            actors = [remote.remote(model_ref, settings, str(Path(store.path).resolve()), run_id, self.threads, self.device)
                      for _ in range(self.workers)]
            self.worker_pids = ray.get([a.pid.remote() for a in actors])
            self.startup_seconds = time.perf_counter() - t0
            if on_ready is not None:
                on_ready()
            queue = deque(batches)
            inflight = {}

            def submit(actor):
                if queue and not stop.is_set():
                    batch = queue.popleft()
                    inflight[actor.render.remote(batch, shapes.get(batch[0][0], ()))] = (actor, batch)

            for a in actors:
                submit(a)
            while inflight:
                if stop.is_set():
                    return
                ready, _ = ray.wait(list(inflight), num_returns=1, timeout=0.25)
                for ref in ready:
                    actor, batch = inflight.pop(ref)
                    try:
                        recorded, seconds = ray.get(ref)
                    except Exception as e:  # RayTaskError wraps the worker's exception
                        cause = getattr(e, "cause", None)
                        if isinstance(cause, NeuronscopeError):
                            raise NeuronscopeError(str(cause)) from None
                        raise
                    on_done(batch, recorded, seconds)
                    submit(actor)
        finally:
            for a in actors:  # a batch in flight is abandoned; its units stay unrecorded (atomic)
                try:
                    ray.kill(a)
                except Exception:
                    pass
            if started:
                ray.shutdown()


def make_backend(name: str, *, workers: int | None = None, address: str | None = None,
                 device: str | None = None, threads: int | None = None):
    if name == "local":
        if workers not in (None, 1):
            raise NeuronscopeError("--workers is for --backend ray; the local backend is one process "
                                   "(use --threads for torch's threads)")
        return LocalBackend(threads=threads)
    if name == "ray":
        _import_ray()
        return RayBackend(workers or 2, address=address, threads_per_worker=threads or 1, device=device)
    raise NeuronscopeError(f"unknown backend {name!r}; valid: {', '.join(BACKENDS)}")
