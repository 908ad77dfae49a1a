"""facets.output: a unit's sheet is built in a hidden folder and published into the facets folder."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from neuronscope.errors import NeuronscopeError
from neuronscope.facets.output import building_unit_sheet, refuse_finished

REPO = Path(__file__).resolve().parents[2]


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


def test_a_failed_first_run_leaves_no_folder_and_a_finished_one_is_renamed_into_place(tmp_path):
    out = tmp_path / "facets"
    with pytest.raises(RuntimeError):
        with building_unit_sheet(out, "u1") as tmp:
            (tmp / "u1.png").write_text("half")
            raise RuntimeError("the run failed while writing")
    assert not out.exists() and _hidden(tmp_path) == []
    with building_unit_sheet(out, "u1") as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".facets.") and not out.exists()
        _sheet(tmp, "u1", "one")
    assert sorted(p.name for p in out.iterdir()) == ["u1.html", "u1.json", "u1.png", "u1_files"]
    assert _hidden(tmp_path) == []


def test_a_second_unit_joins_the_folder_and_a_failed_one_changes_nothing(tmp_path):
    out = tmp_path / "facets"
    with building_unit_sheet(out, "u1") as tmp:
        _sheet(tmp, "u1", "one")
    before = _contents(out)
    with pytest.raises(NeuronscopeError):
        with building_unit_sheet(out, "u2") as tmp:
            (tmp / "u2.png").write_text("half")
            raise NeuronscopeError("refused to write NaN")
    assert _contents(out) == before and _hidden(tmp_path) == []
    with building_unit_sheet(out, "u2") as tmp:
        _sheet(tmp, "u2", "two")
    assert _contents(out) == {**before, "u2.html": "two", "u2.json": "two", "u2.png": "two", "u2_files/s1_0.png": "two"}
    assert _hidden(tmp_path) == [] and _hidden(out) == []


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


def test_a_killed_run_leaves_only_a_hidden_folder_that_the_next_run_sweeps(tmp_path):
    out = tmp_path / "facets"
    code = (
        "import os, signal, sys\n"
        "from neuronscope.facets.output import building_unit_sheet\n"
        "cm = building_unit_sheet(sys.argv[1], 'u1')\n"
        "tmp = cm.__enter__()\n"
        "(tmp / 'u1.png').write_text('half')\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", code, str(out)], env=env, timeout=120)
    assert proc.returncode == -9
    assert not out.exists()
    left = _hidden(tmp_path)
    assert len(left) == 1 and left[0].startswith(".facets.") and (tmp_path / left[0] / "u1.png").read_text() == "half"
    with building_unit_sheet(out, "u1") as tmp:
        _sheet(tmp, "u1", "one")
    assert _hidden(tmp_path) == [] and (out / "u1.html").read_text() == "one"
