"""What other neuronscope commands know about a unit, read for the atlas's pages.

- :class:`TopkSource`: the issue-4 unit store (``neuronscope topk``): a unit's top-k
  dataset images with max patches, and pictures attached to units (facets).
  A unit's images come from the store's ``examples(layer, unit, k)``, the
  same call the browser toolbox uses; the atlas shows complete layers only.
- :class:`DissectionLabels`: a Network Dissection report folder (issue 7), one
  ``<layer>.csv`` per layer with columns unit, label, category, iou, detector.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from ..data.store import Store, UnitExample
from ..errors import NeuronscopeError
from ..images import pil_to_tensor
from .store import safe_name


@dataclass
class Attached:
    kind: str
    name: str
    file: Path
    meta: dict


class TopkSource:
    """Read-only view of a top-k store for the atlas (None-safe: missing layers give nothing)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.store = Store.open(self.path)

    def close(self) -> None:
        self.store.close()

    @property
    def model(self) -> str | None:
        return self.store.meta.get("model")

    def has(self, layer: str) -> bool:
        return layer in self.store.layers()

    def complete(self, layer: str) -> bool:
        return self.has(layer) and self.store.complete(layer)

    def examples(self, layer: str, unit: int, k: int = 9) -> list[UnitExample]:
        """The store's examples of a unit of a complete layer (the site shows final results only)."""
        if not self.complete(layer) or not 0 <= unit < self.store.units(layer):
            return []
        return self.store.examples(layer, unit, k)

    def best_value(self, layer: str, unit: int) -> float | None:
        if not self.complete(layer):
            return None
        entries = self.store.entries(layer, unit)
        return entries[0].value if entries else None

    def reference_views(self, layer: str, n: int) -> torch.Tensor | None:
        """Up to ``n`` distinct dataset images that are some unit's best, as the network saw them."""
        if not self.complete(layer) or n < 1:
            return None
        ids: list[int] = []
        for unit in range(self.store.units(layer)):
            entries = self.store.entries(layer, unit)
            if entries and entries[0].image_id not in ids:
                ids.append(entries[0].image_id)
            if len(ids) >= n:
                break
        if not ids:
            return None
        return torch.stack([pil_to_tensor(self.store.view(i)) for i in ids])

    def attached(self, layer: str, unit: int) -> list[Attached]:
        """Pictures other commands attached to the unit (e.g. ``facet``), except the atlas's own."""
        try:
            arts = self.store.artifacts(layer=layer, unit=unit)
        except Exception:  # an older store without artifacts
            return []
        return [Attached(a.kind, a.name, a.file, a.meta) for a in arts if a.file.is_file() and a.kind != "atlas"]


def open_topk(path: str | os.PathLike | None, model_name: str) -> TopkSource | None:
    """The top-k store at ``path`` for ``model_name``, None when there is none; another model's is refused."""
    if path is None:
        return None
    if not Store.exists(path):
        return None
    src = TopkSource(path)
    if src.model not in (None, model_name):
        src.close()
        raise NeuronscopeError(f"the top-k store {path} was made for model {src.model!r}, not {model_name!r}")
    return src


@dataclass(frozen=True)
class DissectionLabel:
    label: str
    category: str
    iou: float
    detector: bool

    @property
    def text(self) -> str:
        tag = "detector" if self.detector else "below threshold"
        return f"{self.label or '(none)'} ({self.category}, IoU {self.iou:.3f}, {tag})"


class DissectionLabels:
    """Unit labels from a Network Dissection report folder (one CSV per layer)."""

    COLUMNS = ("unit", "label", "category", "iou", "detector")

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise NeuronscopeError(f"dissection report folder {self.folder} does not exist")
        self._cache: dict[str, dict[int, DissectionLabel]] = {}

    def csv_path(self, layer: str) -> Path:
        return self.folder / f"{safe_name(layer)}.csv"

    def layer(self, layer: str) -> dict[int, DissectionLabel]:
        if layer in self._cache:
            return self._cache[layer]
        path = self.csv_path(layer)
        labels: dict[int, DissectionLabel] = {}
        if path.is_file():
            with open(path, newline="", encoding="utf-8") as f:
                reader = csv.DictReader(f)
                missing = [c for c in self.COLUMNS if c not in (reader.fieldnames or [])]
                if missing:
                    raise NeuronscopeError(
                        f"dissection report {path} lacks the columns {', '.join(missing)}; "
                        f"expected {', '.join(self.COLUMNS)} (written by `neuronscope dissect`)"
                    )
                for row in reader:
                    try:
                        labels[int(row["unit"])] = DissectionLabel(
                            row["label"], row["category"], float(row["iou"] or 0), row["detector"].strip() in ("1", "True", "true")
                        )
                    except ValueError as e:
                        raise NeuronscopeError(f"bad row in dissection report {path}: {row} ({e})") from None
        self._cache[layer] = labels
        return labels

    def get(self, layer: str, unit: int) -> DissectionLabel | None:
        return self.layer(layer).get(int(unit))

    def has(self, layer: str) -> bool:
        return self.csv_path(layer).is_file()
