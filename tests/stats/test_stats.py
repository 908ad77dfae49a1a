"""The statistics package: running top-k and the quantile sketch under one protocol.

Property tests on random streams cut at random places: merging the shards'
statistics equals one pass (exactly for top-k; for quantiles within the
sketch's own stated bound), and a state dict round trip (also through bytes)
gives a statistic that continues exactly like the original.
"""

from __future__ import annotations

import io
import pickle

import numpy as np
import pytest
import torch

from neuronscope import NeuronscopeError
from neuronscope.stats import RunningTopK, Statistic, StreamingQuantile, UnitScores, spatial_max


def _rank(values: torch.Tensor, est: torch.Tensor) -> torch.Tensor:
    """Fraction of each stream's values <= its estimate."""
    return (values <= est.view(-1, 1)).double().mean(1)


def _cuts(gen: torch.Generator, n: int, parts: int) -> list[int]:
    inner = sorted(torch.randperm(n - 1, generator=gen)[: parts - 1].add(1).tolist())
    return [0, *inner, n]


def _roundtrip(state: dict) -> dict:
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


def test_both_statistics_follow_the_protocol():
    assert isinstance(RunningTopK(3, 2), Statistic)
    assert isinstance(StreamingQuantile(3, k=16), Statistic)


# ---------------------------------------------------------------- running top-k

def test_running_topk_keeps_best_per_unit_and_earlier_image_on_ties():
    t = RunningTopK(2, k=2)
    act = torch.tensor([[[[1.0, 5.0]], [[2.0, 2.0]]], [[[7.0, 0.0]], [[2.0, 1.0]]], [[[3.0, 3.0]], [[9.0, 0.0]]]])
    t.update(spatial_max(act[:2], [0, 1]))
    t.update(spatial_max(act[2:], [2]))
    assert t.entries(0) == [(1, 7.0, 0, 0), (0, 5.0, 1, 0)]
    # unit 1: image 2 (9.0), then the tie 2.0 between images 0 and 1 goes to image 0
    assert t.entries(1) == [(2, 9.0, 0, 0), (0, 2.0, 0, 0)]


