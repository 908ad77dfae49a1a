"""The ``neuronscope`` command line.

Each verb is one module in this package exposing ``add_parser(subparsers)``
(which returns its parser) and ``run(args) -> int | None``. Verbs only parse and
report; the work is done by library functions. A :class:`NeuronscopeError`
becomes a one-paragraph message and exit code 2, never a traceback; so does
running out of memory. Numbers are validated by the option types of
``_common`` while the arguments are parsed (argparse's exit code 2). A reader
that stops early (``neuronscope layers | head``) ends the verb quietly (exit code 141) on
every way out of :func:`main`, errors and interrupts included.
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
    try:
        print(textwrap.fill(f"neuronscope: error: {message}", width=width, subsequent_indent="  "), file=sys.stderr)
        sys.stderr.flush()
    except BrokenPipeError:  # nobody reads stderr either (`2>&1 | head`)
        _reader_gone(sys.stderr)


def _given_options(argv: list[str] | None) -> str:
    tokens = list(sys.argv[1:] if argv is None else argv)
    first = next((i for i, t in enumerate(tokens) if t.startswith("-")), len(tokens))
    text = " ".join(tokens[first:])
    return text if len(text) <= 200 else text[:197] + "..."


def _reader_gone(stream) -> None:
    """Point ``stream``'s file descriptor at /dev/null: its reader went away, and the flush at exit must not
    fail again (Python would print "Exception ignored ... BrokenPipeError" and exit 120)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


def _flushed() -> bool:
    """Flush stdout and stderr; False when the reader of stdout went away (``| head``)."""
    ok = True
    for stream in (sys.stdout, sys.stderr):
        if stream is None:
            continue
        try:
            stream.flush()
        except BrokenPipeError:
            _reader_gone(stream)
            ok = ok and stream is not sys.stdout
        except (OSError, ValueError):  # a closed or unusable stream: nothing more to write to it
            pass
    return ok


def _parse(parser, argv):
    """Parse the command line. A command whose last positional takes any number of words (``layers``'
    LAYER..., ``classes``' QUERY...) names it with ``set_defaults(_trailing=DEST)``: argparse fills such
    a positional before the options that follow the model, so words after those options would be
    "unrecognized"; they belong to it (``neuronscope layers MODEL --preprocess none blocks.4``)."""
    args, extra = parser.parse_known_args(argv)
    trailing = getattr(args, "_trailing", None)
    if extra and trailing and not any(a.startswith("-") for a in extra):
        setattr(args, trailing, list(getattr(args, trailing) or []) + extra)
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def main(argv: list[str] | None = None) -> int:
    from ..atomic import producing
    from ..optim.engine.process import allow_process_tuning

    parser = build_parser()
    try:
        args = _parse(parser, argv)
    except SystemExit as e:  # argparse printed the usage error; --help and --version still exit
        if e.code in (0, None):
            if not _flushed():  # `neuronscope render --help | head`
                raise SystemExit(141) from None
            raise
        _flushed()
        return e.code if isinstance(e.code, int) else 2
    options = _given_options(argv)
    step = f"`neuronscope {args.verb}`" + (f" with {options}" if options else " at its defaults")
    try:
        # a command owns its process: its renders may tune the heap and threads (restored after each)
        with producing(step), allow_process_tuning():
            code = int(args._run(args) or 0)
    except NeuronscopeError as e:
        error(str(e))
        code = 2
    except MemoryError:
        error(f"{step} ran out of memory; lower the sizes, batch or counts it was given")
        code = 2
    except BrokenPipeError:  # a write to a stream whose reader went away: stop quietly, as SIGPIPE would
        _flushed()
        return 141
    except KeyboardInterrupt:
        try:
            print("\nneuronscope: interrupted", file=sys.stderr)
        except BrokenPipeError:
            pass
        code = 130
    # every way out flushes here, inside main: output still buffered when the reader has gone (an error after
    # some lines were printed, an interrupt) must not fail in the interpreter's own flush at exit
    return 141 if not _flushed() and code == 0 else code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
