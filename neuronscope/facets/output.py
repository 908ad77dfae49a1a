"""Where a facets run's sheet goes: built in a hidden folder, then published into the facets folder.

A facets folder collects the sheets of many units, one run per unit: ``<unit>.html``,
``<unit>.png``, ``<unit>.json`` and the page's pictures in ``<unit>_files/``. A run follows
the output-folder policy of :mod:`neuronscope.outdir`: it writes its unit's files into a
hidden folder next to the destination (``.OUT.PID.XXXXXXXX``) and publishes them at the end
under the lock on the parent folder:

* no destination folder yet (or an empty one): the hidden folder is renamed to it, atomically;
* a folder with other units' sheets (kept, never touched): the unit's entries are moved in,
  its page ``<unit>.html`` -- the mark of a finished unit -- last, so a run killed in
  between leaves a unit without a page, whose files the next run for it replaces.

A page of the same unit that appeared while this run worked (another run finished it) is
kept unless ``overwrite``: this run's results are discarded with a clear error. A killed
run leaves only its hidden folder, which later runs remove once its process is gone.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import Iterator

from ..errors import NeuronscopeError
from ..outdir import _locked, fresh_dir, sweep_leftovers


def unit_page(out: str | os.PathLike, slug: str) -> Path:
    """The page that marks ``slug`` as finished in the facets folder ``out``."""
    return Path(out) / f"{slug}.html"


def refuse_finished(out: str | os.PathLike, slug: str, overwrite: bool) -> None:
    """Stop before any work when the unit's sheet exists and ``overwrite`` was not given."""
    page = unit_page(out, slug)
    if page.exists() and not overwrite:
        raise NeuronscopeError(f"{page} already exists; pass --overwrite to replace it, or choose another --out")


def publish_unit(tmp: Path, out: Path, slug: str, *, overwrite: bool = False) -> Path:
    """Move the unit's finished files from ``tmp`` into ``out`` (see the module docstring); returns ``out``."""
    with _locked(out.parent):
        if out.exists() and not out.is_dir():
            raise NeuronscopeError(f"--out {out} became a file while this run worked; nothing was written")
        if not out.exists() or not any(out.iterdir()):
            os.rename(tmp, out)  # replaces an empty folder atomically
            return out
        page = unit_page(out, slug)
        if page.exists() and not overwrite:
            raise NeuronscopeError(
                f"{page} was written by another run while this one worked; this run's results were discarded. "
                "Pass --overwrite to replace it, or choose another --out"
            )
        for src in sorted(tmp.iterdir(), key=lambda p: p.name == page.name):  # the page last
            dst = out / src.name
            if dst.is_dir() and not dst.is_symlink():
                backup = out / f".{dst.name}.old-{os.getpid()}"  # swept by later runs if this one dies here
                dst.rename(backup)
                src.rename(dst)
                shutil.rmtree(backup, ignore_errors=True)
            else:
                os.replace(src, dst)
        tmp.rmdir()
    return out


@contextlib.contextmanager
def building_unit_sheet(out: str | os.PathLike, slug: str, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a hidden folder to write one unit's sheet into; on success its files join ``out``,
    on failure (or interruption) it is removed and ``out`` is as it was."""
    out = Path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise NeuronscopeError(f"--out {out} cannot be created: {e.strerror or e}") from None
    sweep_leftovers(out.parent, out.name)
    if out.is_dir():
        sweep_leftovers(out)
    tmp = fresh_dir(out.parent, f".{out.name}.")
    try:
        yield tmp
        publish_unit(tmp, out, slug, overwrite=overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
