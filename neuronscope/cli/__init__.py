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
        try:
            module = importlib.import_module(f"{__name__}.{name}")
        except Exception as e:  # noqa: BLE001 - one broken verb must not take the others down
            p = sub.add_parser(name.replace("_", "-"), help=f"(unavailable: {e})")
            p.set_defaults(_run=_unavailable(name, e))
            continue
        p = module.add_parser(sub)
        p.set_defaults(_run=module.run)
    return parser


def _unavailable(name: str, exc: Exception):
    def run(args):
        raise NeuronscopeError(f"the {name} command cannot load: {type(exc).__name__}: {exc}")

    return run


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
