"""The README's Python snippet runs as pasted, in a fresh interpreter."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from neuronscope.input_range import InputRangeWarning, check_input_range

ROOT = Path(__file__).resolve().parents[1]


def readme_snippet() -> str:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## From Python") :]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_python_snippet_runs_as_pasted(tmp_path):
    code = readme_snippet()
    assert "import neuronscope" in code and "load_batch" in code
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Traceback" not in r.stderr and "InputRangeWarning" not in r.stderr
    labels = re.findall(r"\['[^\]]*'\]", r.stdout)
    assert labels, r.stdout  # the printed predictions
    assert (tmp_path / "renders.png").stat().st_size > 0 and (tmp_path / "blocks.10-3.png").stat().st_size > 0


def test_batches_outside_0_1_warn_once_with_what_to_do(lite0):
    x = torch.linspace(0.1, 0.9, 3 * 32 * 32).view(1, 3, 32, 32)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        lite0(x)  # in range: quiet
        assert not seen
        lite0(x * 255)
        lite0(x * 2 - 1)
        assert check_input_range(x.clone().requires_grad_(True) * 255)  # renders' own images are not checked
    msgs = [str(w.message) for w in seen if issubclass(w.category, InputRangeWarning)]
    assert len(msgs) == 2
    assert "0-255" in msgs[0] and "divide by 255" in msgs[0] and "from 25.5 to 230" in msgs[0]
    assert "normalized already" in msgs[1] and "from -0.8 to 0.8" in msgs[1]
    assert all(w.filename == __file__ for w in seen)  # points at the caller's line, not at torch
