"""Where the batches run: this process (``local``) or a Ray cluster (``ray``).

Both backends take the same list of batches and report each finished batch to
``on_done(batch, recorded, seconds)`` in the calling thread, so progress and
the summary do not depend on the backend.

- :class:`LocalBackend`: one process, one batch (many units, one optimization)
  at a time; a stop request abandons the current optimization at its next step.
- :class:`RayBackend`: one actor per worker, each holding the model once; the
  driver hands the next batch to whichever actor finishes first, and the actor
  returns the batch's units as PNG bytes, values and timings with its worker
  id. Only the driver writes the store, so workers need no access to it (no
  shared file system; any number of nodes). ``address=None`` starts a local
  Ray instance with ``workers`` CPUs and stops it at the end; otherwise it
  joins that cluster (:mod:`neuronscope.ray_pool`).
"""

from __future__ import annotations

import os
import threading
import time
from typing import Callable, Sequence

import torch

from ..errors import NeuronscopeError
from ..ray_pool import ActorPool, import_ray
from .plan import Job
from .settings import AtlasSettings
from .store import AtlasStore, UnitResult
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
    """A Ray worker: loads the model once and renders batches into PNG bytes; it never opens the store."""

    def __init__(self, model, settings: AtlasSettings, threads: int, device: str | None):
        import socket

        from ..models import load_model

        torch.set_num_threads(max(1, threads))
        self.model = load_model(model, device=device)
        self.settings = settings
        self._name = f"ray:{socket.gethostname()}:{os.getpid()}"

    def name(self) -> str:
        return self._name

    def render(self, batch: list[Job], shape: tuple) -> tuple[list[UnitResult], float, str]:
        t0 = time.perf_counter()
        results = render_batch(self.model, batch, self.settings, shape=shape)
        return results, time.perf_counter() - t0, self._name

    def pid(self) -> int:
        return os.getpid()


class RayBackend:
    """Batches rendered by Ray actors; the driver alone writes the store (no shared file system needed)."""

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

    def run(self, model, batches: Sequence[list[Job]], settings: AtlasSettings, store: AtlasStore, run_id: str,
            shapes: dict[str, tuple], on_done: OnDone, stop: threading.Event, on_ready=None) -> None:
        t0 = time.perf_counter()
        pool = ActorPool(_AtlasActor, (model, settings, self.threads, self.device), workers=self.workers,
                         address=self.address, threads=self.threads, device=self.device,
                         object_store_mb=self.object_store_mb)
        with pool:
            self.worker_pids = pool.call_all("pid")
            self.startup_seconds = time.perf_counter() - t0
            if on_ready is not None:
                on_ready()
            tasks = pool.run("render", batches, stop=stop, args_of=lambda b: (b, shapes.get(b[0][0], ())))
            for batch, (results, seconds, worker) in tasks:
                recorded = store.put_units(results, worker=worker, run=run_id)
                on_done(batch, recorded, seconds)
        # a batch in flight when stopped is abandoned: its units were never recorded


def make_backend(name: str, *, workers: int | None = None, address: str | None = None,
                 device: str | None = None, threads: int | None = None):
    if name == "local":
        if workers not in (None, 1):
            raise NeuronscopeError("--workers is for --backend ray; the local backend is one process "
                                   "(use --threads for torch's threads)")
        return LocalBackend(threads=threads)
    if name == "ray":
        import_ray()
        return RayBackend(workers or 2, address=address, threads_per_worker=threads or 1, device=device)
    raise NeuronscopeError(f"unknown backend {name!r}; valid: {', '.join(BACKENDS)}")
