"""The atlas's resumable unit store: SQLite (WAL) for the index, PNG files for the pictures.

Layout::

    STORE/
      atlas.sqlite                      manifest, layers, units, class attributions, runs
      units/<layer>/<unit>-<token>.png  a unit's visualization
      units/<layer>/<unit>-<token>-d<i>.png   its diversity renders
      .lock                             flock held by the one run (driver) using the store

Recording a unit is two steps, in this order: its picture files are written
atomically (temporary file + rename) under names no other writer can pick (a
fresh random token), then one SQLite transaction inserts its row, checking
inside the transaction that the files are there. So

- a unit is either fully recorded (row + every file) or not at all;
- a killed process leaves at most unreferenced files, which :meth:`sweep`
  removes (run by the driver, holding the write lock, before it starts);
- several processes (Ray workers) may record into one store concurrently: the
  primary key (layer, unit) keeps the first writer's row, a later writer's files
  are deleted, and no row is ever replaced.

The manifest (model, weights fingerprint, preset, size, steps, seed, diversity,
versions) is compared on every open; a store made under other conditions is
refused with the differences listed, unless the run asks to redo it (``--force``).
"""

from __future__ import annotations

import json
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from ..errors import NeuronscopeError
from ..atomic import dumps_finite, first_not_finite, not_finite
from ..images import atomic_write_bytes
from ..sqlite_store import SQLiteStore, lock_exclusive
from .settings import ATLAS_FORMAT, differences

INDEX = "atlas.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS layers (
    name TEXT PRIMARY KEY, position INTEGER NOT NULL, channels INTEGER NOT NULL, shape TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS units (
    layer TEXT NOT NULL, unit INTEGER NOT NULL, file TEXT NOT NULL, value REAL NOT NULL,
    diversity TEXT NOT NULL, seconds REAL NOT NULL, batch_rows INTEGER NOT NULL,
    worker TEXT NOT NULL, run TEXT NOT NULL, created REAL NOT NULL,
    PRIMARY KEY (layer, unit));
CREATE TABLE IF NOT EXISTS classes (
    layer TEXT PRIMARY KEY, method TEXT NOT NULL, data TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, started REAL NOT NULL, finished REAL, backend TEXT NOT NULL,
    workers INTEGER NOT NULL, rendered INTEGER NOT NULL DEFAULT 0, status TEXT NOT NULL);
