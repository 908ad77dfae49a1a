"""``--refine`` and ``--prior`` of the generator verbs: what they change in the written results."""

from __future__ import annotations

import json

from PIL import Image

from neuronscope.cli import main


def test_dgn_refine_and_prior_flags_change_what_is_written(tmp_path):
    base = ["dgn", "efficientnet_lite0", "class:9", "--steps", "2", "--size", "32", "--threads", "1", "--quiet"]
    assert main(base + ["--refine", "0", "--out", str(tmp_path / "paper")]) == 0
    assert main(base + ["--refine", "2", "--prior", "0.5", "--best", "--out", str(tmp_path / "hybrid")]) == 0
    with Image.open(tmp_path / "paper" / "dgn_000.png") as im:
        assert im.size == (64, 64)  # the generator's own image: the paper's DGN-AM
    with Image.open(tmp_path / "hybrid" / "dgn_000.png") as im:
        assert im.size == (224, 224)  # refined at the model's size
    rec = json.loads((tmp_path / "hybrid" / "dgn.json").read_text())
    assert rec["refine"] == 2 and rec["prior"] == 0.5 and rec["shown"] == "best"
    assert json.loads((tmp_path / "paper" / "dgn.json").read_text())["refine"] == 0
