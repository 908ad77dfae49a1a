"""Keep freed tensor memory in the process while a long optimization runs (glibc only).

A render allocates and frees the same large activation buffers every step
(8 × 96 × 118² floats is 43 MB). With glibc's defaults, buffers above its mmap
threshold go straight back to the kernel when freed, and heap memory above the
trim threshold is returned as well, so the next step takes a page fault for
every 4 KiB page it touches again, a large share of a render's wall time on
CPU, almost all of it system time (benchmarks/README.md, render_vs_lucent,
gives the figures).

:func:`roomy_heap` changes this for the duration of a block: every chunk comes
from the heap (no mmap, so the large buffers of a many-row batch too), the heap
keeps what is freed, and it grows in 256 MiB steps. The price is a higher peak
RSS while rendering. On exit
the four settings go back to glibc's documented start-up values (mmap threshold, trim
threshold and top padding 128 KiB, 65536 mmapped chunks) and the kept memory is
returned with ``malloc_trim``. glibc can neither report the values in force before
the block nor turn its dynamic mmap threshold back on once ``mallopt`` was called,
so "restored" means those start-up values. (A thread whose own arena cannot grow
meanwhile falls back to the main arena, as glibc does.)

Only a caller that opted in to process-wide tuning gets this
(:mod:`neuronscope.optim.engine.process`).

Nothing happens on other C libraries or platforms, or when the environment
variable ``NEURONSCOPE_MALLOC_TUNING=0`` is set (or ``MALLOC_*`` tunables
are set, which are left in charge).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
from contextlib import contextmanager

M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD, M_MMAP_MAX = -1, -2, -3, -4
_DEFAULT_MMAP_MAX = 65536  # glibc's default number of mmapped chunks
_MMAP_MAX_THRESHOLD = 32 * 1024 * 1024  # glibc's ceiling for the dynamic mmap threshold (64-bit)
_KEEP = 2**31 - 1  # the largest C int: keep everything
_PAD = 256 * 1024 * 1024
_DEFAULT = 128 * 1024  # glibc's start-up M_MMAP_THRESHOLD, M_TRIM_THRESHOLD and M_TOP_PAD (mallopt(3))

_lock = threading.Lock()
_depth = 0
_libc = None


def _glibc():
    global _libc
    if _libc is None:
        _libc = False
        try:
            lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            if hasattr(lib, "gnu_get_libc_version") and hasattr(lib, "mallopt") and hasattr(lib, "malloc_trim"):
                lib.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
                lib.mallopt.restype = ctypes.c_int
                lib.malloc_trim.argtypes = [ctypes.c_size_t]
                _libc = lib
        except OSError:
            pass
    return _libc


def enabled() -> bool:
    if os.environ.get("NEURONSCOPE_MALLOC_TUNING", "1") == "0":
        return False
    if any(k.startswith(("MALLOC_", "GLIBC_TUNABLES")) for k in os.environ):
        return False  # the user tuned the allocator already
    return bool(_glibc())


@contextmanager
def roomy_heap():
    """Within the block, freed memory stays in the process (see the module doc). Nests and is thread-safe."""
    global _depth
    if not enabled():
        yield False
        return
    lib = _glibc()
    with _lock:
        _depth += 1
        if _depth == 1:
            lib.mallopt(M_MMAP_THRESHOLD, _MMAP_MAX_THRESHOLD)
            lib.mallopt(M_MMAP_MAX, 0)  # chunks above 32 MiB too (a 32-row batch has 170 MB activations)
            lib.mallopt(M_TRIM_THRESHOLD, _KEEP)
            lib.mallopt(M_TOP_PAD, _PAD)
    try:
        yield True
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                lib.mallopt(M_MMAP_THRESHOLD, _DEFAULT)
                lib.mallopt(M_MMAP_MAX, _DEFAULT_MMAP_MAX)
                lib.mallopt(M_TRIM_THRESHOLD, _DEFAULT)
                lib.mallopt(M_TOP_PAD, _DEFAULT)
                lib.malloc_trim(0)
