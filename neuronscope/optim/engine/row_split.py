"""Run a batch through the network as row chunks on parallel CPU threads, one intra-op thread each.

On a CPU, PyTorch spreads each operator over its OpenMP threads, and the many
small and memory-bound operators of a render step (depthwise convolutions,
bf16 conversions, activation masks) leave those threads waiting on each other.
Giving each thread its own rows instead - its own copy of the network, one
intra-op thread - keeps every core busy. Rows never interact inside an
eval-mode network, so the chunks compute what the whole batch would, up to
float rounding (the kernels see another batch size and thread count).

:meth:`RowSplitter.run` is one differentiable call: the forward runs every chunk's
forward pass on its thread and returns the tapped tensors of all rows; its
backward runs every chunk's backward on the same threads. The objective is
computed on the whole batch by the caller, so terms that couple rows (diversity)
still work. A forward hook of yours that the copies carry runs on several threads
at once. It pays off in bfloat16 and not in float32, so only bfloat16 stages
split (docs/render-speed.md gives the measurements).

The one-thread setting is per thread, not process-wide: ``torch.set_num_threads(1)``
in a pool thread leaves threads that already exist with their own count (the thread
that made the pool keeps its 2, say), but a thread started later begins with the
count most recently set on any thread: 1 while the pool is open.
:meth:`RowSplitter.close` sets the count of the thread that made the pool back to
what it was, so threads started after that begin with it again.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import torch

from ...taps import Taps


def _one_thread():
    torch.set_num_threads(1)


class RowSplitter:
    """A pool of ``len(taps)`` threads; thread i runs ``taps[i]`` (its own network copy) on its rows."""

    def __init__(self, taps: list[Taps], layers: list[str]):
        self.taps, self.layers = taps, layers
        self._threads = torch.get_num_threads()
        # each pool thread sets one intra-op thread for itself when it starts (on first use). This thread
        # keeps its own count; threads started while the pool is open begin with 1 (see the module doc),
        # until close() sets this thread's count again
        self._pool = ThreadPoolExecutor(len(taps), thread_name_prefix="neuronscope-rows", initializer=_one_thread)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        torch.set_num_threads(self._threads)

    def bounds(self, rows: int) -> list[tuple[int, int]]:
        n = min(len(self.taps), rows)
        edges = [round(i * rows / n) for i in range(n + 1)]
        return list(zip(edges, edges[1:]))

    def run(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The tapped layers for every row of ``x``, differentiable with respect to ``x``."""
        outs = _RowSplit.apply(self, x)
        return dict(zip(self.layers, outs))


def _forward_chunk(taps: Taps, layers: list[str], x: torch.Tensor):
    with torch.enable_grad():
        leaf = x.detach().requires_grad_(x.requires_grad)
        taps.run(leaf)
        return leaf, [taps[name] for name in layers]


def _backward_chunk(leaf: torch.Tensor, outs: list[torch.Tensor], grads: list[torch.Tensor | None]):
    pairs = [(o, g) for o, g in zip(outs, grads) if g is not None and o.requires_grad]
    if not pairs:
        return torch.zeros_like(leaf)
    torch.autograd.backward([o for o, _ in pairs], [g for _, g in pairs], inputs=[leaf])
    return leaf.grad if leaf.grad is not None else torch.zeros_like(leaf)


class _RowSplit(torch.autograd.Function):
    @staticmethod
    def forward(ctx, splitter: RowSplitter, x: torch.Tensor):
        bounds = splitter.bounds(x.shape[0])
        jobs = [splitter._pool.submit(_forward_chunk, t, splitter.layers, x[a:b])
                for t, (a, b) in zip(splitter.taps, bounds)]
        chunks = [j.result() for j in jobs]
        ctx.splitter, ctx.chunks = splitter, chunks
        return tuple(torch.cat([outs[i].detach() for _, outs in chunks]) for i in range(len(splitter.layers)))

    @staticmethod
    def backward(ctx, *grads):
        splitter, chunks = ctx.splitter, ctx.chunks
        ctx.chunks = None
        sizes = [leaf.shape[0] for leaf, _ in chunks]
        per_chunk = [g.split(sizes) if g is not None else [None] * len(sizes) for g in grads]
        jobs = [splitter._pool.submit(_backward_chunk, leaf, outs, [pc[i] for pc in per_chunk])
                for i, (leaf, outs) in enumerate(chunks)]
        return None, torch.cat([j.result() for j in jobs])
