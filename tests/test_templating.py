"""HTML pages come from package templates with autoescape: text from users and models cannot inject markup."""

from __future__ import annotations

import torch

from neuronscope.dissect.report import write_index
from neuronscope.optim.outputs import _html
from neuronscope.sheets import Figure, Link, Section, write_html_page
from neuronscope.templating import render_template

EVIL = "<script>alert(1)</script>"


def test_sheet_page_escapes_text_and_writes_its_pictures(tmp_path):
    page = write_html_page(tmp_path / "p.html", f"title {EVIL}", [
        Section(EVIL, text="a & b", figures=[Figure(torch.zeros(3, 4, 4), caption=EVIL, width=32, name="x")],
                links=[Link("whole sheet: ", "p.png", "p.png")]),
    ])
    text = page.read_text()
    assert "<script>" not in text and "&lt;script&gt;" in text and "a &amp; b" in text
    assert "src='p_files/x.png' width='32'" in text and (tmp_path / "p_files" / "x.png").is_file()
    assert "whole sheet: <a href='p.png'>p.png</a>" in text


def test_render_index_escapes_labels_and_lists_every_entry():
    entries = [{"file": "000_a.png", "name": "blocks.10:5", "label": EVIL, "seed": 0, "activation": 1.23456},
               {"file": "001_b.png", "name": "class:9", "label": "ostrich", "seed": None, "activation": 2.0}]
    text = _html("t", "lite0", entries, {"preset": "lucid", "rows": [1, 2]})
    assert "<script>" not in text and text.count("<figure>") == 2
    assert "activation 1.235" in text and "preset: lucid" in text and "rows:" not in text and "· seed 0" in text


def test_dissection_index_links_layers(tmp_path):
    write_index(tmp_path, EVIL, [{"layer": "blocks.4", "detectors": 3, "units": 40, "unique_concepts": 2}])
    text = (tmp_path / "index.html").read_text()
    assert "<script>" not in text and "<a href='blocks.4.html'>blocks.4</a>: 3 of 40 units" in text


def test_undefined_values_fail_instead_of_printing_nothing():
    import jinja2
    import pytest

    with pytest.raises(jinja2.UndefinedError):
        render_template("sheet.html", sections=[])
