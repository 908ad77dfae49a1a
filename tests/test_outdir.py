"""Output folders: clear errors, a race-free final rename, and leftovers of killed runs swept."""

from __future__ import annotations

import subprocess
import sys

import pytest

from neuronscope.errors import NeuronscopeError
from neuronscope.outdir import building_output_dir, check_output_dir, pid_alive, prepare_output_dir


def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    assert not pid_alive(p.pid)
    return p.pid


def test_path_problems_are_clear_errors_and_write_nothing(tmp_path):
    (tmp_path / "f").write_text("x")
    for out, needle in [(tmp_path / "f", "is a file"), (tmp_path / "f" / "sub" / "deeper", "f is a file"),
                        ("/sys/neuronscope-test/out", "permission denied")]:
        with pytest.raises(NeuronscopeError, match=needle):
            check_output_dir(out)
        with pytest.raises(NeuronscopeError, match=needle):
            prepare_output_dir(out)
        with pytest.raises(NeuronscopeError, match=needle):
            with building_output_dir(out):
                pytest.fail("must not be entered")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


def test_a_second_writer_racing_for_the_same_new_folder_fails_cleanly(tmp_path):
    out = tmp_path / "out"
    first, second = building_output_dir(out), building_output_dir(out)
    a, b = first.__enter__(), second.__enter__()  # both checked while the folder did not exist
    (a / "result.txt").write_text("first")
    (b / "result.txt").write_text("second")
    first.__exit__(None, None, None)
    with pytest.raises(NeuronscopeError, match="filled by another run"):
        second.__exit__(None, None, None)
    assert (out / "result.txt").read_text() == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # the loser's build folder is gone


def test_overwrite_replaces_and_an_empty_folder_is_filled(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    with building_output_dir(out) as d:  # empty: no --overwrite needed
        (d / "a.txt").write_text("1")
    with pytest.raises(NeuronscopeError, match="not empty.*--overwrite"):
        with building_output_dir(out):
            pass
    with building_output_dir(out, overwrite=True) as d:
        (d / "b.txt").write_text("2")
    assert sorted(p.name for p in out.iterdir()) == ["b.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_failed_build_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with building_output_dir(tmp_path / "out") as d:
            (d / "half.png").write_bytes(b"x")
            raise RuntimeError("killed half-way")
    assert list(tmp_path.iterdir()) == []


def test_leftovers_of_dead_runs_are_swept_and_live_ones_kept(tmp_path):
    import os

    dead = dead_pid()
    (tmp_path / f".out.{dead}.0badf00d").mkdir()  # a killed build
    (tmp_path / f".out.{dead}.0badf00d" / "000_x.png").write_bytes(b"x")
    (tmp_path / f".out.old-{dead}").mkdir()  # a killed --overwrite's backup
    (tmp_path / f".out.{os.getpid()}.12345678").mkdir()  # a live writer's (this process)
    (tmp_path / f".other.{dead}.0badf00d").mkdir()  # another output's: not ours to touch
    with building_output_dir(tmp_path / "out") as d:
        (d / "a.txt").write_text("1")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["out", f".out.{os.getpid()}.12345678", f".other.{dead}.0badf00d"])
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / f".manifest.json.{dead}.cafe0123.tmp").write_text("{")
    prepare_output_dir(tmp_path / "run", resume=True)
    assert list((tmp_path / "run").iterdir()) == []
