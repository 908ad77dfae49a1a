"""facets.output: a unit's sheet joins the facets folder with its page as the mark of a finished unit
(the shared-folder policy itself, neuronscope.outdir.building_into_dir, is tested in tests/test_outdir.py)."""

from pathlib import Path

import pytest

from neuronscope.errors import NeuronscopeError
from neuronscope.facets.output import building_unit_sheet, refuse_finished


def _sheet(d: Path, slug: str, text: str) -> None:
    """The files a facets run writes for one unit."""
    (d / f"{slug}.png").write_text(text)
    (d / f"{slug}.json").write_text(text)
    (d / f"{slug}_files").mkdir()
    (d / f"{slug}_files" / "s1_0.png").write_text(text)
    (d / f"{slug}.html").write_text(text)


def test_a_units_page_marks_it_finished_and_a_finished_unit_is_kept_unless_overwrite(tmp_path):
    out = tmp_path / "facets"
    with building_unit_sheet(out, "u0") as tmp:
        _sheet(tmp, "u0", "zero")
    with pytest.raises(NeuronscopeError, match=r"u1\.html was written by another run.*--overwrite"):
        with building_unit_sheet(out, "u1") as tmp:
            _sheet(tmp, "u1", "mine")
            (out / "u1.html").write_text("theirs")  # another run finished the unit meanwhile
    assert (out / "u1.html").read_text() == "theirs" and not (out / "u1.png").exists()
    with pytest.raises(NeuronscopeError, match="already exists"):
        refuse_finished(out, "u1", overwrite=False)
    refuse_finished(out, "u1", overwrite=True)
    refuse_finished(out, "u2", overwrite=False)  # a unit not in the folder yet
    with building_unit_sheet(out, "u1", overwrite=True) as tmp:
        _sheet(tmp, "u1", "mine")
    assert sorted(p.name for p in out.iterdir()) == [
        "u0.html", "u0.json", "u0.png", "u0_files", "u1.html", "u1.json", "u1.png", "u1_files"]
    assert (out / "u1.html").read_text() == "mine" and (out / "u0.html").read_text() == "zero"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["facets"]
