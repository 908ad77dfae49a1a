"""The protocol every running statistic of the package follows.

A statistic summarizes a stream of batches in bounded memory, and can be cut
into shards: two statistics fed disjoint parts of a stream merge into one that
summarizes the whole stream (exactly for top-k and sums; within the stated
error bound for the quantile sketch). Its state is a plain dict of tensors and
numbers, so it can be saved, sent to another process and loaded back.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Statistic(Protocol):
    """``update(batch)``, ``merge(other)``, ``state_dict()``, ``load_state_dict(state)``."""

    def update(self, batch: Any) -> None:
        """Add one batch of the stream."""

    def merge(self, other: Any) -> Any:
        """Fold a statistic of another part of the stream into this one (in place); returns self."""

    def state_dict(self) -> dict:
        """Everything needed to rebuild this statistic (tensors, numbers, strings)."""

    def load_state_dict(self, state: dict) -> Any:
        """Replace this statistic's state with ``state`` (from :meth:`state_dict`); returns self."""
