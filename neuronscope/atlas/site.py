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

import html
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from ..images import atomic_write_bytes, atomic_write_json, atomic_write_text, png_bytes
from .sources import DissectionLabels, TopkSource
from .store import AtlasStore, UnitRecord, safe_name

CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;background:#fafafa;color:#1d1d1f}
header{background:#1d1d1f;color:#eee;padding:10px 18px}header a{color:#9cf}
main{padding:12px 18px 40px}a{color:#0645ad}
h1{font-size:20px;margin:4px 0}h2{font-size:16px;margin:22px 0 8px}
.meta{color:#555;font-size:13px;max-width:1000px}
.grid{display:flex;flex-wrap:wrap;gap:8px}
.cell{width:112px;font-size:11px;text-align:center;overflow:hidden}
.cell img{width:112px;height:112px;display:block;border-radius:3px;background:#ddd}
.cell .cap{white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.strip{display:flex;gap:4px;margin:4px 0 10px}.strip img{width:64px;height:64px;border-radius:2px}
.big{width:320px;height:320px;image-rendering:auto;border-radius:4px;background:#ddd}
.row{display:flex;gap:24px;flex-wrap:wrap;align-items:flex-start}
.pics{display:flex;flex-wrap:wrap;gap:8px}.pics figure{margin:0;width:132px;font-size:11px}
.pics img{width:132px;height:132px;object-fit:contain;background:#eee;border-radius:3px}
figcaption{overflow-wrap:anywhere}
table{border-collapse:collapse}td,th{padding:2px 8px;text-align:left;border-bottom:1px solid #e4e4e4;font-size:13px}
.bar{display:inline-block;height:9px;background:#4a8;vertical-align:middle}.bar.neg{background:#c55}
nav a{margin-right:14px}.note{color:#666;font-size:12px}
"""

KEYS_JS = ("<script>document.addEventListener('keydown',function(e){var r={ArrowLeft:'prev',ArrowRight:'next'}[e.key];"
           "var a=r&&document.querySelector('a[rel='+r+']');if(a)location.href=a.href;});</script>")

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


def _e(x) -> str:
    return html.escape(str(x), quote=True)


def _rel(path: Path, start: Path) -> str:
    return Path(os.path.relpath(path, start)).as_posix()


def _page(title: str, body: str, depth: int, *, keys: bool = False) -> str:
    up = "../" * depth
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><meta name=viewport content='width=device-width'>"
            f"<title>{_e(title)}</title><link rel=stylesheet href='{up}atlas.css'></head><body>"
            f"<header><a href='{up}index.html'>atlas</a> · {_e(title)}</header><main>{body}</main>"
            f"{KEYS_JS if keys else ''}</body></html>\n")


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
        atomic_write_text(self.site / "atlas.css", CSS)
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

    def _img(self, file: Path, page: Path, alt: str, cls: str = "", lazy: bool = True) -> str:
        c = f" class={cls}" if cls else ""
        lz = " loading=lazy" if lazy else ""
        return f"<img{c}{lz} src='{_e(_rel(file, page.parent))}' alt='{_e(alt)}'>"

    def _top_class(self, classes, unit: int) -> str:
        if classes is None:
            return ""
        method, data = classes
        top = data.get("top", {}).get(str(unit))
        if not top:
            return ""
        return class_name(self.inputs.labels, top[0][0])

    def _caption(self, layer: str, unit: int, classes) -> str:
        bits = [f"<b>{unit}</b>"]
        d = self.inputs.dissection.get(layer, unit) if self.inputs.dissection else None
        if d is not None and d.label:
            bits.append(_e(d.label))
        elif classes is not None and classes[0] == "linear":
            bits.append("→ " + _e(self._top_class(classes, unit)))
        return " ".join(bits)

    def _write_layer(self, layer: str, recs: dict[int, UnitRecord], classes) -> None:
        page = self.layer_page(layer)
        channels = self.store.channels(layer)
        cells = []
        for unit in sorted(recs):
            r = recs[unit]
            cap = f"<div class=cap>{self._caption(layer, unit, classes)}</div>"
            link = _rel(self.unit_page(layer, unit), page.parent)
            cells.append(f"<div class=cell><a href='{_e(link)}'>{self._img(r.file, page, f'{layer} unit {unit}')}</a>{cap}</div>")
        missing = _ranges(sorted(set(range(channels)) - set(recs)))
        pending = f"<p class=note>not rendered yet: units {missing}</p>" if missing else ""
        shape = "×".join(str(s) for s in self.store.shape(layer))
        body = (f"<h1>{_e(self.manifest.get('model'))} · {_e(layer)}</h1>"
                f"<p class=meta>{len(recs)} of {channels} units rendered · output {shape} per image · "
                f"{self._settings_text()}</p><div class=grid>{''.join(cells)}</div>{pending}")
        atomic_write_text(page, _page(f"{layer}", body, 1))

    def _settings_text(self) -> str:
        m = self.manifest
        div = f", {m['diversity']} diversity images per unit" if m.get("diversity") else ""
        return (f"preset {_e(m.get('preset'))}, {m.get('size')} px, {m.get('steps')} steps, seed {m.get('seed')}{div}")

    def _write_unit(self, layer: str, r: UnitRecord, classes, prev_u: int | None, next_u: int | None) -> None:
        page = self.unit_page(layer, r.unit)
        nav = [f"<a href='../../index.html'>index</a>", f"<a href='{_e(_rel(self.layer_page(layer), page.parent))}'>{_e(layer)}</a>"]
        if prev_u is not None:
            nav.append(f"<a rel=prev href='{int(prev_u):05d}.html'>← unit {prev_u}</a>")
        if next_u is not None:
            nav.append(f"<a rel=next href='{int(next_u):05d}.html'>unit {next_u} →</a>")
        parts = [f"<nav>{''.join(nav)}</nav><h1>{_e(self.manifest.get('model'))} · {_e(layer)} · unit {r.unit}</h1>"]

        # visualization + facts
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
        rows = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in facts)
        parts.append(f"<div class=row><div>{self._img(r.file, page, f'visualization of {layer} unit {r.unit}', 'big', lazy=False)}"
                     f"</div><table>{rows}</table></div>")

        if r.diversity:
            figs = "".join(f"<figure>{self._img(f, page, f'diversity image {i}')}<figcaption>{v:.4g}</figcaption></figure>"
                           for i, (f, v) in enumerate(r.diversity))
            parts.append(f"<h2>Diversity ({len(r.diversity)} renders pushed apart by a Gram-matrix diversity term)</h2>"
                         f"<div class=pics>{figs}</div>")

        parts.append(self._examples_html(layer, r.unit, page))
        parts.append(self._attached_html(layer, r.unit, page))
        parts.append(self._classes_html(layer, r.unit, classes))
        atomic_write_text(page, _page(f"{layer} unit {r.unit}", "".join(parts), 2, keys=True))

    def _examples_html(self, layer: str, unit: int, page: Path) -> str:
        src = self.inputs.topk
        if src is None:
            return ("<h2>Dataset examples</h2><p class=note>no top-k store: run the atlas with --images DIR "
                    "(or --topk-store) to add each unit's top images</p>")
        exs = src.examples(layer, unit, self.inputs.examples_k)
        if not exs:
            why = "the top-k pass has not finished this layer" if src.has(layer) else "the top-k store has no results for this layer"
            return f"<h2>Dataset examples</h2><p class=note>{why}</p>"
        figs = []
        for e in exs:
            f = self.site / "examples" / safe_name(layer) / f"{unit:05d}" / f"{e.rank:02d}-{e.image_id}.jpg"
            if not f.is_file():
                atomic_write_bytes(f, png_bytes(e.patch.convert("RGB"), "JPEG", quality=88))
            figs.append(f"<figure>{self._img(f, page, f'top {e.rank + 1} patch')}<figcaption>#{e.rank + 1} "
                        f"{e.value:.3g} · {_e(Path(e.path).name)}</figcaption></figure>")
        return (f"<h2>Dataset examples (top {len(exs)}, max patches)</h2><p class=note>the receptive field around the "
                f"unit's strongest position in each image</p><div class=pics>{''.join(figs)}</div>")

    def _attached_html(self, layer: str, unit: int, page: Path) -> str:
        src = self.inputs.topk
        if src is None:
            return ""
        arts = src.attached(layer, unit)
        if not arts:
            return ""
        figs = []
        for a in arts:
            dest = self.site / "attached" / safe_name(layer) / f"{unit:05d}" / f"{safe_name(a.kind)}-{safe_name(a.name)}{a.file.suffix}"
            if not dest.is_file():
                atomic_write_bytes(dest, a.file.read_bytes())
            value = a.meta.get("value")
            cap = f"{_e(a.kind)} {_e(a.name)}" + (f" · {float(value):.3g}" if isinstance(value, (int, float)) else "")
            figs.append(f"<figure>{self._img(dest, page, f'{a.kind} {a.name}')}<figcaption>{cap}</figcaption></figure>")
        return f"<h2>Facets and other attached pictures</h2><div class=pics>{''.join(figs)}</div>"

    def _classes_html(self, layer: str, unit: int, classes) -> str:
        if layer == "logits":
            return f"<h2>Class</h2><p>{_e(class_name(self.inputs.labels, unit))}</p>"
        if classes is None:
            return ("<h2>Classes it drives</h2><p class=note>not computed for this layer (the atlas was built with "
                    "--classes 0, or the layer has no single tensor output)</p>")
        method, data = classes
        if method == "none":
            return f"<h2>Classes it drives</h2><p class=note>not computable: {_e(data.get('reason', ''))}</p>"
        top, bottom = data["top"].get(str(unit), []), data["bottom"].get(str(unit), [])
        scale = max([abs(v) for _, v in top + bottom] + [1e-12])

        def rows(items, neg):
            return "".join(
                f"<tr><td>{_e(class_name(self.inputs.labels, k))}</td><td>{v:+.4g}</td><td><span class='bar{' neg' if neg else ''}' "
                f"style='width:{int(120 * abs(v) / scale)}px'></span></td></tr>" for k, v in items)

        how = CLASS_METHODS.get(method, method).format(inputs=data.get("inputs"), size=data.get("size"),
                                                        source=data.get("source", "reference inputs"))
        return (f"<h2>Classes it drives</h2><p class=note>{_e(how)}</p><div class=row>"
                f"<table><tr><th colspan=3>raises most</th></tr>{rows(top, False)}</table>"
                f"<table><tr><th colspan=3>lowers most</th></tr>{rows(bottom, True)}</table></div>")

    def _write_index(self, layers: list[str], records: dict[str, dict[int, UnitRecord]]) -> Path:
        page = self.site / "index.html"
        m = self.manifest
        items = []
        for layer in layers:
            recs = records[layer]
            strip = "".join(
                f"<a href='{_e(_rel(self.unit_page(layer, u), page.parent))}'>{self._img(recs[u].file, page, f'{layer} unit {u}')}</a>"
                for u in sorted(recs)[:10])
            items.append(f"<h2><a href='{_e(_rel(self.layer_page(layer), page.parent))}'>{_e(layer)}</a> "
                         f"<small>{len(recs)} of {self.store.channels(layer)} units</small></h2><div class=strip>{strip}</div>")
        done = sum(len(r) for r in records.values())
        total = sum(self.store.channels(l) for l in layers)
        extras = []
        if self.inputs.topk is not None:
            extras.append(f"dataset examples from the top-k store {_e(self.inputs.topk.path)}")
        if self.inputs.dissection is not None:
            extras.append(f"dissection labels from {_e(self.inputs.dissection.folder)}")
        meta = (f"{done} of {total} units of {len(layers)} layers rendered. Each unit's picture maximizes the mean of its "
                f"channel ({self._settings_text()}); many units share one optimization, one per batch row. "
                f"Made with neuronscope {_e(m.get('neuronscope'))}, torch {_e(m.get('torch'))}; weights "
                f"fingerprint {_e(m.get('model_fingerprint'))}. " + ("; ".join(extras) + ". " if extras else "")
                + "Settings and runs: <a href='manifest.json'>manifest.json</a>.")
        body = f"<h1>Atlas of {_e(m.get('model'))}</h1><p class=meta>{meta}</p>{''.join(items) or '<p>no layers yet</p>'}"
        atomic_write_text(page, _page(f"atlas of {m.get('model')}", body, 0))
        return page
