"""The ``neuronscope`` command line.

Each verb is one module in this package exposing ``add_parser(subparsers)``
(which returns its parser) and ``run(args) -> int | None``. Verbs only parse and
report; the work is done by library functions. A :class:`NeuronscopeError`
becomes a one-paragraph message and exit code 2, never a traceback.
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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = args._run(args)
    except NeuronscopeError as e:
        error(str(e))
        return 2
    except KeyboardInterrupt:
        print("\nneuronscope: interrupted", file=sys.stderr)
        return 130
    return int(code or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
