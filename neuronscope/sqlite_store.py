"""The SQLite side of neuronscope's on-disk stores: the unit store (:mod:`.data.store`) and the atlas store.

Both keep a folder with an index ``<folder>/<INDEX>`` (a ``meta`` table of
key -> JSON value, plus their own tables) beside picture files, and handle
that index the same way:

- :meth:`SQLiteStore._create_index` builds a new index under a temporary name
  and moves it in place, so a half-created store never exists;
- a :class:`SQLiteStore` holds one connection (WAL, ``synchronous=FULL``,
  shared by threads under one lock), reads with ``_q``, writes in
  ``_transaction`` (``BEGIN IMMEDIATE``, rolled back on any error), and reads
  and updates the ``meta`` table;
- :func:`lock_exclusive` takes the folder's ``.lock`` without waiting.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterator

from .atomic import dumps_finite
from .errors import NeuronscopeError


def lock_exclusive(folder: Path, busy: str) -> int:
    """Take ``folder/.lock`` (exclusive flock, no waiting): the open descriptor, or ``NeuronscopeError(busy)``."""
    fd = os.open(folder / ".lock", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise NeuronscopeError(busy) from None
    return fd


class SQLiteStore:
    """An open store folder whose index is ``path / INDEX``; subclasses set the class attributes."""

    INDEX: ClassVar[str]  # the index's file name inside the folder
    SCHEMA: ClassVar[str]  # CREATE TABLE statements, including ``meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)``
    TIMEOUT: ClassVar[float]  # seconds a connection waits for another writer's lock
    KIND: ClassVar[str] = "store"  # how messages name the store
    FORMAT_KEY: ClassVar[str]  # the meta key holding the store's format
    FORMAT: ClassVar[Any]  # the format this neuronscope reads and writes
    FORMAT_LABEL: ClassVar[str] = "format"  # how messages name it
    META_JSON_DEFAULT: ClassVar[Callable[[Any], Any] | None] = None  # ``json.dumps(default=)`` for set_meta

    def __init__(self, path: Path, conn: sqlite3.Connection):
        self.path = path
        self._conn = conn
        self._lock = threading.RLock()

    @classmethod
    def _connect(cls, path: Path) -> sqlite3.Connection:
        # ``timeout`` is SQLite's busy timeout: a writer waits that long for another's lock.
        conn = sqlite3.connect(path / cls.INDEX, timeout=cls.TIMEOUT, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        return conn

    @classmethod
    def _create_index(cls, path: Path, meta: dict, fill: Callable[[sqlite3.Connection], None] | None = None) -> None:
        """Write a new index with ``meta`` (and whatever ``fill`` inserts in the same transaction) into ``path``.

        It is built as ``.<INDEX>.creating`` and renamed into place, so a half-created store never exists.
        """
        tmp = path / f".{cls.INDEX}.creating"
        tmp.unlink(missing_ok=True)
        conn = sqlite3.connect(tmp, isolation_level=None)
        try:
            conn.executescript(cls.SCHEMA)
            conn.execute("BEGIN")
            conn.executemany("INSERT INTO meta VALUES (?, ?)", [(k, dumps_finite(v, f"the store setting {k}")) for k, v in meta.items()])
            if fill is not None:
                fill(conn)
            conn.execute("COMMIT")
        finally:
            conn.close()
        os.replace(tmp, path / cls.INDEX)

    @classmethod
    def exists(cls, path: str | os.PathLike) -> bool:
        return (Path(path) / cls.INDEX).is_file()

    @classmethod
    def _open_existing(cls, path: Path, missing: str):
        """The store at ``path``; ``NeuronscopeError(missing)`` when there is none, refused when of another format."""
        if not cls.exists(path):
            raise NeuronscopeError(missing)
        store = cls(path, cls._connect(path))
        have = store._read_meta().get(cls.FORMAT_KEY)
        if have != cls.FORMAT:
            store.close()
            raise NeuronscopeError(
                f"{cls.KIND} {path} has {cls.FORMAT_LABEL} {have}; this neuronscope reads {cls.FORMAT_LABEL} {cls.FORMAT}"
            )
        return store

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _open_conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise NeuronscopeError(f"{self.KIND} {self.path} is closed")
        return self._conn

    def _q(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._lock:
            return self._open_conn().execute(sql, args).fetchall()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            conn = self._open_conn()
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def _read_meta(self) -> dict:
        return {k: json.loads(v) for k, v in self._q("SELECT key, value FROM meta")}

    def set_meta(self, **values) -> None:
        with self._transaction() as c:
            c.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                          [(k, dumps_finite(v, f"the store setting {k}", default=type(self).META_JSON_DEFAULT))
                           for k, v in values.items()])
