"""A function that forwards its settings to another takes that one's arguments: declared once.

``@takes_arguments_of(target)`` on ``f(*args, **settings)`` gives ``f`` the parameters of
``target`` for type checkers and IDEs (a ``ParamSpec``), for ``help()`` and
``inspect.signature`` (``__signature__``, with ``f``'s own return annotation), and at run
time: a keyword ``target`` does not take is a TypeError naming the closest valid ones (or
all of them), raised before ``f`` runs.
"""

from __future__ import annotations

import difflib
import functools
import inspect
from typing import Any, Callable, ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")

_NAMED = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


def takes_arguments_of(target: Callable[P, Any]) -> Callable[[Callable[..., R]], Callable[P, R]]:
    """Decorate ``f(*args, **settings)`` that passes its arguments on to ``target`` (a function or a class)."""
    signature = inspect.signature(target)
    names = [n for n, a in signature.parameters.items() if a.kind in _NAMED]

    def decorate(f: Callable[..., R]) -> Callable[P, R]:
        @functools.wraps(f)
        def checked(*args, **settings):
            for name in settings:
                if name not in names:
                    close = difflib.get_close_matches(name, names, n=3)
                    raise TypeError(f"{f.__name__}() got an unexpected keyword argument {name!r}; "
                                    + (f"did you mean: {', '.join(close)}" if close else f"valid: {', '.join(names)}"))
            return f(*args, **settings)

        checked.__signature__ = signature.replace(return_annotation=inspect.signature(f).return_annotation)
        return checked

    return decorate
