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


def _racer(out, name: str, files: int, overwrite: bool, barrier, wait_inside: bool, results) -> None:
    """One process writing a whole folder through the policy; reports ("ok" | "error", message)."""
    try:
        if not wait_inside:
            barrier.wait(timeout=60)  # both check the (new) folder at the same moment
        with building_output_dir(out, overwrite=overwrite) as d:
            for i in range(files):
                (d / f"{i:02d}.txt").write_text(name)
            if wait_inside:
                barrier.wait(timeout=60)  # both have checked and built before either publishes
        results.put((name, "ok", ""))
    except NeuronscopeError as e:
        results.put((name, "error", str(e)))
    except BaseException as e:  # anything else is a failure of the policy: report it, never hang the test
        results.put((name, "crash", f"{type(e).__name__}: {e}"))


def _race(out, *, overwrite: bool = False, wait_inside: bool = True, files: int = 1) -> dict[str, tuple[str, str]]:
    import multiprocessing

    ctx = multiprocessing.get_context("fork")  # two real processes, started in milliseconds
    barrier, results = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_racer, args=(out, name, files, overwrite, barrier, wait_inside, results))
             for name in ("A", "B")]
    for p in procs:
        p.start()
    got = dict((name, (kind, msg)) for name, kind, msg in (results.get(timeout=60) for _ in procs))
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    return got


@pytest.mark.parametrize("wait_inside", [True, False], ids=["both-built", "both-checked"])
def test_two_processes_racing_for_the_same_new_folder_one_wins_the_other_fails_cleanly(tmp_path, wait_inside):
    """Two processes (not one interleaving): exactly one publishes, the other gets an error naming the folder."""
    for round_ in range(3):
        out = tmp_path / f"out{round_}"
        got = _race(out, wait_inside=wait_inside, files=5)
        kinds = sorted(kind for kind, _ in got.values())
        assert kinds == ["error", "ok"], got
        winner = next(name for name, (kind, _) in got.items() if kind == "ok")
        message = next(msg for kind, msg in got.values() if kind == "error")
        assert str(out) in message and ("filled by another run" in message or "not empty" in message), message
        assert {p.read_text() for p in out.iterdir()} == {winner} and len(list(out.iterdir())) == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out0", "out1", "out2"]  # no build folder or backup left


def test_two_processes_overwriting_the_same_folder_leave_one_whole_result(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("the user's earlier results")
    got = _race(out, overwrite=True, files=20)
    assert {kind for kind, _ in got.values()} == {"ok"}, got  # --overwrite: both may replace it, in turn
    names = {p.read_text() for p in out.iterdir()}
    assert len(names) == 1 and names <= {"A", "B"} and len(list(out.iterdir())) == 20  # never a mix, never half
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


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
