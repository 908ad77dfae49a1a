"""The one exception type for problems a user can cause.

Library code raises :class:`NeuronscopeError` with a message that names the
problem and what would be valid; the CLI prints the message and exits with
code 2 instead of showing a traceback.
"""

from __future__ import annotations

import difflib
from typing import Iterable


class NeuronscopeError(ValueError):
    """A problem with the user's input: a bad name, file, range or option."""


def closest(name: str, valid: Iterable[str], n: int = 6) -> list[str]:
    """The valid names closest to ``name`` (for 'did you mean' messages)."""
    valid = list(valid)
    hits = difflib.get_close_matches(name, valid, n=n, cutoff=0.4)
    if len(hits) < n:
        hits += [v for v in valid if name and name in v and v not in hits][: n - len(hits)]
    return hits
