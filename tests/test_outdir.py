"""Output folders: clear errors, a race-free final rename, and leftovers of killed runs swept."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from neuronscope.errors import NeuronscopeError
from neuronscope.outdir import building_into_dir, building_output_dir, check_output_dir, pid_alive, prepare_output_dir

REPO = Path(__file__).resolve().parents[1]


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


# ---------------------------------------------------------------- a folder shared by many runs (building_into_dir)


def _run_files(d: Path, run: str, text: str) -> None:
    """What one run adds to a shared folder: a file, a folder of pictures, and its mark last."""
    (d / f"{run}.png").write_text(text)
    (d / f"{run}_files").mkdir()
    (d / f"{run}_files" / "0.png").write_text(text)
    (d / f"{run}.html").write_text(text)


def _hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def _contents(out: Path) -> dict[str, str]:
    return {str(p.relative_to(out)): p.read_text() for p in sorted(out.rglob("*")) if p.is_file()}


def test_into_a_shared_folder_a_failed_first_run_leaves_nothing_and_a_finished_one_is_renamed_into_place(tmp_path):
    out = tmp_path / "shared"
    with pytest.raises(RuntimeError):
        with building_into_dir(out, "u1.html") as tmp:
            (tmp / "u1.png").write_text("half")
            raise RuntimeError("the run failed while writing")
    assert not out.exists() and _hidden(tmp_path) == []
    with building_into_dir(out, "u1.html") as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".shared.") and not out.exists()
        _run_files(tmp, "u1", "one")
    assert sorted(p.name for p in out.iterdir()) == ["u1.html", "u1.png", "u1_files"]
    assert _hidden(tmp_path) == []


def test_into_a_shared_folder_a_second_run_joins_and_a_failed_one_changes_nothing(tmp_path):
    out = tmp_path / "shared"
    with building_into_dir(out, "u1.html") as tmp:
        _run_files(tmp, "u1", "one")
    before = _contents(out)
    with pytest.raises(NeuronscopeError):
        with building_into_dir(out, "u2.html") as tmp:
            (tmp / "u2.png").write_text("half")
            raise NeuronscopeError("refused to write NaN")
    assert _contents(out) == before and _hidden(tmp_path) == []
    with building_into_dir(out, "u2.html") as tmp:
        _run_files(tmp, "u2", "two")
    assert _contents(out) == {**before, "u2.html": "two", "u2.png": "two", "u2_files/0.png": "two"}
    assert _hidden(tmp_path) == [] and _hidden(out) == []


@pytest.mark.parametrize("first_in_folder", [True, False])
def test_into_a_shared_folder_a_mark_another_run_wrote_meanwhile_is_kept_unless_overwrite(tmp_path, first_in_folder):
    out = tmp_path / "shared"
    if not first_in_folder:
        with building_into_dir(out, "u0.html") as tmp:
            _run_files(tmp, "u0", "zero")
    with pytest.raises(NeuronscopeError, match="another run.*--overwrite"):
        with building_into_dir(out, "u1.html") as tmp:
            _run_files(tmp, "u1", "mine")
            out.mkdir(exist_ok=True)
            _run_files(out, "u1", "theirs")  # the racing run publishes first
    assert (out / "u1.html").read_text() == "theirs" and (out / "u1_files" / "0.png").read_text() == "theirs"
    assert _hidden(tmp_path) == []
    with building_into_dir(out, "u1.html", overwrite=True) as tmp:
        _run_files(tmp, "u1", "mine")
    assert {k: v for k, v in _contents(out).items() if k.startswith("u1")} == {
        "u1.html": "mine", "u1.png": "mine", "u1_files/0.png": "mine"}
    assert _hidden(tmp_path) == [] and _hidden(out) == []


def test_into_a_shared_folder_the_mark_is_moved_last(tmp_path, monkeypatch):
    out = tmp_path / "shared"
    with building_into_dir(out, "u1.html") as tmp:
        _run_files(tmp, "u1", "one")
    moved = []
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda a, b: (moved.append(Path(b).name), real_replace(a, b)))
    with building_into_dir(out, "u2.html") as tmp:
        (tmp / "u2.html").write_text("two")  # written first, published last
        (tmp / "u2.png").write_text("two")
        (tmp / "u2.json").write_text("two")
    assert moved[-1] == "u2.html" and sorted(moved) == ["u2.html", "u2.json", "u2.png"]


def test_into_a_shared_folder_a_killed_run_leaves_only_a_hidden_folder_that_the_next_run_sweeps(tmp_path):
    out = tmp_path / "shared"
    code = (
        "import os, signal, sys\n"
        "from neuronscope.outdir import building_into_dir\n"
        "cm = building_into_dir(sys.argv[1], 'u1.html')\n"
        "tmp = cm.__enter__()\n"
        "(tmp / 'u1.png').write_text('half')\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", code, str(out)], env=env, timeout=120)
    assert proc.returncode == -9
    assert not out.exists()
    left = _hidden(tmp_path)
    assert len(left) == 1 and left[0].startswith(".shared.") and (tmp_path / left[0] / "u1.png").read_text() == "half"
    with building_into_dir(out, "u1.html") as tmp:
        _run_files(tmp, "u1", "one")
    assert _hidden(tmp_path) == [] and (out / "u1.html").read_text() == "one"
