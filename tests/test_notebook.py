"""docs/notebook.md runs as written, and what it shows displays inline."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import torch

DOC = Path(__file__).resolve().parents[1] / "docs" / "notebook.md"
PNG = b"\x89PNG\r\n\x1a\n"
pytestmark = pytest.mark.usefixtures("one_thread")


def cells() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)


def run_cell(code: str, ns: dict):
    """Like a notebook cell: run it, and return the value of a last bare expression."""
    tree = ast.parse(code)
    last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
    exec(compile(tree, "<cell>", "exec"), ns)
    return eval(compile(ast.Expression(last.value), "<cell>", "eval"), ns) if last else None


def test_the_walkthrough_runs_and_its_results_display_inline(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    ns: dict = {}
    shown = [run_cell(code, ns) for code in cells()]
    assert len(shown) == 6
    # the render, the facets and the sheet are pictures in a notebook
    for value in (ns["res"], ns["facets"], ns["sheet"]):
        png = value._repr_png_()
        assert png.startswith(PNG) and len(png) > 1000
        assert value._repr_html_().startswith("<figure")
    assert (tmp_path / "notebook_sheet" / "grid.png").is_file() and ns["sheet"].is_dir()
    assert shown[2] is ns["res"] and shown[0] == (112, 4, 4)
    assert shown[-1] == (torch.Size([1, 16, 8, 8]), torch.Size([1, 16]))


def test_facet_sheet_is_still_a_pair_and_shows_its_png(tmp_path):
    from PIL import Image

    from neuronscope.notebook import FacetSheet

    png = tmp_path / "u.png"
    Image.new("RGB", (30, 20), (255, 0, 0)).save(png)
    sheet = FacetSheet(tmp_path / "u.html", png)
    html_path, png_path = sheet
    assert png_path == png and sheet._repr_png_().startswith(PNG)


def test_progress_bars_are_notebook_aware():
    import neuronscope.generators.ppgn as ppgn
    import neuronscope.generators.train as train

    for mod in (ppgn, train):
        src = Path(mod.__file__).read_text()
        assert "from tqdm import tqdm" not in src and "from tqdm.auto import tqdm" in src
