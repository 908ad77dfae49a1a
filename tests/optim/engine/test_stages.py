"""Render stages (neuronscope.optim.engine.stages) and the threaded row split (neuronscope.optim.engine.row_split)."""

from __future__ import annotations

import copy

import pytest
import torch

from neuronscope.errors import NeuronscopeError
from neuronscope.optim import objectives as O
from neuronscope.optim import render
from neuronscope.optim.engine import Engine
from neuronscope.optim.engine.fast_copy import fast_model, native_bf16
from neuronscope.gradient_overrides import RuleRectifier
from neuronscope.optim.engine.row_split import RowSplitter
from neuronscope.optim.engine.stages import FLOAT32_TAIL, StagedNetwork, plan_stages
from neuronscope.taps import tap

LAYERS = ["blocks.5", "logits"]


def _objective(values: dict) -> torch.Tensor:
    # a per-row logit, a channel, and a term coupling the rows (they must all reach the right chunk)
    feats = values["blocks.5"].flatten(1)
    coupled = (feats[0] * feats[-1]).mean()
    return values["logits"][:, [1, 9, 107, 980]].diagonal().sum() + values["blocks.5"][:, 7].mean() + 1e-3 * coupled


def _whole(net, x):
    x = x.clone().requires_grad_(True)
    with tap(net, LAYERS) as taps:
        taps.run(x)
        values = {k: taps[k] for k in LAYERS}
        _objective(values).backward()
    return {k: v.detach() for k, v in values.items()}, x.grad


def _split(nets, x):
    x = x.clone().requires_grad_(True)
    with tap(nets[0], LAYERS) as t0, tap(nets[1], LAYERS) as t1:
        splitter = RowSplitter([t0, t1], LAYERS)
        try:
            values = splitter.run(x * 1.0)  # through an op, as a transformed image would be
            _objective(values).backward()
        finally:
            splitter.close()
    return {k: v.detach() for k, v in values.items()}, x.grad


def test_row_split_gives_the_whole_batch_values_and_gradient(lite0):
    net, _ = fast_model(lite0, LAYERS)
    other = copy.deepcopy(net)
    x = torch.rand(4, 3, 72, 72, generator=torch.Generator().manual_seed(1))
    threads = torch.get_num_threads()
    values, grad = _whole(net, x)
    split_values, split_grad = _split([net, other], x)
    assert torch.get_num_threads() == threads  # the pool's one-thread setting does not leak
    for k in LAYERS:
        assert split_values[k].shape == values[k].shape
        torch.testing.assert_close(split_values[k], values[k], rtol=1e-4, atol=1e-4)
    assert grad.abs().sum() > 0
    # float rounding only. Rows agree to ~1e-6 unless a ReLU6 mask flips at its boundary (one thread instead
    # of two alone moved one row by ~7e-3 here); a row sent to the wrong chunk or a lost coupling term: O(1)
    for row in range(4):
        rel = float((split_grad[row] - grad[row]).norm() / grad[row].norm())
        assert rel < 5e-2, (row, rel)
    assert float(torch.nn.functional.cosine_similarity(split_grad.flatten(), grad.flatten(), dim=0)) > 0.999


def test_plan_mixed_runs_bf16_then_float32_tail(lite0):
    stages = plan_stages(lite0, ["logits"], fast=True, precision="mixed", steps=40, batch=4, split_rows=True)
    described = [s.describe() for s in stages]
    if native_bf16("cpu"):
        tail = round(40 * FLOAT32_TAIL)
        assert [d["dtype"] for d in described] == ["bfloat16", "float32"]
        assert described[1]["from_step"] == 40 - tail
        # bf16 splits rows over threads on a multi-core CPU; float32 (measured no faster split) does not
        assert described[0]["threads"] == min(torch.get_num_threads(), 4)
        assert described[1]["threads"] == 1
    else:  # no native bf16: float32 throughout
        assert described == [{"from_step": 0, "dtype": "float32", "threads": 1}]
    assert plan_stages(lite0, ["logits"], fast=False, precision="mixed", steps=40, batch=4)[0].copies == [lite0]


