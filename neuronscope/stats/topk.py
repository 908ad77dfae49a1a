"""Running top-k per unit, with the location of each item's maximum.

A batch is a :class:`UnitScores`: for every item of the batch (an image, a
view, a dataset sample: anything with an integer id) and every unit, one score
and where it occurs (x = column, y = row; -1 when there is no place).
:func:`spatial_max` makes one from a layer's output. A :class:`RunningTopK`
keeps the k best (score, id, x, y) per unit.

Order. Entries are ranked by score, highest first; equal scores go to the
smaller id. Streams hand out ids in increasing order, so ties are won by the
earlier item, and the result depends neither on how the stream was cut into
batches or runs (a resumed run equals an uninterrupted one) nor on the order in
which shards are merged: merging the states of disjoint shards gives exactly
the state of one pass over all of them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..errors import NeuronscopeError

_NO_ID = torch.iinfo(torch.int64).max  # empty slots sort after every real id


@dataclass
class UnitScores:
    """One batch for :class:`RunningTopK`: per (item, unit) a score and its place."""

    ids: torch.Tensor  # (B,) int64 item ids
    values: torch.Tensor  # (B, U) float32
    x: torch.Tensor  # (B, U) int32, -1 without a place
    y: torch.Tensor  # (B, U) int32

    @classmethod
    def without_place(cls, ids, values: torch.Tensor) -> "UnitScores":
        """Scores of units without a spatial place (x = y = -1)."""
        values = values.detach().float()
        neg = torch.full(values.shape, -1, dtype=torch.int32, device=values.device)
        return cls(torch.as_tensor(ids, dtype=torch.int64), values, neg, neg.clone())


def spatial_max(act: torch.Tensor, ids) -> UnitScores:
    """The per-unit spatial maximum of a layer output (B, ...) and where it is, for items ``ids``.

    4-D (B, C, H, W) maps give a location; 2-D (B, C) vectors give x = y = -1;
    3-D token layouts (B, N, C) give the token index as x and y = -1.
    """
    act = act.detach().float()
    ids = torch.as_tensor(ids, dtype=torch.int64)
    if act.dim() == 4:
        b, c, h, w = act.shape
        v, idx = act.flatten(2).max(dim=2)
        return UnitScores(ids, v, (idx % w).int(), (idx // w).int())
    if act.dim() == 2:
        return UnitScores.without_place(ids, act)
    if act.dim() == 3:
        v, idx = act.max(dim=1)
        return UnitScores(ids, v, idx.int(), torch.full(v.shape, -1, dtype=torch.int32, device=v.device))
    raise NeuronscopeError(f"cannot rank units of a layer with output shape {tuple(act.shape)}; need 2-D, 3-D or 4-D")


class RunningTopK:
    """The k best (value, item id, x, y) per unit over a stream of :class:`UnitScores` batches."""

    kind = "topk"

    def __init__(self, units: int, k: int):
        if k < 1:
            raise NeuronscopeError(f"k must be at least 1, got {k}")
        if units < 0:
            raise NeuronscopeError(f"units must be >= 0, got {units}")
        self.units, self.k = int(units), int(k)
        self.values = torch.full((units, k), float("-inf"))
        self.ids = torch.full((units, k), -1, dtype=torch.int64)
        self.x = torch.full((units, k), -1, dtype=torch.int32)
        self.y = torch.full((units, k), -1, dtype=torch.int32)

    # ------------------------------------------------------------ the protocol

    def update(self, batch: UnitScores) -> None:
        """Add one batch: ``batch.values`` of shape (B, units) for the B items ``batch.ids``."""
        ids = torch.as_tensor(batch.ids, dtype=torch.int64).cpu()
        if batch.values.shape != (len(ids), self.units):
            raise NeuronscopeError(
                f"batch scores of shape {tuple(batch.values.shape)} do not fit {len(ids)} items x {self.units} units"
            )
        if len(ids) == 0:
            return
        self._keep_best(
            batch.values.detach().t().float().cpu(),
            ids[None, :].expand(self.units, -1),
            batch.x.t().int().cpu(),
            batch.y.t().int().cpu(),
        )

    def merge(self, other: "RunningTopK") -> "RunningTopK":
        """Fold the top-k of another part of the stream into this one (in place); returns self."""
        if (other.units, other.k) != (self.units, self.k):
            raise NeuronscopeError(
                f"cannot merge a top-{other.k} of {other.units} units into a top-{self.k} of {self.units} units"
            )
        self._keep_best(other.values, other.ids, other.x, other.y)
        return self

    def state_dict(self) -> dict:
        return {"kind": self.kind, "units": self.units, "k": self.k, "values": self.values.clone(),
                "ids": self.ids.clone(), "x": self.x.clone(), "y": self.y.clone()}

    def load_state_dict(self, state: dict) -> "RunningTopK":
        if state.get("kind") != self.kind:
            raise NeuronscopeError(f"not a top-k state (kind {state.get('kind')!r})")
        units, k = int(state["units"]), int(state["k"])
        shapes = {name: tuple(state[name].shape) for name in ("values", "ids", "x", "y")}
        if any(s != (units, k) for s in shapes.values()):
            raise NeuronscopeError(f"top-k state of {units} units x k={k} holds tensors of shapes {shapes}")
        self.units, self.k = units, k
        self.values = state["values"].detach().float().cpu().clone()
        self.ids = state["ids"].detach().to(torch.int64).cpu().clone()
        self.x = state["x"].detach().to(torch.int32).cpu().clone()
        self.y = state["y"].detach().to(torch.int32).cpu().clone()
        return self

    @classmethod
    def from_state_dict(cls, state: dict) -> "RunningTopK":
        return cls(int(state["units"]), int(state["k"])).load_state_dict(state)

    def _keep_best(self, values, ids, x, y) -> None:
        vals = torch.nan_to_num(torch.cat([self.values, values], dim=1), nan=float("-inf"))
        all_ids = torch.cat([self.ids, ids], dim=1)
        all_x = torch.cat([self.x, x], dim=1)
        all_y = torch.cat([self.y, y], dim=1)
        # rank by value (highest first), equal values by id (smallest first), empty slots last
        by_id = torch.sort(torch.where(all_ids < 0, _NO_ID, all_ids), dim=1, stable=True).indices
        by_value = torch.sort(vals.gather(1, by_id), dim=1, descending=True, stable=True).indices
        order = by_id.gather(1, by_value)[:, : self.k]
        self.values = vals.gather(1, order)
        self.ids = all_ids.gather(1, order)
        self.x = all_x.gather(1, order)
        self.y = all_y.gather(1, order)

    # ------------------------------------------------------------ reading

    def referenced_ids(self) -> set[int]:
        return set(int(i) for i in self.ids.unique().tolist() if i >= 0)

    def entries(self, unit: int) -> list[tuple[int, float, int, int]]:
        """(item id, value, x, y) for one unit, best first, without empty slots."""
        out = []
        for r in range(self.k):
            i = int(self.ids[unit, r])
            if i >= 0:
                out.append((i, float(self.values[unit, r]), int(self.x[unit, r]), int(self.y[unit, r])))
        return out

    def equals(self, other: "RunningTopK") -> bool:
        return (
            self.k == other.k
            and torch.equal(self.ids, other.ids)
            and torch.equal(self.values, other.values)
            and torch.equal(self.x, other.x)
            and torch.equal(self.y, other.y)
        )

    # ------------------------------------------------------------ rows (the unit store's table)

    def rows(self):
        """(unit, rank, item id, value, x, y) for every filled slot, for storage."""
        ids = self.ids.numpy()
        vals = self.values.numpy().astype(np.float64)
        xs, ys = self.x.numpy(), self.y.numpy()
        cs, rs = np.nonzero(ids >= 0)
        for c, r in zip(cs.tolist(), rs.tolist()):
            yield c, r, int(ids[c, r]), float(vals[c, r]), int(xs[c, r]), int(ys[c, r])

    @classmethod
    def from_rows(cls, units: int, k: int, rows) -> "RunningTopK":
        t = cls(units, k)
        for c, r, i, v, x, y in rows:
            t.ids[c, r] = i
            t.values[c, r] = v
            t.x[c, r] = x
            t.y[c, r] = y
        return t