"""


def safe_name(layer: str) -> str:
    """A layer address as a file/folder name (``blocks.4`` stays ``blocks.4``)."""
    import re

    return re.sub(r"[^A-Za-z0-9._-]+", "_", layer) or "layer"


@dataclass
class UnitResult:
    """One rendered unit, not yet recorded: PNG bytes and values."""

    layer: str
    unit: int
    png: bytes
    value: float
    diversity: list[tuple[bytes, float]] = field(default_factory=list)
    seconds: float = 0.0  # this unit's share of its optimization's wall time
    batch_rows: int = 1


@dataclass(frozen=True)
class UnitRecord:
    """A recorded unit as stored."""

    layer: str
    unit: int
    file: Path  # absolute path of the visualization
    value: float
    diversity: tuple[tuple[Path, float], ...]
    seconds: float
    batch_rows: int
    worker: str
    run: str
    created: float


class AtlasStore(SQLiteStore):
    """An open atlas store; :meth:`open` (existing) or :meth:`open_or_create` (a run)."""

    INDEX = INDEX
    SCHEMA = _SCHEMA
    TIMEOUT = 120.0  # Ray workers record into one store concurrently
    KIND = "atlas store"
    FORMAT_KEY = "format"
    FORMAT = ATLAS_FORMAT
    META_JSON_DEFAULT = str

    def __init__(self, path: Path, conn):
        super().__init__(path, conn)
        self._lock_fd: int | None = None

    # ------------------------------------------------------------ opening

    @classmethod
    def open(cls, path: str | os.PathLike) -> "AtlasStore":
        """Open an existing store (reading, or recording from a worker)."""
        p = Path(path)
        return cls._open_existing(p, f"no atlas store at {p}; make one with `neuronscope atlas MODEL --out SITE`")

    @classmethod
    def open_or_create(cls, path: str | os.PathLike, manifest: dict, *, force: bool = False) -> "AtlasStore":
        """The store for a run: created with ``manifest``, or reopened and checked against it.

        A store made under other conditions is refused with the differences
        listed; ``force=True`` empties it (units, pictures, attributions) and
        adopts the new manifest. Takes the run's write lock.
        """
        p = Path(path)
        wanted = json.loads(json.dumps(manifest, default=str))
        if not cls.exists(p):
            if p.exists() and (not p.is_dir() or any(x for x in p.iterdir() if x.name != ".lock")):
                raise NeuronscopeError(f"{p} exists and is not an atlas store; choose another --out")
            p.mkdir(parents=True, exist_ok=True)
            cls._create_index(p, {**wanted, "created": time.strftime("%Y-%m-%dT%H:%M:%S")})
            store = cls(p, cls._connect(p))
            store.acquire()
            return store
        store = cls.open(p)
        try:
            store.acquire()
            diff = differences(store.manifest, wanted)
            if force:
                store._reset(wanted)
            elif diff:
                raise NeuronscopeError(
                    f"the atlas in {p} was rendered under other conditions ({'; '.join(diff)}); "
                    "its units would be stale. Pass --force to redo every unit with the new settings, "
                    "or choose another --out"
                )
        except BaseException:
            store.close()
            raise
        return store

    def close(self) -> None:
        with self._lock:
            super().close()
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None

    def acquire(self) -> None:
        """Take the run lock (one driver per store); fails clearly when another run holds it."""
        if self._lock_fd is not None:
            return
        self._lock_fd = lock_exclusive(
            self.path, f"atlas store {self.path} is in use by another atlas run; wait for it to finish (or stop it)"
        )

    # ------------------------------------------------------------ manifest and layers

    @property
    def manifest(self) -> dict:
        return self._read_meta()

    def _reset(self, manifest: dict) -> None:
        """Forget every unit and attribution, delete the pictures, adopt ``manifest`` (``--force``)."""
        with self._transaction() as c:
            c.execute("DELETE FROM units")
            c.execute("DELETE FROM classes")
            c.execute("DELETE FROM layers")
            c.execute("DELETE FROM meta WHERE key NOT IN ('created')")
            c.executemany("INSERT INTO meta VALUES (?, ?)", [(k, json.dumps(v)) for k, v in manifest.items()])
        self.sweep()

    def add_layers(self, layers: Sequence[tuple[str, int, tuple]]) -> None:
        """Register (name, channels, per-image shape) layers, keeping the first registration's order."""
        with self._transaction() as c:
            pos = c.execute("SELECT COALESCE(MAX(position), -1) FROM layers").fetchone()[0]
            for name, channels, shape in layers:
                row = c.execute("SELECT channels FROM layers WHERE name = ?", (name,)).fetchone()
                if row is None:
                    pos += 1
                    c.execute("INSERT INTO layers VALUES (?, ?, ?, ?)", (name, pos, int(channels), json.dumps(list(shape))))
                elif int(row[0]) != int(channels):
                    raise NeuronscopeError(
                        f"layer {name!r} has {channels} channels but the atlas recorded {row[0]}; "
                        "the model changed: pass --force"
                    )

    def layers(self) -> list[str]:
        return [r[0] for r in self._q("SELECT name FROM layers ORDER BY position")]

    def channels(self, layer: str) -> int:
        rows = self._q("SELECT channels FROM layers WHERE name = ?", (layer,))
        if not rows:
            raise NeuronscopeError(f"the atlas has no layer {layer!r}; it has: {', '.join(self.layers()) or 'none'}")
        return int(rows[0][0])

    def shape(self, layer: str) -> tuple[int, ...]:
        rows = self._q("SELECT shape FROM layers WHERE name = ?", (layer,))
        return tuple(json.loads(rows[0][0])) if rows else ()

    # ------------------------------------------------------------ units

    def done(self, layer: str | None = None) -> set[tuple[str, int]]:
        """(layer, unit) pairs already recorded."""
        if layer is None:
            return {(l, int(u)) for l, u in self._q("SELECT layer, unit FROM units")}
        return {(layer, int(u)) for (u,) in self._q("SELECT unit FROM units WHERE layer = ?", (layer,))}

    def count(self) -> int:
        return int(self._q("SELECT COUNT(*) FROM units")[0][0])

    def _record(self, row: tuple) -> UnitRecord:
        layer, unit, file, value, div, seconds, rows, worker, run, created = row
        return UnitRecord(layer, int(unit), self.path / file, float(value),
                          tuple((self.path / f, float(v)) for f, v in json.loads(div)),
                          float(seconds), int(rows), worker, run, float(created))

    def units(self, layer: str | None = None) -> list[UnitRecord]:
        """Recorded units (of one layer), by layer position then unit."""
        sql = ("SELECT u.layer, u.unit, u.file, u.value, u.diversity, u.seconds, u.batch_rows, u.worker, u.run, "
               "u.created FROM units u LEFT JOIN layers l ON l.name = u.layer")
        args: tuple = ()
        if layer is not None:
            sql += " WHERE u.layer = ?"
            args = (layer,)
        return [self._record(r) for r in self._q(sql + " ORDER BY l.position, u.unit", args)]

    def unit(self, layer: str, unit: int) -> UnitRecord | None:
        rows = self._q("SELECT layer, unit, file, value, diversity, seconds, batch_rows, worker, run, created "
                       "FROM units WHERE layer = ? AND unit = ?", (layer, int(unit)))
        return self._record(rows[0]) if rows else None

    def put_units(self, results: Iterable[UnitResult], *, worker: str = "local", run: str = "") -> list[tuple[str, int]]:
        """Record finished units; returns the (layer, unit) pairs this call recorded.

        Units another writer recorded first are skipped (their files deleted), so
        every unit is recorded exactly once, whoever renders it.
        """
        results = list(results)
        have = self.done()
        written: list[tuple[UnitResult, str, list[tuple[str, float]]]] = []
        for r in results:
            if (r.layer, int(r.unit)) in have:
                continue
            if first_not_finite([r.value, [v for _, v in r.diversity]]):
                raise not_finite(f"the activation reached for unit {r.layer}:{int(r.unit)}")
            token = secrets.token_hex(4)
            stem = f"units/{safe_name(r.layer)}/{int(r.unit):05d}-{token}"
            main = f"{stem}.png"
            atomic_write_bytes(self.path / main, r.png)
            div = []
            for i, (png, v) in enumerate(r.diversity):
                f = f"{stem}-d{i}.png"
                atomic_write_bytes(self.path / f, png)
                div.append((f, float(v)))
            written.append((r, main, div))
        recorded, losers = [], []
        now = time.time()
        if written:
            with self._transaction() as c:
                for r, main, div in written:
                    files = [main] + [f for f, _ in div]
                    if not all((self.path / f).is_file() for f in files):  # swept away by a new run's driver
                        continue
                    cur = c.execute(
                        "INSERT OR IGNORE INTO units VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (r.layer, int(r.unit), main, float(r.value), dumps_finite(div), float(r.seconds),
                         int(r.batch_rows), worker, run, now),
                    )
                    if cur.rowcount == 1:
                        recorded.append((r.layer, int(r.unit)))
                    else:
                        losers += files
                if run and recorded:
                    c.execute("UPDATE runs SET rendered = rendered + ? WHERE id = ?", (len(recorded), run))
        for f in losers:
            (self.path / f).unlink(missing_ok=True)
        return recorded

    # ------------------------------------------------------------ consistency

    def referenced_files(self) -> set[str]:
        refs = set()
        for main, div in self._q("SELECT file, diversity FROM units"):
            refs.add(main)
            refs.update(f for f, _ in json.loads(div))
        return refs

    def sweep(self) -> int:
        """Delete picture files no row refers to and temporary files of killed writers; the count.

        Holds a write transaction while it looks, so a concurrent writer either
        committed first (its files are kept) or finds its files gone and does
        not record the unit.
        """
        n = 0
        units_dir = self.path / "units"
        with self._transaction():
            refs = self.referenced_files()
            if units_dir.is_dir():
                for f in units_dir.rglob("*"):
                    if f.is_file() and str(f.relative_to(self.path)) not in refs:
                        f.unlink(missing_ok=True)
                        n += 1
        return n

    def check(self) -> list[str]:
        """Problems found (empty when consistent): missing files, stray files, bad rows."""
        problems = []
        refs = self.referenced_files()
        for f in sorted(refs):
            p = self.path / f
            if not p.is_file() or p.stat().st_size == 0:
                problems.append(f"recorded file missing or empty: {f}")
        units_dir = self.path / "units"
        if units_dir.is_dir():
            for f in units_dir.rglob("*"):
                if f.is_file() and str(f.relative_to(self.path)) not in refs:
                    problems.append(f"unreferenced file: {f.relative_to(self.path)}")
        for layer, unit in self._q("SELECT layer, unit FROM units WHERE layer NOT IN (SELECT name FROM layers)"):
            problems.append(f"unit {layer}:{unit} of an unregistered layer")
        for layer, unit, ch in self._q(
            "SELECT u.layer, u.unit, l.channels FROM units u JOIN layers l ON l.name = u.layer "
            "WHERE u.unit < 0 OR u.unit >= l.channels"
        ):
            problems.append(f"unit {layer}:{unit} out of range 0..{ch - 1}")
        return problems

    # ------------------------------------------------------------ class attributions (cached)

    def put_classes(self, layer: str, method: str, data: dict) -> None:
        with self._transaction() as c:
            c.execute("INSERT OR REPLACE INTO classes VALUES (?, ?, ?, ?)", (layer, method, dumps_finite(data, f"the class attributions of {layer}"), time.time()))

    def classes(self, layer: str) -> tuple[str, dict] | None:
        rows = self._q("SELECT method, data FROM classes WHERE layer = ?", (layer,))
        return (rows[0][0], json.loads(rows[0][1])) if rows else None

    def drop_classes(self, layer: str) -> None:
        with self._transaction() as c:
            c.execute("DELETE FROM classes WHERE layer = ?", (layer,))

    # ------------------------------------------------------------ runs

    def mark_dead_runs(self) -> int:
        """Runs still 'running' while we hold the run lock were killed; say so. Returns how many."""
        with self._transaction() as c:
            return c.execute("UPDATE runs SET status = 'killed' WHERE status = 'running'").rowcount

    def start_run(self, backend: str, workers: int) -> str:
        run = time.strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)
        with self._transaction() as c:
            c.execute("INSERT INTO runs (id, started, backend, workers, status) VALUES (?, ?, ?, ?, 'running')",
                      (run, time.time(), backend, int(workers)))
        return run

    def finish_run(self, run: str, status: str) -> None:
        with self._transaction() as c:
            c.execute("UPDATE runs SET finished = ?, status = ? WHERE id = ?", (time.time(), status, run))

    def runs(self) -> list[dict]:
        cols = ("id", "started", "finished", "backend", "workers", "rendered", "status")
        return [dict(zip(cols, r)) for r in self._q(f"SELECT {', '.join(cols)} FROM runs ORDER BY started")]
