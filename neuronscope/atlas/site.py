"""The static atlas website: an index of layers, a page per layer, a page per unit.

Plain HTML and one CSS file with relative links only, so the folder works from
``file://`` and from any static server, offline (no CDN, no fetch, no build
step). Pictures are the store's own files (``store/units/...``); dataset max
patches and attached pictures are copied into the site. Every page is written
atomically, so a site being rebuilt is never half a page.

    SITE/index.html                 layers, progress, settings, how things are computed
    SITE/layers/<layer>.html        every unit of a layer as a thumbnail
    SITE/units/<layer>/<unit>.html  everything known about one unit
    SITE/examples/<layer>/<unit>/   top-k max patches (JPEG)
    SITE/attached/<layer>/<unit>/   pictures other commands attached (facets)
    SITE/atlas.css, SITE/manifest.json
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from ..images import atomic_write_bytes, atomic_write_json, atomic_write_text, png_bytes
from ..templating import render_template, template_text
from .sources import DissectionLabels, TopkSource
from .store import AtlasStore, UnitRecord, safe_name

CLASS_METHODS = {
    "linear": "exact: the path from this layer to the logits is linear (global mean pool, then the classifier), "
              "so this is the classifier weight of the unit, the same for every input",
    "gradient": "gradient attribution: d logit / d (mean of this channel), averaged over {inputs} reference "
                "input(s) at {size} px ({source}); local and first-order, not a causal claim",
    "class": "this unit is a class logit",
}


@dataclass
class SiteInputs:
    """What the site shows besides the store's renders (each optional)."""

    topk: TopkSource | None = None
    dissection: DissectionLabels | None = None
    labels: Sequence[str] | None = None  # class names of the model
    examples_k: int = 9


def _rel(path: Path, start: Path) -> str:
    return Path(os.path.relpath(path, start)).as_posix()


def _ranges(units: Sequence[int]) -> str:
    """[0, 1, 2, 5, 7, 8] -> '0-2, 5, 7-8'."""
    out, start, prev = [], None, None
    for u in list(units) + [None]:
        if u is not None and prev is not None and u == prev + 1:
            prev = u
            continue
        if start is not None:
            out.append(f"{start}-{prev}" if prev != start else f"{start}")
        start = prev = u
    return ", ".join(out)


def class_name(labels: Sequence[str] | None, k: int) -> str:
    if labels and 0 <= k < len(labels):
        return labels[k].split(",")[0]
    return f"class {k}"


