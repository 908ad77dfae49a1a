"""The memory estimate refuses a run that would not fit, naming the estimate, the limit and what to lower."""

from __future__ import annotations

import pytest

from neuronscope.cli import main
from neuronscope.errors import NeuronscopeError
from neuronscope.memory import activation_bytes, check_activations


def test_estimate_scales_with_batch_and_area(lite0):
    one = activation_bytes(lite0, 128, 1)
    assert one > 1e6
    assert activation_bytes(lite0, 128, 4) == pytest.approx(4 * one, rel=0.01)
    assert activation_bytes(lite0, 256, 1) == pytest.approx(4 * one, rel=0.01)


def test_refused_with_estimate_and_limit(lite0, monkeypatch):
    monkeypatch.setenv("NEURONSCOPE_MEMORY_LIMIT_MB", "100")
    check_activations(lite0, 64, 1, "--size or --batch")  # small: fits
    with pytest.raises(NeuronscopeError) as e:
        check_activations(lite0, 4096, 32, "--size or --batch")
    msg = str(e.value)
    assert "GB of memory" in msg and "100.0 MB is available" in msg and "Lower --size or --batch" in msg


def test_render_cli_refuses_a_huge_size_before_allocating(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NEURONSCOPE_MEMORY_LIMIT_MB", "2000")
    out = tmp_path / "r"
    assert main(["render", "efficientnet_lite0", "class:1", "--size", "4096", "--batch", "8", "--seeds", "8",
                 "--out", str(out)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "8 images of 4096x4096 px" in err and "2.0 GB is available" in err and "Lower --size or --batch" in err
    assert not out.exists()
