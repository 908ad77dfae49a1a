"""Output folders: the one policy every verb follows.

* ``check_output_dir`` validates ``--out`` before any work: the path is not a
  file, no part of it is a file, the nearest existing folder can be written to,
  and a non-empty folder is only accepted with ``overwrite`` (or ``resume``).
  Every problem is a :class:`NeuronscopeError` naming the option and the path.
* ``building_output_dir`` is for verbs that make a whole folder at once: the
  results are written into a hidden folder next to the destination and renamed
  into place at the end, under a lock on the parent folder, so an interrupted
  run leaves nothing half-written and of two runs racing for the same new
  folder the second fails cleanly instead of replacing the first's results.
* ``building_into_dir`` is for verbs whose runs each add their files to a
  shared folder (``facets``: one sheet per unit). A run is built the same way,
  in a hidden folder next to the destination; at the end, under the same lock,
  the hidden folder becomes the destination if there is none yet (or it is
  empty), else its entries are moved in with the ``mark`` entry (the file that
  says the run's result is complete) last, so a run killed in between leaves no
  mark and the next run replaces its files. Other runs' files are never
  touched; a ``mark`` that another run wrote meanwhile is kept unless
  ``overwrite``.
* ``prepare_output_dir`` is for verbs that work in place and resume (top-k
  stores, atlases, training runs).
* Leftovers of killed runs (``.NAME.PID.XXXXXXXX`` build folders,
  ``.NAME.old-PID`` backups, ``.FILE.PID.XXXXXXXX.tmp`` files) are removed when
  the process that made them is gone.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import shutil
from pathlib import Path
from typing import Iterator

from .errors import NeuronscopeError

_LEFTOVER = re.compile(r"^\.(?P<name>.+)\.(?:(?P<pid>\d+)\.[0-9a-f]{8}(?:\.tmp)?|old-(?P<old>\d+))$")


def _os_problem(e: OSError) -> str:
    if isinstance(e, PermissionError) or e.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if e.errno == errno.EROFS:
        return "read-only file system"
    if e.errno == errno.ENOSPC:
        return "no space left on the device"
    if e.errno == errno.ENAMETOOLONG:
        return "the name is too long"
    return e.strerror or type(e).__name__


def _nearest_existing(d: Path, option: str) -> Path:
    """The closest existing folder on the way up from ``d``; an error if a part of the path is a file."""
    for parent in [d, *d.parents]:
        try:
            exists = parent.exists()
        except OSError as e:  # e.g. a name that is too long
            raise NeuronscopeError(f"{option} {d} cannot be used: {_os_problem(e)}") from None
        if exists:
            if not parent.is_dir():
                where = "is a file" if parent == d else f"cannot be made: {parent} is a file, not a folder"
                raise NeuronscopeError(f"{option} {d} {where}; give a folder path")
            return parent
    return Path(".")


def _probe_writable(folder: Path, d: Path, option: str) -> None:
    """Create and remove a folder in ``folder``: the only sure test (root, read-only mounts, ACLs)."""
    probe = folder / f".neuronscope-probe.{os.getpid()}.{secrets.token_hex(4)}"
    try:
        probe.mkdir()
    except OSError as e:
        raise NeuronscopeError(
            f"{option} {d} cannot be created: {_os_problem(e)} in {folder}; choose a folder you can write to"
        ) from None
    probe.rmdir()


def check_output_dir(out: str | os.PathLike, *, overwrite: bool = False, resume: bool = False,
                     option: str = "--out", in_place: bool = True, overwrite_flag: str | None = "--overwrite") -> Path:
    """Validate an output folder without leaving anything behind; returns it as a Path.

    ``overwrite_flag``: the option that allows a non-empty folder, for the message (None: there is none).
    """
    d = Path(out)
    if str(out) == "":
        raise NeuronscopeError(f"{option} is empty; give a folder path")
    base = _nearest_existing(d, option)
    if base == d:
        try:
            filled = any(d.iterdir())
        except OSError as e:
            raise NeuronscopeError(f"{option} {d} cannot be read: {_os_problem(e)}") from None
        if filled and not (overwrite or resume):
            raise NeuronscopeError(
                f"{option} {d} already exists and is not empty; choose another {option}"
                + (f", or pass {overwrite_flag} to replace it" if overwrite_flag else " (a new or empty folder)")
            )
    # a folder built next to its destination needs its parent writable; one worked in, itself
    _probe_writable(base if base != d or in_place else _nearest_existing(d.parent, option), d, option)
    return d


def _mkdir(d: Path, option: str) -> None:
    try:
        d.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise NeuronscopeError(f"{option} {d} exists and is a file; give a folder path") from None
    except NotADirectoryError:
        _nearest_existing(d, option)
        raise NeuronscopeError(f"{option} {d} cannot be made: a part of the path is a file") from None
    except OSError as e:
        raise NeuronscopeError(f"{option} {d} cannot be created: {_os_problem(e)}") from None


def prepare_output_dir(out: str | os.PathLike, *, overwrite: bool = False, resume: bool = False,
                       option: str = "--out") -> Path:
    """An output folder to work in: new, or explicitly reused (``overwrite``, ``resume``); never silently clobbered."""
    d = check_output_dir(out, overwrite=overwrite, resume=resume, option=option)
    _mkdir(d, option)
    sweep_leftovers(d.parent, d.name)
    sweep_leftovers(d)
    return d


def fresh_dir(parent: str | os.PathLike, prefix: str) -> Path:
    """A new, uniquely named folder ``PREFIX<pid>.<hex>`` in ``parent``, with the permissions of any new folder.

    For building an output folder and renaming it into place (tempfile.mkdtemp's
    folders are private, 0700, and would stay so after the rename).
    """
    parent = Path(parent)
    while True:
        d = parent / f"{prefix}{os.getpid()}.{secrets.token_hex(4)}"
        try:
            d.mkdir(0o777)
            return d
        except FileExistsError:
            continue


def pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    except (OverflowError, OSError):
        return False
    return True


def sweep_leftovers(folder: str | os.PathLike, name: str | None = None) -> list[Path]:
    """Remove the hidden build folders, backups and temporary files of dead processes in ``folder``.

    With ``name``, only those made for ``folder/name``. Returns what was removed.
    """
    folder = Path(folder)
    removed = []
    try:
        entries = list(folder.iterdir())
    except OSError:
        return removed
    for p in entries:
        m = _LEFTOVER.match(p.name)
        if not m or (name is not None and m["name"] != name):
            continue
        if pid_alive(int(m["pid"] or m["old"])):
            continue
        try:
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
            removed.append(p)
        except OSError:
            pass
    return removed


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """An exclusive lock on ``folder`` for the few system calls of publishing a result."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no lock, the rename checks remain
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def publish(tmp: Path, out: Path, *, overwrite: bool = False, option: str = "--out") -> Path:
    """Rename the finished folder ``tmp`` to ``out``; a folder filled meanwhile is only replaced with ``overwrite``."""
    with _locked(out.parent):
        if out.exists() and not out.is_dir():
            raise NeuronscopeError(f"{option} {out} became a file while this run worked; nothing was written")
        if out.exists() and any(out.iterdir()):
            if not overwrite:
                raise NeuronscopeError(
                    f"{option} {out} was filled by another run while this one worked; this run's results were "
                    "discarded. Choose another --out, or pass --overwrite to replace it"
                )
            backup = out.with_name(f".{out.name}.old-{os.getpid()}")
            out.rename(backup)
            tmp.rename(out)
            shutil.rmtree(backup, ignore_errors=True)
        else:
            os.rename(tmp, out)  # replaces an empty folder atomically
    return out


