"""The ``neuronscope`` command line.

Each verb is one module in this package exposing ``add_parser(subparsers)``
(which returns its parser) and ``run(args) -> int | None``. Verbs only parse and
report; the work is done by library functions. A :class:`NeuronscopeError`
becomes a one-paragraph message and exit code 2, never a traceback; so does
running out of memory. Numbers are validated by the option types of
``_common`` while the arguments are parsed (argparse's exit code 2). A reader
that stops early (``neuronscope layers | head``) ends the verb quietly.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
import textwrap

from ..errors import NeuronscopeError


def _verbs() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="neuronscope",
        description="See what each unit of a vision network has learned to detect.",
    )
    parser.add_argument("--version", action="version", version=f"neuronscope {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="COMMAND")
    sub.required = True
    for name in _verbs():
        # every verb module imports only the standard library and neuronscope at the top
        # (optional libraries inside run()), so importing one cannot fail on a sound install
        module = importlib.import_module(f"{__name__}.{name}")
        p = module.add_parser(sub)
        p.set_defaults(_run=module.run)
    return parser


def error(message: str) -> None:
    width = min(100, max(40, os.get_terminal_size(2).columns if sys.stderr.isatty() else 100))
    print(textwrap.fill(f"neuronscope: error: {message}", width=width, subsequent_indent="  "), file=sys.stderr)


def _given_options(argv: list[str] | None) -> str:
    tokens = list(sys.argv[1:] if argv is None else argv)
    first = next((i for i, t in enumerate(tokens) if t.startswith("-")), len(tokens))
    text = " ".join(tokens[first:])
    return text if len(text) <= 200 else text[:197] + "..."


def _stdout_closed() -> int:
    """The reader of stdout went away (``| head``): stop quietly, as a tool killed by SIGPIPE would."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # the final flush at exit must not fail again
    except (OSError, ValueError, AttributeError):
        pass
    return 141


def main(argv: list[str] | None = None) -> int:
    from ..atomic import producing
    from ..optim.engine.process import allow_process_tuning

    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse printed the usage error; --help and --version still exit
        if e.code in (0, None):
            raise
        return e.code if isinstance(e.code, int) else 2
    options = _given_options(argv)
    step = f"`neuronscope {args.verb}`" + (f" with {options}" if options else " at its defaults")
    try:
        # a command owns its process: its renders may tune the heap and threads (restored after each)
        with producing(step), allow_process_tuning():
            code = args._run(args)
        sys.stdout.flush()
    except NeuronscopeError as e:
        error(str(e))
        return 2
    except MemoryError:
        error(f"{step} ran out of memory; lower the sizes, batch or counts it was given")
        return 2
    except BrokenPipeError:
        return _stdout_closed()
    except KeyboardInterrupt:
        print("\nneuronscope: interrupted", file=sys.stderr)
        return 130
    return int(code or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