class SiteBuilder:
    """Writes the site for the store in ``site`` (its ``store/`` subfolder)."""

    def __init__(self, site: str | os.PathLike, store: AtlasStore, inputs: SiteInputs | None = None):
        self.site = Path(site)
        self.store = store
        self.inputs = inputs or SiteInputs()
        self.manifest = store.manifest

    # ------------------------------------------------------------ paths

    def layer_page(self, layer: str) -> Path:
        return self.site / "layers" / f"{safe_name(layer)}.html"

    def unit_page(self, layer: str, unit: int) -> Path:
        return self.site / "units" / safe_name(layer) / f"{int(unit):05d}.html"

    # ------------------------------------------------------------ build

    def build(self, *, should_stop: Callable[[], bool] | None = None, progress: bool = False) -> Path:
        """Write every page; returns the index path."""
        self.site.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.site / "atlas.css", template_text("atlas/atlas.css"))
        atomic_write_json(self.site / "manifest.json", {**self.manifest, "runs": self.store.runs()})
        layers = self.store.layers()
        records = {layer: {r.unit: r for r in self.store.units(layer)} for layer in layers}
        total = sum(len(r) for r in records.values())
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=total, desc="site", unit="page", leave=False, dynamic_ncols=True)
        try:
            for layer in layers:
                recs = records[layer]
                classes = self.store.classes(layer)
                units = sorted(recs)
                for i, unit in enumerate(units):
                    if should_stop is not None and should_stop():
                        raise KeyboardInterrupt
                    prev_u = units[i - 1] if i > 0 else None
                    next_u = units[i + 1] if i + 1 < len(units) else None
                    self._write_unit(layer, recs[unit], classes, prev_u, next_u)
                    if bar is not None:
                        bar.update(1)
                self._write_layer(layer, recs, classes)
        finally:
            if bar is not None:
                bar.close()
        self._prune(layers, records)
        return self._write_index(layers, records)

    def _prune(self, layers: list[str], records: dict[str, dict[int, UnitRecord]]) -> None:
        """Remove pages of units and layers the store no longer has (after --force)."""
        keep = {self.layer_page(l) for l in layers} | {self.unit_page(l, u) for l in layers for u in records[l]}
        for folder in (self.site / "layers", self.site / "units"):
            if folder.is_dir():
                for f in folder.rglob("*.html"):
                    if f not in keep:
                        f.unlink(missing_ok=True)

    # ------------------------------------------------------------ pieces

    def _picture(self, file: Path, page: Path, alt: str) -> dict:
        return {"src": _rel(file, page.parent), "alt": alt}

    def _top_class(self, classes, unit: int) -> str:
        if classes is None:
            return ""
        method, data = classes
        top = data.get("top", {}).get(str(unit))
        if not top:
            return ""
        return class_name(self.inputs.labels, top[0][0])

    def _caption(self, layer: str, unit: int, classes) -> dict:
        d = self.inputs.dissection.get(layer, unit) if self.inputs.dissection else None
        linear = classes is not None and classes[0] == "linear"
        return {"unit": unit, "label": d.label if d is not None and d.label else None,
                "top_class": self._top_class(classes, unit) if linear else None}

    def _write(self, page: Path, template: str, title: str, depth: int, keys: bool = False, **context) -> None:
        atomic_write_text(page, render_template(f"atlas/{template}", title=title, depth=depth, keys=keys,
                                                model=self.manifest.get("model"), **context))

    def _write_layer(self, layer: str, recs: dict[int, UnitRecord], classes) -> None:
        page = self.layer_page(layer)
        channels = self.store.channels(layer)
        cells = [{"link": _rel(self.unit_page(layer, unit), page.parent), "caption": self._caption(layer, unit, classes),
                  "picture": self._picture(recs[unit].file, page, f"{layer} unit {unit}")} for unit in sorted(recs)]
        self._write(page, "layer.html", layer, 1, layer=layer, cells=cells, channels=channels,
                    missing=_ranges(sorted(set(range(channels)) - set(recs))),
                    shape="×".join(str(s) for s in self.store.shape(layer)), settings=self._settings_text())

    def _settings_text(self) -> str:
        m = self.manifest
        div = f", {m['diversity']} diversity images per unit" if m.get("diversity") else ""
        return f"preset {m.get('preset')}, {m.get('size')} px, {m.get('steps')} steps, seed {m.get('seed')}{div}"

    def _write_unit(self, layer: str, r: UnitRecord, classes, prev_u: int | None, next_u: int | None) -> None:
        page = self.unit_page(layer, r.unit)
        facts = [("objective", f"mean of channel {r.unit} of {layer}" if layer != "logits" else f"logit of class {r.unit}"),
                 ("activation on the image", f"{r.value:.4g}")]
        best = self.inputs.topk.best_value(layer, r.unit) if self.inputs.topk else None
        if best is not None and best > 0:
            facts.append(("top dataset image (its spatial maximum, not the mean)", f"{best:.4g}"))
        d = self.inputs.dissection.get(layer, r.unit) if self.inputs.dissection else None
        if d is not None:
            facts.append(("dissection label", d.text))
        elif self.inputs.dissection is not None:
            facts.append(("dissection label", "no report for this layer" if not self.inputs.dissection.has(layer) else "(none)"))
        facts += [("render", self._settings_text()), ("time", f"{r.seconds:.2f} s (its share of a {r.batch_rows}-row optimization)"),
                  ("made by", f"{r.worker}, run {r.run}, {time.strftime('%Y-%m-%d %H:%M', time.localtime(r.created))}")]
        self._write(
            page, "unit.html", f"{layer} unit {r.unit}", 2, keys=True, layer=layer, unit=r.unit, prev_u=prev_u, next_u=next_u,
            layer_link=_rel(self.layer_page(layer), page.parent), facts=facts,
            picture=self._picture(r.file, page, f"visualization of {layer} unit {r.unit}"),
            diversity=[(self._picture(f, page, f"diversity image {i}"), v) for i, (f, v) in enumerate(r.diversity or [])],
            examples=self._examples(layer, r.unit, page), attached=self._attached(layer, r.unit, page),
            classes=self._classes(layer, r.unit, classes),
        )

    def _examples(self, layer: str, unit: int, page: Path) -> dict:
        src = self.inputs.topk
        if src is None:
            return {"figures": [], "note": "no top-k store: run the atlas with --images DIR (or --topk-store) to add "
                                           "each unit's top images"}
        exs = src.examples(layer, unit, self.inputs.examples_k)
        if not exs:
            why = "the top-k pass has not finished this layer" if src.has(layer) else "the top-k store has no results for this layer"
            return {"figures": [], "note": why}
        figs = []
        for e in exs:
            f = self.site / "examples" / safe_name(layer) / f"{unit:05d}" / f"{e.rank:02d}-{e.image_id}.jpg"
            if not f.is_file():
                atomic_write_bytes(f, png_bytes(e.patch.convert("RGB"), "JPEG", quality=88))
            figs.append((self._picture(f, page, f"top {e.rank + 1} patch"), f"#{e.rank + 1} {e.value:.3g} · {Path(e.path).name}"))
        return {"figures": figs, "note": ""}

    def _attached(self, layer: str, unit: int, page: Path) -> list:
        src = self.inputs.topk
        if src is None:
            return []
        figs = []
        for a in src.attached(layer, unit):
            dest = self.site / "attached" / safe_name(layer) / f"{unit:05d}" / f"{safe_name(a.kind)}-{safe_name(a.name)}{a.file.suffix}"
            if not dest.is_file():
                atomic_write_bytes(dest, a.file.read_bytes())
            value = a.meta.get("value")
            cap = f"{a.kind} {a.name}" + (f" · {float(value):.3g}" if isinstance(value, (int, float)) else "")
            figs.append((self._picture(dest, page, f"{a.kind} {a.name}"), cap))
        return figs

    def _classes(self, layer: str, unit: int, classes) -> dict:
        if layer == "logits":
            return {"kind": "class", "name": class_name(self.inputs.labels, unit)}
        if classes is None:
            return {"kind": "note", "note": "not computed for this layer (the atlas was built with --classes 0, or the "
                                            "layer has no single tensor output)"}
        method, data = classes
        if method == "none":
            return {"kind": "note", "note": f"not computable: {data.get('reason', '')}"}
        top, bottom = data["top"].get(str(unit), []), data["bottom"].get(str(unit), [])
        scale = max([abs(v) for _, v in top + bottom] + [1e-12])

        def rows(items):
            return [(class_name(self.inputs.labels, k), v, int(120 * abs(v) / scale)) for k, v in items]

        how = CLASS_METHODS.get(method, method).format(inputs=data.get("inputs"), size=data.get("size"),
                                                        source=data.get("source", "reference inputs"))
        return {"kind": "table", "how": how, "top": rows(top), "bottom": rows(bottom)}

    def _write_index(self, layers: list[str], records: dict[str, dict[int, UnitRecord]]) -> Path:
        page = self.site / "index.html"
        shown = []
        for layer in layers:
            recs = records[layer]
            strip = [(_rel(self.unit_page(layer, u), page.parent), self._picture(recs[u].file, page, f"{layer} unit {u}"))
                     for u in sorted(recs)[:10]]
            shown.append({"name": layer, "link": _rel(self.layer_page(layer), page.parent), "rendered": len(recs),
                          "channels": self.store.channels(layer), "strip": strip})
        extras = []
        if self.inputs.topk is not None:
            extras.append(f"dataset examples from the top-k store {self.inputs.topk.path}")
        if self.inputs.dissection is not None:
            extras.append(f"dissection labels from {self.inputs.dissection.folder}")
        self._write(page, "index.html", f"atlas of {self.manifest.get('model')}", 0, layers=shown, m=self.manifest,
                    done=sum(len(r) for r in records.values()), total=sum(self.store.channels(l) for l in layers),
                    settings=self._settings_text(), extras=extras)
        return page
