"""The objective algebra: flat sums, row binding, each term raising its own target, rows not interacting."""

from __future__ import annotations

import sys

import pytest
import torch

from neuronscope.errors import NeuronscopeError
from neuronscope.optim import objectives as O
from neuronscope.optim import evaluate, render
from neuronscope.taps import tap


def test_algebra_is_flat_and_scales_weights():
    a, b = O.channel("blocks.4", 1), O.channel("blocks.4", 2)
    obj = 2 * a - 0.5 * b + O.tv() / 4
    assert [w for w, _, _ in obj.terms] == [2.0, -0.5, 0.25]
    many = sum(O.channel("blocks.4", c % 40).on(c) for c in range(3000))
    assert len(many.terms) == 3000 and many.rows_needed() == 3000
    assert sys.getrecursionlimit() < 3000  # the sum above would have overflowed a recursive tree
    with pytest.raises(NeuronscopeError):
        a * b
    assert O.as_objective("blocks.10:5").terms[0][1].describe() == "blocks.10:5"
    with pytest.raises(NeuronscopeError):
        O.as_objective("blocks.10")


def test_layers_are_the_union_of_terms():
    obj = O.channel("blocks.4", 1) + O.class_logit(3) - 100 * O.diversity("blocks.4") + O.tv()
    assert obj.layers == ["blocks.4", "logits"]


def test_diversity_matches_hand_computed_gram_similarity():
    torch.manual_seed(0)
    a = torch.randn(3, 4, 5, 5)
    v = O.diversity("l")({"l": a}, torch.zeros(3, 3, 8, 8))
    grams = [(x.flatten(1) @ x.flatten(1).T).flatten() for x in a]
    grams = [g / g.norm() for g in grams]
    expect = torch.tensor([sum(float(grams[i] @ grams[j]) for j in range(3) if j != i) for i in range(3)])
    assert torch.allclose(v, expect, atol=1e-5)
    same = O.diversity("l")({"l": a[:1].expand(3, -1, -1, -1)}, torch.zeros(3, 3, 8, 8))
    assert torch.allclose(same, torch.full((3,), 2.0), atol=1e-5)  # identical rows: maximal similarity


def test_batched_rows_do_not_interact(lite0):
    """dV_a/dx_b = 0 for a != b without diversity; diversity couples rows of its group."""
    x = torch.rand(3, 3, 64, 64, requires_grad=True)
    obj = O.channel("blocks.6", 3).on(0) + O.class_logit(9).on(1) + O.neuron("blocks.4", 2).on(2)
    with tap(lite0, obj.layers) as taps:
        taps.run(x)
        v = obj(taps.values, x)
    (g,) = torch.autograd.grad(v[0], x)
    assert g[0].abs().sum() > 0 and g[1:].abs().sum() == 0
    x2 = torch.rand(3, 3, 64, 64, requires_grad=True)
    div = O.diversity("blocks.4")
    with tap(lite0, div.layers) as taps:
        taps.run(x2)
        v = div(taps.values, x2)
    (g,) = torch.autograd.grad(v[0], x2)
    assert g[1].abs().sum() > 0  # diversity is the one coupling term


def test_each_term_raises_its_own_target_in_one_batched_render(lite0):
    terms = {
        "neuron": O.neuron("blocks.6", 5),
        "channel": O.channel("blocks.6", 7),
        "layer_mean": O.layer_mean("blocks.4"),
        "deepdream": O.deepdream("blocks.4"),
        "class_logit": O.class_logit(9),
        "direction": O.direction("blocks.6", torch.linspace(-1, 1, 80)),
        "direction_cos": O.direction_cos("blocks.6", torch.linspace(1, -1, 80), 2.0),
    }
    res = render(lite0, list(terms.values()), size=64, steps=12, preset="pixel", lr=0.1, progress=False)
    for i, name in enumerate(terms):
        assert res.trace[-1, i] > res.trace[0, i] + 1e-3, f"{name} did not rise: {res.trace[0, i]} -> {res.trace[-1, i]}"


def test_penalty_terms_fall_when_subtracted(lite0):
    """tv, l1 and l2 are penalties: maximizing their negatives smooths a noisy start towards grey."""
    noisy = torch.rand(3, 3, 48, 48, generator=torch.Generator().manual_seed(0)) * 0.8 + 0.1
    res = render(lite0, [-O.tv(), -O.l1(), -O.l2()], init=noisy, size=48, steps=10, preset="pixel", lr=0.1,
                 progress=False)
    for i, name in enumerate(["tv", "l1", "l2"]):
        assert res.trace[-1, i] > res.trace[0, i] * 0.9, f"{name} did not fall: {-res.trace[0, i]} -> {-res.trace[-1, i]}"


def test_diversity_makes_rows_differ(lite0):
    obj = O.channel("blocks.6", 3) - 100 * O.diversity("blocks.6")
    plain = O.channel("blocks.6", 3)
    same = render(lite0, plain, batch=2, seed=[0, 0], size=48, steps=10, preset="pixel", progress=False)
    assert torch.allclose(same.images[0], same.images[1])  # same seed, no coupling: identical rows
    near = render(lite0, plain, batch=2, size=48, steps=16, preset="pixel", progress=False)
    diverse = render(lite0, obj, batch=2, size=48, steps=16, preset="pixel", progress=False)
    # same seeds (0, 1) for both: only the diversity term pushes the rows' Gram matrices apart
    similarity = lambda r: float(evaluate(lite0, O.diversity("blocks.6"), r.images).sum())  # noqa: E731
    assert similarity(diverse) < similarity(near) - 0.05
