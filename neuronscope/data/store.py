"""The on-disk unit store shared by top-k, facets, the browser toolbox and the atlas.

A store is a folder::

    STORE/
      store.sqlite          index: metadata, images, layers, top-k entries, artifacts
      views/000123.png      image 123 as the network saw it (input size, eval crop)
      artifacts/<kind>/<layer>/<unit>/<name>.png   pictures other commands attach to units
      .lock                 held by the one process writing top-k results

Every change is one SQLite transaction, so a reader (or a resumed run) sees
either the previous checkpoint or the new one, never half of one; picture files
are written atomically before the transaction that references them. See
``docs/store.md`` for the schema.

Reading::

    s = Store.open("runs/lite0")
    s.layers()                       # ['blocks.5', 'blocks.10']
    s.topk("blocks.10", 5)           # [(path, value, (x, y)), ...] best first
    s.max_patch("blocks.10", 5, 0)   # PIL image: the receptive-field crop at the max
    s.examples("blocks.10", 5, k=9)  # [UnitExample(rank, image_id, path, value, x, y, image, patch)]
"""

from __future__ import annotations

import json
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import torch
from PIL import Image

from ..errors import NeuronscopeError
from ..atomic import dumps_finite
from ..images import atomic_write_bytes, center_crop_resize, load_image, png_bytes, tensor_to_pil
from ..receptive_field import ReceptiveField
from ..sqlite_store import SQLiteStore, lock_exclusive
from ..stats.topk import RunningTopK

STORE_VERSION = 1
INDEX = "store.sqlite"

# image ranges done beyond a layer's images_done prefix by a sharded (Ray) pass; added to older stores on first use
_SHARDS = """CREATE TABLE IF NOT EXISTS shards (
    layer TEXT NOT NULL, start INTEGER NOT NULL, stop INTEGER NOT NULL, PRIMARY KEY (layer, start))"""

_SCHEMA = _SHARDS + """;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS images (
    id INTEGER PRIMARY KEY, path TEXT NOT NULL, failed TEXT);
CREATE TABLE IF NOT EXISTS layers (
    name TEXT PRIMARY KEY, units INTEGER NOT NULL, k INTEGER NOT NULL,
    rf TEXT NOT NULL, images_done INTEGER NOT NULL DEFAULT 0, updated REAL);
CREATE TABLE IF NOT EXISTS topk (
    layer TEXT NOT NULL, unit INTEGER NOT NULL, rank INTEGER NOT NULL,
    image_id INTEGER NOT NULL, value REAL NOT NULL, x INTEGER NOT NULL, y INTEGER NOT NULL,
    PRIMARY KEY (layer, unit, rank));
CREATE TABLE IF NOT EXISTS artifacts (
    kind TEXT NOT NULL, layer TEXT NOT NULL, unit INTEGER NOT NULL, name TEXT NOT NULL,
    file TEXT NOT NULL, meta TEXT NOT NULL, created REAL NOT NULL,
    PRIMARY KEY (kind, layer, unit, name));
"""


@dataclass(frozen=True)
class TopEntry:
    """One top-k entry of a unit."""

    rank: int
    image_id: int
    path: str
    value: float
    x: int  # column of the maximum in the layer's map; -1 for layers without space
    y: int


@dataclass(frozen=True)
class UnitExample:
    """One of a unit's top dataset images, ready to show: the entry, the view and its max patch."""

    rank: int
    image_id: int
    path: str  # the source image
    value: float
    x: int
    y: int
    image: Image.Image  # the image as the network saw it
    patch: Image.Image  # the receptive-field crop around the maximum (the whole view without space)

    @property
    def caption(self) -> str:
        return Path(self.path).name


@dataclass(frozen=True)
class Artifact:
    """A picture attached to a unit by some command (facets, renders, atlas tiles)."""

    kind: str
    layer: str
    unit: int
    name: str
    file: Path
    meta: dict