def _stream(gen: torch.Generator, n: int, units: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Scores with many ties (rounded to a few values) and NaNs, and random places."""
    values = torch.randint(0, 6, (n, units), generator=gen).float()
    values[torch.rand(n, units, generator=gen) < 0.05] = float("nan")
    x = torch.randint(0, 7, (n, units), generator=gen, dtype=torch.int32)
    y = torch.randint(0, 7, (n, units), generator=gen, dtype=torch.int32)
    return values, x, y


def _feed(t: RunningTopK, values, x, y, lo: int, hi: int, batch: int) -> RunningTopK:
    for s in range(lo, hi, batch):
        e = min(hi, s + batch)
        t.update(UnitScores(torch.arange(s, e), values[s:e], x[s:e], y[s:e]))
    return t


@pytest.mark.parametrize("seed", range(12))
def test_topk_of_merged_shards_equals_one_pass_exactly(seed):
    gen = torch.Generator().manual_seed(seed)
    n = int(torch.randint(1, 120, (1,), generator=gen))
    units, k = int(torch.randint(1, 5, (1,), generator=gen)), int(torch.randint(1, 12, (1,), generator=gen))
    values, x, y = _stream(gen, n, units)
    whole = _feed(RunningTopK(units, k), values, x, y, 0, n, batch=int(torch.randint(1, 9, (1,), generator=gen)))

    # reference: sort all items by (value desc, id asc) with NaN as -inf
    v = torch.nan_to_num(values, nan=float("-inf"))
    for u in range(units):
        want = sorted(range(n), key=lambda i: (-v[i, u].item(), i))[:k]
        assert [e[0] for e in whole.entries(u)] == want
        assert [(e[2], e[3]) for e in whole.entries(u)] == [(int(x[i, u]), int(y[i, u])) for i in want]

    parts = min(n, int(torch.randint(1, 6, (1,), generator=gen)))
    cuts = _cuts(gen, n, parts) if parts > 1 else [0, n]
    shards = [_feed(RunningTopK(units, k), values, x, y, a, b, batch=3) for a, b in zip(cuts, cuts[1:])]
    for order in (list(range(len(shards))), list(reversed(range(len(shards))))):
        merged = RunningTopK(units, k)
        for i in order:  # any merge order gives the same result
            merged.merge(RunningTopK.from_state_dict(shards[i].state_dict()))
        assert merged.equals(whole)


def test_topk_state_dict_round_trip_continues_like_the_original():
    gen = torch.Generator().manual_seed(5)
    values, x, y = _stream(gen, 60, 3)
    whole = _feed(RunningTopK(3, 4), values, x, y, 0, 60, batch=5)
    half = _feed(RunningTopK(3, 4), values, x, y, 0, 30, batch=5)
    restored = RunningTopK(1, 1).load_state_dict(_roundtrip(half.state_dict()))
    assert restored.equals(half) and (restored.units, restored.k) == (3, 4)
    assert _feed(restored, values, x, y, 30, 60, batch=5).equals(whole)
    assert pickle.loads(pickle.dumps(whole.state_dict()))["ids"].equal(whole.ids)
    rows = RunningTopK.from_rows(3, 4, whole.rows())
    assert rows.equals(whole)


def test_topk_refuses_mismatched_batches_merges_and_states():
    t = RunningTopK(2, 3)
    with pytest.raises(NeuronscopeError, match="do not fit 1 items x 2 units"):
        t.update(UnitScores.without_place([0], torch.zeros(1, 3)))
    with pytest.raises(NeuronscopeError, match="cannot merge a top-2 of 2 units"):
        t.merge(RunningTopK(2, 2))
    with pytest.raises(NeuronscopeError, match="not a top-k state"):
        t.load_state_dict(StreamingQuantile(2, k=16).state_dict())
    with pytest.raises(NeuronscopeError, match="k must be at least 1"):
        RunningTopK(2, 0)


# ---------------------------------------------------------------- quantile sketch

# Stated tolerances on the true rank of the estimate: "high" (dissection's default) is accurate
# relative to the tail, |rank - q| <= 5 % of (1 - q); "uniform" (KLL) to 0.2 % of n at every q.
@pytest.mark.parametrize("accuracy,k,tolerance", [("high", 512, lambda q: 0.05 * (1 - q)), ("uniform", 1024, lambda q: 2e-3)])
def test_streaming_quantile_matches_exact_quantile_within_stated_tolerance(accuracy, k, tolerance):
    """|true rank of the estimate - q| <= the stated tolerance and <= the sketch's own Hoeffding bound."""
    gen = torch.Generator().manual_seed(0)
    S, batches, per = 9, 40, 3000
    sk = StreamingQuantile(S, k=k, accuracy=accuracy, seed=3)
    chunks = []
    for _ in range(batches):
        v = torch.randn(S, per, generator=gen) * torch.linspace(0.5, 4, S).view(-1, 1)
        v[::3] = v[::3].exp()  # skewed streams
        v[1::3] = torch.relu(v[1::3])  # half zeros, as after a ReLU
        sk.update(v)
        chunks.append(v)
    data = torch.cat(chunks, 1)
    assert not sk.exact and sk.memory_items() < data.shape[1] / 10
    for q in (0.995, 0.99, 0.9):
        est = sk.quantile(q)
        err = (_rank(data, est) - q).abs()
        tol = tolerance(q)
        assert err.max() <= tol, (q, err.max())
        assert (err <= sk.rank_error(q) + 1.0 / data.shape[1]).all()
        lo = torch.quantile(data.double(), q - tol, dim=1)
        hi = torch.quantile(data.double(), min(1.0, q + tol), dim=1)
        assert ((est.double() >= lo - 1e-6) & (est.double() <= hi + 1e-6)).all(), (est, lo, hi)


def test_streaming_quantile_is_exact_before_compaction_and_merges():
    gen = torch.Generator().manual_seed(1)
    a, b = torch.rand(4, 300, generator=gen), torch.rand(4, 500, generator=gen)
    s1, s2 = StreamingQuantile(4, k=1024), StreamingQuantile(4, k=1024)
    s1.update(a)
    assert s1.exact
    ref = np.quantile(a.numpy(), 0.9, axis=1, method="inverted_cdf")  # smallest v with F(v) >= q
    assert np.array_equal(s1.quantile(0.9).numpy(), ref)
    s2.update(b)
    s1.merge(s2)
    both = torch.cat([a, b], 1)
    assert s1.count == 800
    assert np.array_equal(s1.quantile(0.995).numpy(), np.quantile(both.numpy(), 0.995, axis=1, method="inverted_cdf"))
    with pytest.raises(NeuronscopeError, match="NaN"):
        s1.update(torch.full((4, 2), float("nan")))


@pytest.mark.parametrize("seed", range(4))
def test_quantiles_of_merged_shards_stay_within_the_stated_bound(seed):
    """Shards cut at random places, merged in a random tree: the estimate's true rank is within
    the merged sketch's own bound (rank_error, δ = 1e-3) of q, and the count is the stream's."""
    gen = torch.Generator().manual_seed(100 + seed)
    S, n = 6, 24_000
    data = torch.randn(S, n, generator=gen)
    data[::2] = data[::2].exp()
    parts = int(torch.randint(2, 7, (1,), generator=gen))
    cuts = _cuts(gen, n, parts)
    shards = []
    for i, (a, b) in enumerate(zip(cuts, cuts[1:])):
        sk = StreamingQuantile(S, k=128, seed=seed * 10 + i)  # shards draw independent coin flips
        for part in data[:, a:b].split(700, 1):
            sk.update(part)
        shards.append(StreamingQuantile.from_state_dict(_roundtrip(sk.state_dict())))
    while len(shards) > 1:  # merge random pairs until one is left
        i, j = torch.randperm(len(shards), generator=gen)[:2].tolist()
        merged = shards[i].merge(shards[j])
        shards = [s for t, s in enumerate(shards) if t not in (i, j)] + [merged]
    merged = shards[0]
    assert merged.count == n and not merged.exact
    for q in (0.995, 0.99, 0.5):
        err = (_rank(data, merged.quantile(q)) - q).abs()
        bound = merged.rank_error(q) + 1.0 / n
        assert (err <= bound).all(), (q, err, bound)
        # and says something: in the top tail a small part of the tail, elsewhere a few percent
        assert bound.max() < (0.25 * (1 - q) if q > 0.9 else 0.05), (q, bound)


def test_quantile_state_dict_round_trip_continues_exactly():
    gen = torch.Generator().manual_seed(7)
    blocks = [torch.randn(3, 400, generator=gen) for _ in range(10)]
    whole, half = StreamingQuantile(3, k=64, seed=4), StreamingQuantile(3, k=64, seed=4)
    for b in blocks:
        whole.update(b)
    for b in blocks[:5]:
        half.update(b)
    restored = StreamingQuantile(1, k=16).load_state_dict(_roundtrip(half.state_dict()))
    assert (restored.streams, restored.k, restored.count) == (3, 64, half.count)
    assert torch.equal(restored.quantile(0.99), half.quantile(0.99))
    for b in blocks[5:]:
        restored.update(b)  # the coin flips continue where they stopped: identical sketches
    assert restored.compactions == whole.compactions > 0
    assert all(torch.equal(a, b) for a, b in zip(restored.levels, whole.levels))
    for q in (0.995, 0.5):
        assert torch.equal(restored.quantile(q), whole.quantile(q))
        assert torch.equal(restored.rank_error(q), whole.rank_error(q))
    with pytest.raises(NeuronscopeError, match="not a quantile-sketch state"):
        restored.load_state_dict(RunningTopK(3, 2).state_dict())