def publish_into(tmp: Path, out: Path, mark: str, *, overwrite: bool = False, option: str = "--out") -> Path:
    """Add the finished entries of ``tmp`` to the shared folder ``out``, entry ``mark`` last (see the module
    docstring); ``tmp`` is gone afterwards. Returns ``out``."""
    with _locked(out.parent):
        if out.exists() and not out.is_dir():
            raise NeuronscopeError(f"{option} {out} became a file while this run worked; nothing was written")
        if not out.exists() or not any(out.iterdir()):
            os.rename(tmp, out)  # replaces an empty folder atomically
            return out
        if (out / mark).exists() and not overwrite:
            raise NeuronscopeError(
                f"{out / mark} was written by another run while this one worked; this run's results were "
                f"discarded. Pass --overwrite to replace it, or choose another {option}"
            )
        for src in sorted(tmp.iterdir(), key=lambda p: p.name == mark):  # the mark last
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
def building_into_dir(out: str | os.PathLike, mark: str, *, overwrite: bool = False,
                      option: str = "--out") -> Iterator[Path]:
    """Yield a hidden folder to write one run's files into; on success they join the shared folder ``out``
    (:func:`publish_into`, ``mark`` last), on failure or interruption it is removed and ``out`` is as it was."""
    out = Path(out)
    _mkdir(out.parent, option)
    sweep_leftovers(out.parent, out.name)
    if out.is_dir():
        sweep_leftovers(out)
    tmp = fresh_dir(out.parent, f".{out.name}.")
    try:
        yield tmp
        publish_into(tmp, out, mark, overwrite=overwrite, option=option)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextlib.contextmanager
def building_output_dir(out: str | os.PathLike, *, overwrite: bool = False, option: str = "--out") -> Iterator[Path]:
    """Yield a hidden folder to write into; on success it becomes ``out``, on failure it is removed."""
    out = check_output_dir(out, overwrite=overwrite, option=option, in_place=False)
    _mkdir(out.parent, option)
    sweep_leftovers(out.parent, out.name)
    tmp = fresh_dir(out.parent, f".{out.name}.")
    try:
        yield tmp
        publish(tmp, out, overwrite=overwrite, option=option)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
