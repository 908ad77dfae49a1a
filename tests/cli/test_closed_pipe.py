"""A reader that stops early (`neuronscope classes | head -3`): the verb stops quietly, never a traceback.

Each command runs in its own process with stdout block-buffered as in a shell pipe (no
PYTHONUNBUFFERED), so output that is still buffered when the reader has gone must be dealt with
by the CLI itself and not by the interpreter's flush at exit, which prints "Exception ignored ...
BrokenPipeError" and exits 120.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    env.update(OMP_NUM_THREADS="1", COLUMNS="100")
    return env


def _quiet(stderr: bytes) -> bool:
    text = stderr.decode(errors="replace")
    return "Traceback" not in text and "Exception ignored" not in text and "BrokenPipe" not in text


def _commands() -> dict[str, list[str]]:
    return {
        "classes": ["-m", "neuronscope", "classes"],
        "classes -v": ["-m", "neuronscope", "classes", "-v"],  # 237 kB: more than a pipe holds
        "layers": ["-m", "neuronscope", "layers", "efficientnet_lite0", "--size", "32"],
        "--help": ["-m", "neuronscope", "--help"],  # argparse's own exit (--version, usage errors alike)
        # a verb that fails after printing a few (buffered) lines: the error is shown, exit 2
        "error after output": ["-c", textwrap.dedent("""
            import sys
            import neuronscope.cli.classes as verb
            from neuronscope.errors import NeuronscopeError
            listing = verb.run
            def run(args):
                listing(args)
                raise NeuronscopeError("a problem found after some output")
            verb.run = run
            from neuronscope.cli import main
            sys.exit(main(["classes", "-n", "5"]))
        """)],
    }


def test_every_way_out_stops_quietly_when_the_reader_is_already_gone():
    """The reading end is closed before the verb writes anything: its first write fails (EPIPE)."""
    procs = {}
    for name, argv in _commands().items():
        if name == "classes -v":
            continue
        r, w = os.pipe()
        procs[name] = subprocess.Popen([sys.executable, *argv], stdout=w, stderr=subprocess.PIPE, env=_env())
        os.close(w)
        os.close(r)
    for name, p in procs.items():
        _, err = p.communicate(timeout=120)
        assert _quiet(err), (name, err.decode())
        if name == "error after output":
            assert p.returncode == 2 and b"a problem found after some output" in err, (name, p.returncode, err)
        else:
            assert p.returncode == 141, (name, p.returncode, err.decode())  # as a tool stopped by SIGPIPE


def test_a_reader_that_takes_one_line_and_leaves():
    """`| head -1`: the verb is stopped in the middle of its output."""
    name = "classes -v"
    p = subprocess.Popen([sys.executable, *_commands()[name]], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env=_env())
    first = p.stdout.readline()
    p.stdout.close()
    err = p.stderr.read()
    p.wait(timeout=120)
    assert first.strip(), name
    assert _quiet(err), (name, err.decode())
    assert p.returncode == 141, (name, p.returncode)
