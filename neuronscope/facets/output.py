"""Where a facets run's sheet goes: a facets folder shared by many runs, one unit each.

A facets folder collects the sheets of many units: ``<unit>.html``, ``<unit>.png``,
``<unit>.json`` and the page's pictures in ``<unit>_files/``. A run follows the
output-folder policy of :mod:`neuronscope.outdir` for shared folders
(:func:`~neuronscope.outdir.building_into_dir`): it writes its unit's files into a hidden
folder next to the destination and adds them to the facets folder at the end, the unit's
page ``<unit>.html`` -- the mark of a finished unit -- last. Other units' sheets are never
touched; a page of the same unit that another run finished meanwhile is kept unless
``overwrite`` (this run's results are discarded with a clear error). A killed run leaves
only its hidden folder, which later runs remove once its process is gone.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

from ..errors import NeuronscopeError
from ..outdir import building_into_dir


def unit_page(out: str | os.PathLike, slug: str) -> Path:
    """The page that marks ``slug`` as finished in the facets folder ``out``."""
    return Path(out) / f"{slug}.html"


def refuse_finished(out: str | os.PathLike, slug: str, overwrite: bool) -> None:
    """Stop before any work when the unit's sheet exists and ``overwrite`` was not given."""
    page = unit_page(out, slug)
    if page.exists() and not overwrite:
        raise NeuronscopeError(f"{page} already exists; pass --overwrite to replace it, or choose another --out")


@contextlib.contextmanager
def building_unit_sheet(out: str | os.PathLike, slug: str, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a hidden folder to write one unit's sheet into; on success its files join ``out``
    (the page last), on failure (or interruption) it is removed and ``out`` is as it was."""
    with building_into_dir(out, unit_page(out, slug).name, overwrite=overwrite) as tmp:
        yield tmp
