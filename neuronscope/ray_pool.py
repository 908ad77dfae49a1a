"""A pool of Ray actors that the driver hands tasks to, for the passes that scale out.

The atlas, the top-k pass and Network Dissection run on Ray the same way: the
driver starts (or joins) Ray, creates ``workers`` actors that each load the
model once, hands the next task to whichever actor is free, and receives each
task's result as a plain value (PNG bytes, statistic state dicts, timings).
Workers never see the driver's files: everything they return is written by the
driver, so no shared file system is needed.

Ray is an optional extra; :func:`import_ray` says how to install it.
"""

from __future__ import annotations

import signal
import threading
from collections import deque
from typing import Any, Callable, Iterable, Iterator

from .errors import NeuronscopeError

INSTALL_HINT = "pip install 'neuronscope[ray]' (or pip install 'ray>=2.9')"


def import_ray():
    """The ``ray`` module, or a NeuronscopeError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise NeuronscopeError(f"--backend ray needs Ray, which is not installed: {INSTALL_HINT}") from None
    return ray


def start_ray(ray, *, workers: int, address: str | None, gpu: bool = False, object_store_mb: int = 256) -> bool:
    """Join the cluster at ``address``, or start a local instance with ``workers`` CPUs; True when started here.

    An already initialized Ray (e.g. by the caller) is used as it is. ``ray.init`` installs its own
    SIGTERM handler in the driver; ours are kept, so a signal stops a run cleanly. A local instance
    runs its workers at the driver's priority: Ray's default lowers them by 15 nice levels, which on
    a machine shared with other work made a worker many times slower than the same work in the driver
    (benchmarks/README.md, ray_scaling).
    """
    if ray.is_initialized():
        return False
    kw = dict(include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    main = threading.current_thread() is threading.main_thread()
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)} if main else {}
    try:
        if address:
            ray.init(address=address, **kw)
        else:
            ray.init(num_cpus=workers, num_gpus=None if gpu else 0, object_store_memory=object_store_mb * 1024 * 1024,
                     _system_config={"worker_niceness": 0}, **kw)
    except Exception as e:  # a wrong address, a cluster that is down
        raise NeuronscopeError(f"cannot start or join Ray{f' at {address}' if address else ''}: {e}") from None
    finally:
        for s, handler in saved.items():
            if handler is not None:
                signal.signal(s, handler)
    return True


def worker_error(e: BaseException) -> BaseException:
    """A worker's NeuronscopeError as the driver's own (so the CLI reports it); anything else unchanged."""
    cause = getattr(e, "cause", None)
    if isinstance(cause, NeuronscopeError):
        return NeuronscopeError(str(cause))
    return e


class ActorPool:
    """``workers`` actors of ``cls`` (each built with ``args``); run tasks on whichever is free.

    Use as a context manager: on exit the actors are killed (a task in flight is
    abandoned) and a Ray instance this pool started is shut down.
    """

    def __init__(self, cls: type, args: tuple, *, workers: int, address: str | None = None, threads: int = 1,
                 device: str | None = None, object_store_mb: int = 256):
        if workers < 1:
            raise NeuronscopeError(f"--workers must be at least 1, got {workers}")
        self.ray = import_ray()
        self.cls, self.args = cls, args
        self.workers, self.address, self.threads = workers, address, max(1, int(threads))
        self.gpu = str(device or "").startswith("cuda")
        self.object_store_mb = object_store_mb
        self.actors: list = []
        self._started = False

    def __enter__(self) -> "ActorPool":
        ray = self.ray
        self._started = start_ray(ray, workers=self.workers, address=self.address, gpu=self.gpu,
                                  object_store_mb=self.object_store_mb)
        try:
            remote = ray.remote(num_cpus=self.threads, num_gpus=1 if self.gpu else 0)(self.cls)
            refs = [ray.put(a) if _big(a) else a for a in self.args]
            self.actors = [remote.remote(*refs) for _ in range(self.workers)]
            self.names = self.call_all("name")  # waits until every actor is up (its model loaded)
        except BaseException as e:
            self.__exit__(None, None, None)
            raise worker_error(e) from None
        return self

    def __exit__(self, *exc) -> None:
        for a in self.actors:
            try:
                self.ray.kill(a)
            except Exception:
                pass
        self.actors = []
        if self._started:
            self.ray.shutdown()
            self._started = False

    def call_all(self, method: str, *args) -> list:
        """Call ``method`` on every actor and wait for all results."""
        return self.ray.get([getattr(a, method).remote(*args) for a in self.actors])

    def run(self, method: str, tasks: Iterable[Any], *, stop: threading.Event | None = None,
            args_of: Callable[[Any], tuple] = lambda t: (t,)) -> Iterator[tuple[Any, Any]]:
        """Yield ``(task, result)`` as tasks finish; each task runs as ``actor.method(*args_of(task))``.

        Every actor has one task in flight; a finished actor gets the next. A set
        ``stop`` event ends the iteration (tasks in flight are abandoned).
        """
        ray = self.ray
        queue = deque(tasks)
        inflight: dict = {}

        def submit(actor) -> None:
            if queue and not (stop is not None and stop.is_set()):
                task = queue.popleft()
                inflight[getattr(actor, method).remote(*args_of(task))] = (actor, task)

        for a in self.actors:
            submit(a)
        while inflight:
            if stop is not None and stop.is_set():
                return
            ready, _ = ray.wait(list(inflight), num_returns=1, timeout=0.25)
            for ref in ready:
                actor, task = inflight.pop(ref)
                try:
                    result = ray.get(ref)
                except Exception as e:  # RayTaskError wraps the worker's exception
                    raise worker_error(e) from None
                submit(actor)
                yield task, result


def _big(obj: Any) -> bool:
    """Whether an actor argument is worth putting into the object store once (a model, a dataset)."""
    return not isinstance(obj, (str, int, float, bool, type(None)))
