"""Running top-k per unit, with the location of each image's maximum.

For every channel of a layer, each image contributes one entry: the spatial
maximum of that channel's map and where it occurs (x = column, y = row). A
:class:`RunningTopK` keeps the k largest entries per channel over a stream of
batches. Merging uses a stable sort with the old entries first, so ties are
always won by the earlier image and the result does not depend on how the
stream was cut into runs (which makes resumed runs equal uninterrupted ones).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..errors import NeuronscopeError


@dataclass
class UnitMaxima:
    """Per (image, channel): the spatial maximum and its location (-1 when the layer has no space)."""

    values: torch.Tensor  # (B, C) float32
    x: torch.Tensor  # (B, C) int32
    y: torch.Tensor  # (B, C) int32


def spatial_max(act: torch.Tensor) -> UnitMaxima:
    """The per-channel spatial maximum of a layer output and where it is.

    4-D (B, C, H, W) maps give a location; 2-D (B, C) vectors give x = y = -1;
    3-D token layouts (B, N, C) give the token index as x and y = -1.
    """
    act = act.detach().float()
    if act.dim() == 4:
        b, c, h, w = act.shape
        v, idx = act.flatten(2).max(dim=2)
        return UnitMaxima(v, (idx % w).int(), (idx // w).int())
    if act.dim() == 2:
        neg = torch.full(act.shape, -1, dtype=torch.int32)
        return UnitMaxima(act, neg, neg.clone())
    if act.dim() == 3:
        v, idx = act.max(dim=1)
        return UnitMaxima(v, idx.int(), torch.full(v.shape, -1, dtype=torch.int32))
    raise NeuronscopeError(f"cannot rank units of a layer with output shape {tuple(act.shape)}; need 2-D, 3-D or 4-D")


class RunningTopK:
    """The k best (value, image id, x, y) per channel over a stream of batches."""

    def __init__(self, channels: int, k: int):
        if k < 1:
            raise NeuronscopeError(f"k must be at least 1, got {k}")
        self.channels, self.k = channels, k
        self.values = torch.full((channels, k), float("-inf"))
        self.ids = torch.full((channels, k), -1, dtype=torch.int64)
        self.x = torch.full((channels, k), -1, dtype=torch.int32)
        self.y = torch.full((channels, k), -1, dtype=torch.int32)

    def update(self, ids: torch.Tensor | list[int], maxima: UnitMaxima) -> None:
        """Merge one batch: ``ids`` (B,) image ids, ``maxima`` of shape (B, C)."""
        ids = torch.as_tensor(ids, dtype=torch.int64)
        if maxima.values.shape != (len(ids), self.channels):
            raise NeuronscopeError(
                f"batch maxima of shape {tuple(maxima.values.shape)} do not fit {len(ids)} images x {self.channels} channels"
            )
        if len(ids) == 0:
            return
        vals = torch.cat([self.values, maxima.values.t().float()], dim=1)
        vals = torch.nan_to_num(vals, nan=float("-inf"))
        all_ids = torch.cat([self.ids, ids[None, :].expand(self.channels, -1)], dim=1)
        all_x = torch.cat([self.x, maxima.x.t()], dim=1)
        all_y = torch.cat([self.y, maxima.y.t()], dim=1)
        order = torch.sort(vals, dim=1, descending=True, stable=True).indices[:, : self.k]
        self.values = vals.gather(1, order)
        self.ids = all_ids.gather(1, order)
        self.x = all_x.gather(1, order)
        self.y = all_y.gather(1, order)

    def referenced_ids(self) -> set[int]:
        return set(int(i) for i in self.ids.unique().tolist() if i >= 0)

    def entries(self, unit: int) -> list[tuple[int, float, int, int]]:
        """(image id, value, x, y) for one channel, best first, without empty slots."""
        out = []
        for r in range(self.k):
            i = int(self.ids[unit, r])
            if i >= 0:
                out.append((i, float(self.values[unit, r]), int(self.x[unit, r]), int(self.y[unit, r])))
        return out

    # ------------------------------------------------------------ (de)serialisation

    def rows(self):
        """(unit, rank, image id, value, x, y) for every filled slot, for storage."""
        ids = self.ids.numpy()
        vals = self.values.numpy().astype(np.float64)
        xs, ys = self.x.numpy(), self.y.numpy()
        cs, rs = np.nonzero(ids >= 0)
        for c, r in zip(cs.tolist(), rs.tolist()):
            yield c, r, int(ids[c, r]), float(vals[c, r]), int(xs[c, r]), int(ys[c, r])

    @classmethod
    def from_rows(cls, channels: int, k: int, rows) -> "RunningTopK":
        t = cls(channels, k)
        for c, r, i, v, x, y in rows:
            t.ids[c, r] = i
            t.values[c, r] = v
            t.x[c, r] = x
            t.y[c, r] = y
        return t

    def equals(self, other: "RunningTopK") -> bool:
        return (
            self.k == other.k
            and torch.equal(self.ids, other.ids)
            and torch.equal(self.values, other.values)
            and torch.equal(self.x, other.x)
            and torch.equal(self.y, other.y)
        )
