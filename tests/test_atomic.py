"""Writers never write NaN: the error names the file, the value's place and the step that produced it."""

from __future__ import annotations

import json
import math

import pytest
import torch

from neuronscope.atomic import NotFiniteError, atomic_write_json, producing, save_png
from neuronscope.images import labelled_grid


def test_json_with_nan_is_refused_naming_where(tmp_path):
    with producing("`neuronscope render` with --steps 3"):
        with pytest.raises(NotFiniteError) as e:
            atomic_write_json(tmp_path / "m.json", {"units": [{"activation": 1.0}, {"activation": math.nan}]})
    assert "units[1].activation" in str(e.value) and "--steps 3" in str(e.value)
    assert list(tmp_path.iterdir()) == []
    atomic_write_json(tmp_path / "ok.json", {"a": [1.5, 2]})
    assert json.loads((tmp_path / "ok.json").read_text()) == {"a": [1.5, 2]}


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_images_with_nan_or_inf_are_refused(tmp_path, bad):
    x = torch.rand(3, 8, 8)
    x[1, 2, 3] = bad
    with pytest.raises(NotFiniteError, match="not a finite number"):
        save_png(x, tmp_path / "a.png")
    with pytest.raises(NotFiniteError):
        labelled_grid([torch.rand(3, 8, 8), x])  # grids are written as PIL images: checked on conversion
    assert list(tmp_path.iterdir()) == []
    save_png(torch.rand(3, 8, 8), tmp_path / "ok.png")
    assert (tmp_path / "ok.png").stat().st_size > 0


def test_broken_pipe_ends_quietly(monkeypatch, capsys):
    import sys

    from neuronscope.cli import main

    class Closed:
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self):
            raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(sys, "stdout", Closed())
    code = main(["layers", "efficientnet_lite0", "--size", "32"])
    monkeypatch.undo()
    assert code == 141  # as a tool stopped by SIGPIPE
    assert capsys.readouterr().err == ""