class Store(SQLiteStore):
    """An open unit store. Use :meth:`open` or :meth:`create`; close it (or use ``with``)."""

    INDEX = INDEX
    SCHEMA = _SCHEMA
    TIMEOUT = 30.0
    FORMAT_KEY = "version"
    FORMAT = STORE_VERSION
    FORMAT_LABEL = "format version"

    def __init__(self, path: Path, conn):
        super().__init__(path, conn)
        self._rf: dict[str, ReceptiveField] = {}
        self._paths: list[str] | None = None

    # ------------------------------------------------------------ opening

    @classmethod
    def open(cls, path: str | os.PathLike) -> "Store":
        """Open an existing store for reading (and for adding artifacts)."""
        p = Path(path)
        hint = " (it is a folder without a store.sqlite)" if p.is_dir() else ""
        return cls._open_existing(
            p, f"no neuronscope store at {p}{hint}; create one with `neuronscope topk MODEL --images DIR --store {p}`"
        )

    @classmethod
    def create(
        cls,
        path: str | os.PathLike,
        *,
        model: str,
        image_folder: str | os.PathLike | None,
        images: Iterable[str | os.PathLike],
        size: int,
        crop_fraction: float = 0.875,
        extra: dict | None = None,
    ) -> "Store":
        """A new store for ``images`` (the order fixes the image ids)."""
        p = Path(path)
        if cls.exists(p):
            raise NeuronscopeError(f"a store already exists at {p}; open it, or choose another path")
        if p.exists() and (not p.is_dir() or any(p.iterdir())):
            raise NeuronscopeError(f"{p} exists and is not an empty folder; choose another store path")
        p.mkdir(parents=True, exist_ok=True)
        folder = Path(image_folder).resolve() if image_folder is not None else None
        rows = []
        for i, img in enumerate(images):
            ip = Path(img).resolve()
            rel = str(ip.relative_to(folder)) if folder is not None and ip.is_relative_to(folder) else str(ip)
            rows.append((i, rel))
        if not rows:
            raise NeuronscopeError("a store needs at least one image")
        meta = {
            "version": STORE_VERSION,
            "model": model,
            "image_folder": str(folder) if folder is not None else None,
            "n_images": len(rows),
            "size": int(size),
            "crop_fraction": float(crop_fraction),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            **(extra or {}),
        }
        cls._create_index(p, meta, lambda conn: conn.executemany("INSERT INTO images (id, path) VALUES (?, ?)", rows))
        return cls(p, cls._connect(p))

    # ------------------------------------------------------------ metadata

    @property
    def meta(self) -> dict:
        """model, image_folder, n_images, size, crop_fraction, created, version, ..."""
        return self._read_meta()

    def image_paths(self) -> list[str]:
        """Absolute source path of every image, by id."""
        if self._paths is None:
            folder = self.meta.get("image_folder")
            rows = self._q("SELECT id, path FROM images ORDER BY id")
            self._paths = [str(Path(folder) / p) if folder and not os.path.isabs(p) else p for _, p in rows]
        return self._paths

    def failed_images(self) -> list[tuple[str, str]]:
        """(path, reason) for images that could not be read."""
        paths = self.image_paths()
        return [(paths[i], r) for i, r in self._q("SELECT id, failed FROM images WHERE failed IS NOT NULL ORDER BY id")]

    # ------------------------------------------------------------ layers and progress

    def layers(self) -> list[str]:
        """Layers with top-k results (complete or in progress), in the order they were added."""
        return [r[0] for r in self._q("SELECT name FROM layers ORDER BY rowid")]

    def _layer_row(self, layer: str) -> tuple:
        rows = self._q("SELECT units, k, rf, images_done FROM layers WHERE name = ?", (layer,))
        if not rows:
            from ..errors import closest

            have = self.layers()
            hits = closest(layer, have)
            raise NeuronscopeError(
                f"store {self.path} has no layer {layer!r}; it has: {', '.join(have) or 'none'}"
                + (f" (did you mean {hits[0]}?)" if hits else "")
            )
        return rows[0]

    def units(self, layer: str) -> int:
        return int(self._layer_row(layer)[0])

    def k(self, layer: str) -> int:
        return int(self._layer_row(layer)[1])

    def receptive_field(self, layer: str) -> ReceptiveField:
        if layer not in self._rf:
            self._rf[layer] = ReceptiveField.from_dict(json.loads(self._layer_row(layer)[2]))
        return self._rf[layer]

    def images_done(self, layer: str) -> int:
        return int(self._layer_row(layer)[3])

    def complete(self, layer: str) -> bool:
        return self.images_done(layer) >= self.meta["n_images"]

    def shards(self, layer: str) -> list[tuple[int, int]]:
        """Image ranges [start, stop) done beyond the layer's ``images_done`` prefix (by a sharded pass)."""
        if not self._has_table("shards"):  # a store made before sharded passes
            return []
        return [(int(a), int(b)) for a, b in self._q("SELECT start, stop FROM shards WHERE layer = ? ORDER BY start",
                                                     (layer,))]

    def _has_table(self, name: str) -> bool:
        return bool(self._q("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)))

    def units_done(self, layer: str) -> list[int]:
        """Units whose top-k is final: all of them once the layer has seen every image, else none."""
        return list(range(self.units(layer))) if self.complete(layer) else []

    def progress(self) -> dict[str, tuple[int, int]]:
        """layer -> (images done, images total)."""
        n = self.meta["n_images"]
        return {name: (int(done) + sum(b - a for a, b in self.shards(name)), n)
                for name, done in self._q("SELECT name, images_done FROM layers ORDER BY rowid")}

    # ------------------------------------------------------------ reading top-k

    def entries(self, layer: str, unit: int) -> list[TopEntry]:
        """The top-k entries of one unit, best first."""
        units = self.units(layer)
        if not 0 <= unit < units:
            raise NeuronscopeError(f"unit {unit} is out of range for layer {layer!r} (valid: 0..{units - 1})")
        paths = self.image_paths()
        rows = self._q(
            "SELECT rank, image_id, value, x, y FROM topk WHERE layer = ? AND unit = ? ORDER BY rank", (layer, unit)
        )
        return [TopEntry(r, i, paths[i], v, x, y) for r, i, v, x, y in rows]

    def topk(self, layer: str, unit: int) -> list[tuple[str, float, tuple[int, int]]]:
        """(image path, value, (x, y) of the maximum in the layer's map), best first."""
        return [(e.path, e.value, (e.x, e.y)) for e in self.entries(layer, unit)]

    def view(self, image_id: int) -> Image.Image:
        """Image ``image_id`` as the network saw it (the stored copy, else re-read from the source)."""
        f = self.path / "views" / f"{image_id:06d}.png"
        if f.is_file():
            return Image.open(f).convert("RGB")
        paths = self.image_paths()
        if not 0 <= image_id < len(paths):
            raise NeuronscopeError(f"image id {image_id} is out of range (valid: 0..{len(paths) - 1})")
        m = self.meta
        return center_crop_resize(load_image(paths[image_id]), m["size"], m["crop_fraction"])

    def max_patch(self, layer: str, unit: int, i: int) -> Image.Image:
        """The receptive-field crop around the maximum of entry ``i`` (0 = best) of a unit."""
        entries = self.entries(layer, unit)
        if not 0 <= i < len(entries):
            raise NeuronscopeError(
                f"unit {unit} of {layer!r} has {len(entries)} top-k entries; valid i: 0..{len(entries) - 1}"
            )
        e = entries[i]
        return self.receptive_field(layer).crop(self.view(e.image_id), e.x, e.y)

    def examples(self, layer: str, unit: int, k: int = 9) -> list[UnitExample]:
        """The unit's best ``k`` images with the view and the max patch of each, best first.

        What there is so far: a layer still being filled gives its current top-k.
        """
        rf = self.receptive_field(layer)
        out = []
        for e in self.entries(layer, unit)[: max(0, int(k))]:
            view = self.view(e.image_id)
            out.append(UnitExample(e.rank, e.image_id, e.path, e.value, e.x, e.y, view, rf.crop(view, e.x, e.y)))
        return out

    def running(self, layer: str) -> RunningTopK:
        """The layer's state as a :class:`RunningTopK` (for resuming, or for array access)."""
        units, k = self.units(layer), self.k(layer)
        rows = self._q("SELECT unit, rank, image_id, value, x, y FROM topk WHERE layer = ?", (layer,))
        return RunningTopK.from_rows(units, k, rows)

    # ------------------------------------------------------------ writing top-k

    @contextmanager
    def writer(self) -> Iterator["Store"]:
        """Hold the store's write lock (one top-k writer at a time)."""
        fd = lock_exclusive(self.path, f"store {self.path} is being written by another process; wait for it to finish")
        try:
            yield self
        finally:
            os.close(fd)

    def add_layer(self, layer: str, units: int, k: int, rf: ReceptiveField) -> None:
        with self._transaction() as c:
            c.execute(
                "INSERT INTO layers (name, units, k, rf, images_done, updated) VALUES (?, ?, ?, ?, 0, ?)",
                (layer, units, k, dumps_finite(rf.to_dict(), f"the receptive field of {layer}"), time.time()),
            )
        self._rf[layer] = rf

    def has_view(self, image_id: int) -> bool:
        return (self.path / "views" / f"{image_id:06d}.png").is_file()

    def put_view(self, image_id: int, x: torch.Tensor | Image.Image | bytes) -> None:
        """Keep the network's view of an image (a tensor, a picture or its PNG bytes; written atomically)."""
        atomic_write_bytes(self.path / "views" / f"{image_id:06d}.png", x if isinstance(x, bytes) else png_bytes(x))

    def checkpoint(
        self, states: dict[str, RunningTopK], images_done: dict[str, int], failed: Iterable[tuple[int, str]] = (),
        shards: dict[str, list[tuple[int, int]]] | None = None,
    ) -> None:
        """Replace the top-k of these layers and their progress (prefix, and ``shards`` done beyond it), in one transaction."""
        if shards is not None and not self._has_table("shards"):
            with self._transaction() as c:
                c.execute(_SHARDS)
        with self._transaction() as c:
            for layer, state in states.items():
                c.execute("DELETE FROM topk WHERE layer = ?", (layer,))
                c.executemany(
                    "INSERT INTO topk (layer, unit, rank, image_id, value, x, y) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    ((layer, *row) for row in state.rows()),
                )
                c.execute(
                    "UPDATE layers SET images_done = ?, updated = ? WHERE name = ?",
                    (int(images_done[layer]), time.time(), layer),
                )
                if shards is not None and layer in shards:
                    c.execute("DELETE FROM shards WHERE layer = ?", (layer,))
                    c.executemany("INSERT INTO shards (layer, start, stop) VALUES (?, ?, ?)",
                                  [(layer, int(a), int(b)) for a, b in shards[layer]])
            c.executemany("UPDATE images SET failed = ? WHERE id = ?", [(r, i) for i, r in failed])

    def prune_views(self) -> int:
        """Delete stored views no top-k entry refers to any more; the number deleted."""
        keep = {r[0] for r in self._q("SELECT DISTINCT image_id FROM topk")}
        n = 0
        for f in (self.path / "views").glob("*.png"):
            if f.stem.isdigit() and int(f.stem) not in keep:
                f.unlink(missing_ok=True)
                n += 1
        return n

    # ------------------------------------------------------------ artifacts

    def put_artifact(
        self, kind: str, layer: str, unit: int, name: str, image: Image.Image | torch.Tensor, meta: dict | None = None
    ) -> Artifact:
        """Attach a picture (and JSON metadata) to a unit, replacing one of the same name."""
        for part, label in ((kind, "kind"), (name, "name")):
            if not part or "/" in part or part.startswith("."):
                raise NeuronscopeError(f"artifact {label} {part!r} must be a non-empty name without '/'")
        rel = Path("artifacts") / kind / layer / str(int(unit)) / f"{name}.png"
        img = tensor_to_pil(image) if isinstance(image, torch.Tensor) else image
        atomic_write_bytes(self.path / rel, png_bytes(img))
        with self._transaction() as c:
            c.execute(
                "INSERT OR REPLACE INTO artifacts VALUES (?, ?, ?, ?, ?, ?, ?)",
                (kind, layer, int(unit), name, str(rel), dumps_finite(meta or {}, f"the {kind} record of {layer}:{unit}"), time.time()),
            )
        return Artifact(kind, layer, int(unit), name, self.path / rel, meta or {})

    def artifacts(self, kind: str | None = None, layer: str | None = None, unit: int | None = None) -> list[Artifact]:
        """Attached pictures, filtered by kind, layer and unit, oldest first."""
        sql, args = "SELECT kind, layer, unit, name, file, meta FROM artifacts WHERE 1=1", []
        for col, val in (("kind", kind), ("layer", layer), ("unit", unit)):
            if val is not None:
                sql += f" AND {col} = ?"
                args.append(val)
        rows = self._q(sql + " ORDER BY created, rowid", tuple(args))
        return [Artifact(k, l, u, n, self.path / f, json.loads(m)) for k, l, u, n, f, m in rows]

    def artifact_image(self, artifact: Artifact) -> Image.Image:
        return Image.open(artifact.file).convert("RGB")
