"""Reader for Qt binary resource bundles (``.rcc`` files).

A bundle made by ``rcc -binary`` is laid out as follows (all integers are
big-endian):

* header: ``b"qres"``, then ``version``, ``tree_offset``, ``data_offset`` and
  ``names_offset`` as 4-byte integers; version 3 and later add a 4-byte
  ``flags`` word for the whole bundle;
* tree: fixed-size nodes (14 bytes; 22 from version 2 on, which append an
  8-byte modification time).  A node starts with a 4-byte name offset and a
  2-byte flag word.  Directories (flag 2) go on with a 4-byte child count and
  the 4-byte index of their first child; files go on with 2-byte country,
  2-byte language and a 4-byte data offset.  Node 0 is the root directory;
* names: at ``names_offset + name_offset``, a 2-byte length, a 4-byte hash,
  then the name in UTF-16-BE;
* data: at ``data_offset + data_offset_of_file``, a 4-byte size then the
  payload.  A zlib-compressed payload (flag 1) starts with its 4-byte
  uncompressed length; a zstd-compressed payload (flag 4) is a zstd frame.

Only the standard library is needed unless a bundle holds zstd payloads; then
the ``zstandard`` package is imported on demand.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

MAGIC = b"qres"
FLAG_ZLIB = 0x01
FLAG_DIRECTORY = 0x02
FLAG_ZSTD = 0x04


class RccError(ValueError):
    """The bytes are not a readable Qt resource bundle."""


@dataclass(frozen=True)
class RccEntry:
    """One file stored in a bundle, before decompression."""

    path: str
    flags: int
    raw: bytes

    @property
    def compression(self) -> str:
        """``"zstd"``, ``"zlib"`` or ``"none"``."""
        if self.flags & FLAG_ZSTD:
            return "zstd"
        if self.flags & FLAG_ZLIB:
            return "zlib"
        return "none"

    def data(self) -> bytes:
        """The file's content, decompressed."""
        if self.flags & FLAG_ZSTD:
            return _zstd_decompress(self.raw)
        if self.flags & FLAG_ZLIB:
            if len(self.raw) < 4:
                raise RccError(f"{self.path}: truncated zlib payload")
            (size,) = struct.unpack(">I", self.raw[:4])
            out = zlib.decompress(self.raw[4:])
            if len(out) != size:
                raise RccError(f"{self.path}: expected {size} bytes, inflated {len(out)}")
            return out
        return self.raw


def _zstd_decompress(raw: bytes) -> bytes:
    try:
        import zstandard
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise RccError("this bundle holds zstd-compressed files; pip install zstandard") from exc
    return zstandard.ZstdDecompressor().decompress(raw, max_output_size=1 << 30)


class RccReader:
    """Parse a bundle held in memory; iterate its files with :meth:`entries`."""

    def __init__(self, blob: bytes):
        if blob[:4] != MAGIC or len(blob) < 20:
            raise RccError("not a Qt resource bundle (missing 'qres' header)")
        self.blob = blob
        self.version, self.tree_offset, self.data_offset, self.names_offset = struct.unpack_from(
            ">4I", blob, 4
        )
        if not 1 <= self.version <= 3:
            raise RccError(f"unsupported rcc format version {self.version}")
        self.node_size = 14 if self.version == 1 else 22

    @classmethod
    def open(cls, path: str | Path) -> "RccReader":
        """Read a bundle from disk."""
        return cls(Path(path).read_bytes())

    def _unpack(self, fmt: str, pos: int, what: str) -> tuple:
        try:
            return struct.unpack_from(fmt, self.blob, pos)
        except struct.error:
            raise RccError(f"{what} lies outside the file") from None

    def _name(self, offset: int) -> str:
        pos = self.names_offset + offset
        (length,) = self._unpack(">H", pos, "a name")
        start = pos + 6  # skip length and hash
        raw = self.blob[start : start + 2 * length]
        if len(raw) != 2 * length:
            raise RccError("a name lies outside the file")
        return raw.decode("utf-16-be", errors="replace")

    def _node(self, index: int) -> tuple[int, int, int, int]:
        """(name offset, flags, a, b): a, b = child count, first child for a
        directory; country/language word, data offset for a file."""
        return self._unpack(">IHII", self.tree_offset + index * self.node_size, f"tree node {index}")

    def entries(self) -> Iterator[RccEntry]:
        """Every file in the bundle, depth first, with its '/'-joined path."""
        stack = [(0, "")]
        seen = set()
        while stack:
            index, prefix = stack.pop()
            if index in seen:
                raise RccError("tree has a cycle")
            seen.add(index)
            name_off, flags, a, b = self._node(index)
            name = "" if index == 0 else self._name(name_off)
            path = f"{prefix}/{name}" if prefix else name
            if flags & FLAG_DIRECTORY:
                count, first = a, b
                if self.tree_offset + (first + count) * self.node_size > len(self.blob):
                    raise RccError(f"{path or '/'}: children lie outside the file")
                stack.extend((first + i, path) for i in reversed(range(count)))
            else:
                pos = self.data_offset + b
                (size,) = self._unpack(">I", pos, f"{path}: payload")
                raw = self.blob[pos + 4 : pos + 4 + size]
                if len(raw) != size:
                    raise RccError(f"{path}: payload runs past the end of the file")
                yield RccEntry(path, flags, raw)


def iter_rcc(path: str | Path) -> Iterator[tuple[str, bytes]]:
    """Yield ``(path_inside_bundle, decompressed_bytes)`` for each file."""
    for entry in RccReader.open(path).entries():
        yield entry.path, entry.data()
