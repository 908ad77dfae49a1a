"""Process-wide settings a render may change for speed, only when the caller opts in, always restored.

Two speed-ups change more than the render's own objects:

* the glibc heap setting of :func:`~neuronscope.optim.engine.heap.roomy_heap`
  (freed memory stays in the process while rendering), and
* the threaded row split (:mod:`~neuronscope.optim.engine.row_split`), whose
  one-thread workers give threads started while it runs one intra-op thread
  (existing threads keep their own count, see that module).

A library call leaves the process alone unless asked: ``render(...,
tune_process=True)``. ``tune_process=None`` (the default) follows the process
default, which is off until an application turns it on for a block with
:func:`allow_process_tuning` (the ``neuronscope`` command line does, for the
command it runs). :func:`tuned_process` puts the thread count and the heap
settings back when the block exits, whatever happens.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator

import torch

from .heap import roomy_heap

_lock = threading.Lock()
_allowed = 0  # how many allow_process_tuning blocks are open


@contextmanager
def allow_process_tuning() -> Iterator[None]:
    """Within the block, ``tune_process=None`` means yes (for applications that own their process)."""
    global _allowed
    with _lock:
        _allowed += 1
    try:
        yield
    finally:
        with _lock:
            _allowed -= 1


def process_tuning_wanted(tune_process: bool | None) -> bool:
    """``tune_process`` as asked, or the process default for ``None``."""
    return _allowed > 0 if tune_process is None else bool(tune_process)


@contextmanager
def tuned_process(on: bool) -> Iterator[bool]:
    """The process tuned for rendering within the block when ``on``; settings restored on exit."""
    if not on:
        yield False
        return
    threads = torch.get_num_threads()
    try:
        with roomy_heap():
            yield True
    finally:
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
