"""facets.output: a unit's sheet joins the facets folder, its page last (the shared-folder policy
itself, neuronscope.outdir.building_into_dir, is tested in tests/test_outdir.py)."""

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


def _hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def _contents(out: Path) -> dict[str, str]:
    return {str(p.relative_to(out)): p.read_text() for p in sorted(out.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("first_in_folder", [True, False])
def test_a_unit_finished_by_another_run_meanwhile_is_kept_unless_overwrite(tmp_path, first_in_folder):
    out = tmp_path / "facets"
    if not first_in_folder:
        with building_unit_sheet(out, "u0") as tmp:
            _sheet(tmp, "u0", "zero")
    with pytest.raises(NeuronscopeError, match="another run.*--overwrite"):
        with building_unit_sheet(out, "u1") as tmp:
            _sheet(tmp, "u1", "mine")
            out.mkdir(exist_ok=True)
            _sheet(out, "u1", "theirs")  # the racing run publishes first
    assert (out / "u1.html").read_text() == "theirs" and (out / "u1_files" / "s1_0.png").read_text() == "theirs"
    assert _hidden(tmp_path) == []
    with pytest.raises(NeuronscopeError, match="already exists"):
        refuse_finished(out, "u1", overwrite=False)
    refuse_finished(out, "u1", overwrite=True)
    with building_unit_sheet(out, "u1", overwrite=True) as tmp:
        _sheet(tmp, "u1", "mine")
    assert {k: v for k, v in _contents(out).items() if k.startswith("u1")} == {
        "u1.html": "mine", "u1.json": "mine", "u1.png": "mine", "u1_files/s1_0.png": "mine"}
    assert _hidden(tmp_path) == [] and _hidden(out) == []
