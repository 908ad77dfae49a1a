"""Running statistics over streams of batches, all with one protocol.

Every statistic has ``update(batch)``, ``merge(other)`` (fold in the statistic
of another shard of the stream), ``state_dict()`` and ``load_state_dict()``
(:class:`~.protocol.Statistic`). The top-k pass, Network Dissection and the
facets' example search use them; so do the passes sharded over Ray workers.

- :class:`RunningTopK`: the k best scores per unit with item ids and places;
  batches are :class:`UnitScores`, e.g. from :func:`spatial_max`. Merging is exact.
- :class:`StreamingQuantile`: a mergeable quantile sketch per unit with a
  stated, per-unit error bound.
"""

from .protocol import Statistic
from .quantile import StreamingQuantile
from .topk import RunningTopK, UnitScores, spatial_max

__all__ = ["RunningTopK", "Statistic", "StreamingQuantile", "UnitScores", "spatial_max"]