@pytest.mark.parametrize("native", [True, False])
def test_the_engines_arithmetic_label_is_the_label_of_the_stages_it_plans(monkeypatch, native):
    from neuronscope.optim.engine import fast_copy
    from neuronscope.optim.engine import stages as stages_module
    from neuronscope.optim.engine import plan_network
    from neuronscope.optim.engine.stages import arithmetic
    from tests import nets

    for module in (fast_copy, stages_module):  # a CPU with or without native bfloat16
        monkeypatch.setattr(module, "native_bf16", lambda device="cpu": native)
    model = nets.resnet()
    labels = set()
    for engine in (Engine(), Engine(precision="auto"), Engine(precision="float32"), Engine(precision="bfloat16"),
                   Engine(fast=False), Engine(fast=True)):
        for batch, size, steps in ((1, 16, 2), (8, 64, 64), (4, 32, 1)):  # too small for the copy, big enough, 1 step
            planned = plan_network(model, ["layer1"], engine, batch=batch, size=size, steps=steps)
            label = engine.arithmetic(model.device, batch=batch, size=size, steps=steps)
            assert label == arithmetic([s.describe()["dtype"] for s in planned]), (engine, batch, size, steps)
            labels.add(label)
    assert labels == ({"float32", "bfloat16", "mixed (bfloat16 steps, float32 tail)"} if native else {"float32", "bfloat16"})


def test_unknown_precision_lists_the_valid_ones(lite0):
    with pytest.raises(NeuronscopeError, match="auto, float32, bfloat16, mixed"):
        render(lite0, [O.class_logit(1)], size=32, steps=1, progress=False, engine=Engine(fast=True, precision="fp8"))


def test_mixed_render_raises_targets_and_restores_every_copy(lite0):
    # 12 steps: the float32 stage starts at step 9, inside the 17 redirection steps, so it must redirect too
    res = render(lite0, [O.class_logit(1), O.class_logit(9), O.channel("blocks.10", 3)], size=64, steps=12,
                 progress=False, engine="fast")
    stages_seen = res.meta["stages"]
    assert res.values.dtype == torch.float32
    assert (res.values > torch.as_tensor(res.trace[0]) + 1).all(), (res.values, res.trace[0])
    if native_bf16("cpu"):
        assert [s["dtype"] for s in stages_seen] == ["bfloat16", "float32"]
    # every copy is back to plain activations and no hooks are left
    for dtype in ("bfloat16", "float32"):
        net, _ = fast_model(lite0, [], precision=dtype)
        assert not any(isinstance(m, RuleRectifier) for m in net.modules())
        assert not any(getattr(m, "grad_rule", None) for m in net.modules())
        assert not any(m._forward_hooks for m in net.modules())


def test_staged_network_switches_and_cleans_up_on_error(lite0):
    stages = plan_stages(lite0, ["logits"], fast=True, precision="mixed", steps=8, batch=2)
    x = torch.rand(2, 3, 48, 48)
    with pytest.raises(RuntimeError, match="stop"):
        with StagedNetwork(stages, ["logits"], redirect_steps=16) as network:
            for step in range(8):
                values = network.run(step, x.clone().requires_grad_(True))
                assert values["logits"].dtype == torch.float32
                stage = network.stage_at(step)
                for net in stage.copies:  # the current stage's copies redirect while step <= 16
                    fused = [m for m in net.modules() if getattr(m, "fused_activation", None) is not None]
                    assert fused and all(m.grad_rule == "redirect" for m in fused)
                if step == 7:
                    raise RuntimeError("stop")
    for stage in stages:
        for net in stage.copies:
            assert not any(getattr(m, "grad_rule", None) for m in net.modules())
            assert not any(m._forward_hooks for m in net.modules())


def test_a_model_that_cannot_be_copied_is_never_split(lite0):
    import threading

    from neuronscope.models import Model, ModelInfo

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                              torch.nn.Flatten(), torch.nn.Linear(8, 5))
    net.lock = threading.Lock()  # deepcopy fails on it
    model = Model(net, "none", ModelInfo("uncopyable", 32))
    stages = plan_stages(model, ["logits"], fast=True, precision="bfloat16", steps=4, batch=4)
    assert [s.copies for s in stages] == [[model]]  # the model itself, as one batch
    res = render(model, [O.class_logit(k) for k in range(4)], size=32, steps=4, progress=False,
                 engine=Engine(fast=True, precision="bfloat16"), tune_process=True)
    assert res.meta["stages"][0]["threads"] == 1
