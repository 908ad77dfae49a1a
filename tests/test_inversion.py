"""Network inversion: reconstruction quality by depth on Lite0, the paper's regularizers, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from neuronscope import NeuronscopeError
from neuronscope.cli import main as cli_main
from neuronscope.images import load_batch
from neuronscope.inversion import invert, layer_order, pearson, sigma_for, total_variation, tv_lambda_for_stride


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: many small backward passes, faster on one thread


def test_inversion_reconstructs_early_layer_and_loses_detail_with_depth(lite0, sample_photos):
    x = load_batch([sample_photos["coffee"]], 112)[0]
    result = invert(lite0, x, ["head", "blocks.1", "blocks.7"], steps=120, progress=False)
    assert result.layers == ["blocks.1", "blocks.7", "head"]  # sorted shallow to deep
    r = dict(zip(result.layers, result.correlation))
    assert r["blocks.1"] >= 0.8, r
    assert r["blocks.1"] > r["blocks.7"] + 0.05 and r["blocks.7"] > r["head"] + 0.05, r
    # the correlation is computed after the model's own preprocessing, per row
    again = pearson(lite0.preprocess(result.images), lite0.preprocess(x[None]).expand_as(result.images))
    assert np.allclose(again.numpy(), result.correlation, atol=1e-6)
    assert result.images.min() >= 0 and result.images.max() <= 1
    first, last = np.array(result.trace[0]), np.array(result.trace[-1])
    assert (last < first).all()  # every row's objective went down
    assert all(e < 0.3 for e in result.feature_error[:2])


def test_lambda_tv_follows_the_papers_depth_mapping_on_lite0(lite0):
    """λ_V = 1 up to stride 8, 10 at stride 16, 100 beyond: Lite0's 20 top-level layers split 6 / 6 / 8."""
    top = ["stem"] + [f"blocks.{i}" for i in range(16)] + ["head", "pool", "fc"]
    result = invert(lite0, torch.rand(3, 64, 64), top, steps=1, progress=False)
    lam = dict(zip(result.layers, result.lambda_tv))
    assert [lam[n] for n in top] == [1.0] * 6 + [10.0] * 6 + [100.0] * 8
    assert tv_lambda_for_stride(None) == 100.0


def test_regularizers_follow_the_paper_formulas():
    u = torch.tensor([[[[0.0, 1.0, 3.0], [2.0, 2.0, 2.0]]]])  # (1, 1, 2, 3)
    # horizontal diffs (1, 2, 0 | 0, 0, 0), vertical (2, 1, -1 | 0, 0, 0); replicate border = 0
    expected = (1 + 4) + (4 + 1) + (0 + 1) + 0 + 0 + 0
    assert total_variation(u, beta=2).item() == expected
    beta1 = 5**0.5 + 5**0.5 + 1.0
    assert total_variation(u, beta=1).item() == pytest.approx(beta1, rel=1e-4)
    assert sigma_for(227, 227) == pytest.approx(27098.1157, rel=1e-6)
    a, b = torch.randn(2, 50), torch.randn(2, 50)
    ref = [np.corrcoef(a[i].numpy(), b[i].numpy())[0, 1] for i in range(2)]
    assert np.allclose(pearson(a, b).numpy(), ref, atol=1e-6)


def test_paper_sgd_schedule_lowers_the_objective(lite0):
    x = torch.rand(3, 48, 48)
    result = invert(lite0, x, ["blocks.0"], steps=12, optimizer="sgd", progress=False)
    assert result.trace[-1][0] < result.trace[0][0]
    assert result.settings["optimizer"] == "sgd" and result.settings["lr"] == 0.004


def test_bad_inversion_arguments_raise_clear_errors(lite0):
    x = torch.rand(3, 32, 32)
    with pytest.raises(NeuronscopeError, match="valid: adam, sgd"):
        invert(lite0, x, ["stem"], optimizer="lbfgs")
    with pytest.raises(NeuronscopeError, match="at least one layer"):
        invert(lite0, x, [])
    with pytest.raises(NeuronscopeError, match="closest|Closest"):
        invert(lite0, x, ["blocks.99"])
    with pytest.raises(NeuronscopeError, match="shape"):
        invert(lite0, torch.rand(2, 3, 32, 32), ["stem"])
    assert layer_order(lite0, ["logits", "head", "stem", "blocks.10", "blocks.2"]) == ["stem", "blocks.2", "blocks.10", "head", "logits"]
    assert layer_order(lite0, ["head", "head.bn", "blocks.15", "blocks.14.dw_act"]) == ["blocks.14.dw_act", "blocks.15", "head.bn", "head"]


def test_invert_cli_writes_sheet_and_manifest(sample_photos, tmp_path, capsys):
    out = tmp_path / "inv"
    code = cli_main(["invert", "efficientnet_lite0", str(sample_photos["chelsea"]), "--layers", "blocks.4", "stem",
                     "--steps", "3", "--size", "48", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    manifest = json.loads((out / "manifest.json").read_text())
    assert [row["layer"] for row in manifest["layers"]] == ["stem", "blocks.4"]
    assert all((out / row["file"]).exists() for row in manifest["layers"])
    assert (out / "sheet.png").stat().st_size > 0
    assert cli_main(["invert", "efficientnet_lite0", str(sample_photos["chelsea"]), "--layers", "stem",
                     "--steps", "3", "--size", "48", "--out", str(out)]) == 2
    assert "not empty" in capsys.readouterr().err
    assert cli_main(["invert", "efficientnet_lite0", str(sample_photos["chelsea"]), "--layers", "input",
                     "--out", str(tmp_path / "x")]) == 2
    assert "image itself" in capsys.readouterr().err and not (tmp_path / "x").exists()
    assert cli_main(["invert", "efficientnet_lite0", str(tmp_path / "none.png"), "--layers", "stem"]) == 2
    assert "not found" in capsys.readouterr().err
