"""Network Dissection reports: one self-contained HTML page and one CSV per layer.

``OUT/index.html`` links the layers. For a layer L (file-safe name S):
``OUT/S.html`` lists units sorted by IoU, each with its label, category, IoU,
detector flag and a strip of its top images dimmed outside the unit's mask
(0.2 + 0.8·mask, as in NetDissect) with the label concept's outline in yellow;
``OUT/S/unit-0005.jpg`` are those strips (plain files next to the page, no
CDN, no scripts); ``OUT/S.csv`` has one row per unit; ``OUT/S.json`` the
settings and summary.
"""

from __future__ import annotations

import csv
import io
import re
from collections import Counter
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm.auto import tqdm

from ..images import atomic_write_bytes, atomic_write_json, atomic_write_text
from ..taps import tap
from ..templating import render_template
from .dataset import SegmentationDataset
from .iou import LayerDissection, UnitLabel, unit_mask

OUTLINE = (255, 220, 0)


def safe_name(layer: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", layer) or "layer"


def _outline(region: torch.Tensor) -> torch.Tensor:
    """Boundary pixels of a boolean (H, W) region."""
    r = region.float()[None, None]
    eroded = -F.max_pool2d(-r, 3, stride=1, padding=1)
    return (r - eroded)[0, 0] > 0


def render_strips(
    model,
    dataset: SegmentationDataset,
    result: LayerDissection,
    *,
    size: int,
    thumb: int = 112,
    batch_size: int = 16,
    progress: bool = True,
) -> list[np.ndarray]:
    """Per unit, an (thumb, K·(thumb+2), 3) uint8 strip of its top images with the unit mask overlaid."""
    C, K = result.top_images.shape
    wanted = sorted({int(i) for i in result.top_images.flatten().tolist() if i >= 0})
    slot = {i: j for j, i in enumerate(wanted)}
    thumbs = torch.zeros((len(wanted), 3, thumb, thumb), dtype=torch.uint8)
    acts = None
    labels: list[torch.Tensor | None] = [None] * len(wanted)
    dev = model.device
    with torch.inference_mode(), tap(model, [result.layer], stop_early=True) as taps:
        for start in tqdm(range(0, len(wanted), batch_size), desc="report images", disable=not progress, leave=False):
            chunk = wanted[start : start + batch_size]
            x = torch.stack([dataset.image_tensor(i, size) for i in chunk])
            taps.run(x.to(dev))
            a = taps[result.layer].float().cpu()
            if acts is None:
                acts = torch.zeros((len(wanted), *a.shape[1:]), dtype=torch.float16)
            acts[start : start + len(chunk)] = a.half()
            small = F.interpolate(x, size=(thumb, thumb), mode="bilinear", align_corners=False, antialias=True)
            thumbs[start : start + len(chunk)] = (small.clamp(0, 1) * 255 + 0.5).to(torch.uint8)
            for j, i in enumerate(chunk):
                labels[start + j] = dataset.label_map(i, thumb)
    concept_ids = [c.id for c in result.concepts]
    unit_labels = result.labels()
    strips = []
    gap = 2
    for k in range(C):
        strip = np.full((thumb, K * (thumb + gap), 3), 255, dtype=np.uint8)
        label = unit_labels[k].concept
        for r in range(K):
            i = int(result.top_images[k, r])
            if i < 0:
                continue
            s = slot[i]
            a = acts[s, k].float()[None, None]
            up = F.interpolate(a, size=(thumb, thumb), mode="bilinear", align_corners=False)[0]
            mask = unit_mask(up[None], result.thresholds[k : k + 1], result.saturated[k : k + 1])[0, 0]
            img = thumbs[s].float() / 255 * (0.2 + 0.8 * mask.float())
            pic = (img.permute(1, 2, 0).clamp(0, 1) * 255 + 0.5).to(torch.uint8).numpy()
            if label is not None and labels[s] is not None and label.id in concept_ids:
                edge = _outline(labels[s] == label.id).numpy()
                pic[edge] = OUTLINE
            strip[:, r * (thumb + gap) : r * (thumb + gap) + thumb] = pic
        strips.append(strip)
    return strips


def _jpeg(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="JPEG", quality=88)
    return buf.getvalue()




def _bars(title: str, counts: Counter, scale_px: int = 240) -> dict:
    """A bar chart for the template: the 20 most common items, widths relative to the largest."""
    top = max(counts.values(), default=1)
    return {"title": title, "rows": [(str(k), v, max(2, round(scale_px * v / top))) for k, v in counts.most_common(20)]}


def write_layer_report(
    out_dir: Path,
    model_name: str,
    dataset: SegmentationDataset,
    result: LayerDissection,
    strips: list[np.ndarray] | None,
    *,
    runtime_s: float | None = None,
) -> dict:
    """Write S.html, S.csv, S.json and the strips of one layer; returns its summary."""
    name = safe_name(result.layer)
    ranked = result.ranked()
    cats = list(dict.fromkeys(c.category for c in result.concepts))

    if strips is not None:
        for k, strip in enumerate(strips):
            atomic_write_bytes(out_dir / name / f"unit-{k:04d}.jpg", _jpeg(strip))

    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["unit", "label", "category", "iou", "detector", "threshold", "rank_error"]
               + [f"{g}-label" for g in cats] + [f"{g}-iou" for g in cats])
    for u in ranked:
        w.writerow(
            [u.unit, u.concept.name if u.concept else "", u.concept.category if u.concept else "", f"{u.iou:.5f}",
             int(u.detector), f"{u.threshold:.6g}", f"{float(result.rank_error[u.unit]):.2e}"]
            + [u.per_category[g][0].name if u.per_category[g][0] else "" for g in cats]
            + [f"{u.per_category[g][1]:.5f}" for g in cats]
        )
    atomic_write_text(out_dir / f"{name}.csv", buf.getvalue())

    detectors = [u for u in ranked if u.detector]
    per_cat = Counter(u.concept.category for u in detectors)
    per_concept = Counter(u.concept.name for u in detectors)
    summary = {
        "model": model_name,
        "layer": result.layer,
        "units": result.units,
        "detectors": len(detectors),
        "unique_concepts": len(per_concept),
        "detectors_per_category": dict(per_cat),
        "detectors_per_concept": dict(per_concept.most_common()),
        "dataset": str(dataset.root),
        "map_size": list(result.map_size),
        "max_rank_error": float(result.rank_error.max()) if result.rank_error.numel() else 0.0,
        "runtime_s": runtime_s,
        **result.settings,
        "top_units": [
            {"unit": u.unit, "label": u.concept.name if u.concept else None, "iou": round(u.iou, 5)} for u in ranked[:20]
        ],
    }
    atomic_write_json(out_dir / f"{name}.json", summary)

    page = render_template(
        "dissect_layer.html", model_name=model_name, result=result, ranked=ranked, detectors=len(detectors),
        settings=result.settings, dataset_root=str(dataset.root), max_rank_error=summary["max_rank_error"],
        categories=len(cats), runtime_s=runtime_s, name=name, strips=strips is not None,
        bars=[_bars("detectors per category", per_cat), _bars("detectors per concept", per_concept)],
    )
    atomic_write_text(out_dir / f"{name}.html", page)
    return summary


def write_index(out_dir: Path, model_name: str, summaries: list[dict]) -> Path:
    layers = [{**s, "page": f"{safe_name(s['layer'])}.html"} for s in summaries]
    return atomic_write_text(out_dir / "index.html", render_template("dissect_index.html", model_name=model_name, layers=layers))


def unit_label_text(u: UnitLabel) -> str:
    return f"unit {u.unit}: {u.concept.name if u.concept else '-'} IoU {u.iou:.3f}{' (detector)' if u.detector else ''}"
