"""The real images a unit's facets are found among.

* A class unit: the views of the images of that class. Folders rarely carry
  labels, so a view belongs to the class when the model puts the class in its
  top-5, or when a label list (the photo set's ``manifest.json``) gives its
  image that class.
* A hidden unit: the top-N views by the unit's spatial maximum; conv units use
  the receptive-field crop at the maximum, resized to the input size.

Photos are few per class, so every image contributes ``views`` views: its
evaluation crop plus random crops and flips (reproducible from ``seed``).
Selection runs in two passes (a running top-k of the scores first, then only
the chosen views are rebuilt), so memory holds N images, not the whole folder.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch

from ..errors import NeuronscopeError
from ..images import list_images, pil_to_tensor, tensor_to_pil
from ..models.adapter import Model
from ..receptive_field import receptive_field
from ..data.folder import image_views
from ..stats import RunningTopK, UnitScores, spatial_max
from ..taps import tap
from ..units import Unit
from .progress import VIEW_WEIGHT, Overall, phase_bar

#: a class unit's scan makes the extra views (crops, flips) only of the photos whose evaluation crop ranks the
#: class within this many classes (or that a manifest labels with it). Measured against a full scan of the 525
#: offline photos (8 views each) over the 202 classes with at least 30 views: it keeps 99.85 % of the views the
#: full scan selects (the worst class 90 %; tabby, goldfish, hammer, palace and daisy all), looking closer at
#: 81 photos on average (at most 200), so the scan takes a quarter of the forwards; 50 kept 99.64 %.
CANDIDATE_RANK = 100


@dataclass
class Examples:
    """N example views of real images, with the unit's value on each."""

    images: torch.Tensor  # (N, 3, S, S) uint8
    values: np.ndarray  # (N,) the unit's objective on each example as stored
    photo: np.ndarray  # (N,) index into ``paths``
    view: np.ndarray  # (N,) view number (0 = the evaluation crop)
    paths: list[str]
    how: str  # how they were chosen, for the sheet

    def __len__(self) -> int:
        return len(self.values)

    def float(self, idx=None) -> torch.Tensor:
        x = self.images if idx is None else self.images[torch.as_tensor(idx, dtype=torch.long)]
        return x.float() / 255.0


def labels_from_manifest(folder: str | os.PathLike) -> dict[str, int]:
    """``{absolute image path: ImageNet class}`` from a ``manifest.json`` in or above ``folder``.

    The photo set's manifest lists ``file`` (relative to the manifest) and
    ``imagenet_class``; entries without a class are left out. Empty when there is
    no manifest.
    """
    folder = Path(folder).resolve()
    for root in (folder, folder.parent):
        f = root / "manifest.json"
        if f.is_file():
            try:
                entries = json.loads(f.read_text())
            except (OSError, ValueError) as e:
                raise NeuronscopeError(f"cannot read {f}: {e}") from e
            if isinstance(entries, dict):
                entries = entries.get("images", entries.get("entries", []))
            out = {}
            for e in entries:
                if isinstance(e, dict) and e.get("imagenet_class") is not None and e.get("file"):
                    out[str((root / e["file"]).resolve())] = int(e["imagenet_class"])
            return out
    return {}


def _batches_of_views(paths, size, views, seed, batch_size, photos=None, first=0):
    """(photo ids, view ids, tensor) chunks of about ``batch_size`` views, photo by photo: views
    ``first`` .. ``views`` - 1 of the photos ``photos`` (indices into ``paths``; default all)."""
    buf, pid, vid = [], [], []
    for i in range(len(paths)) if photos is None else photos:
        try:
            vs = image_views(paths[i], size, views, seed=seed)[first:]
        except NeuronscopeError:
            continue
        buf += vs
        pid += [i] * len(vs)
        vid += list(range(first, first + len(vs)))
        if len(buf) >= batch_size:
            yield pid, vid, torch.stack(buf)
            buf, pid, vid = [], [], []
    if buf:
        yield pid, vid, torch.stack(buf)


def collect_examples(
    model: Model,
    unit: Unit,
    images: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    views: int = 8,
    n_max: int | None = None,
    size: int | None = None,
    labels: Mapping[str, int] | None = None,
    seed: int = 0,
    batch_size: int = 16,
    progress: bool = True,
) -> Examples:
    """The example views for ``unit`` from an image folder (or a list of files)."""
    from tqdm.auto import tqdm

    if views < 1:
        raise NeuronscopeError(f"views must be at least 1, got {views}")
    paths = [str(Path(p).resolve()) for p in (list_images(images) if isinstance(images, (str, os.PathLike)) else images)]
    if not paths:
        raise NeuronscopeError("no images given")
    size = int(size or model.input_size)
    dev = model.device
    spatial = not unit.is_class
    layers = ["logits"] if unit.is_class else [unit.layer]

    # first pass: a running top-k of the unit's score over the views that qualify (views are
    # numbered photo by photo, view id = photo * views + view, so ties go to the earlier view)
    keep = n_max or 1000
    top = RunningTopK(1, keep)
    wanted = {p for p, k in (labels or {}).items() if k == unit.index} if unit.is_class else set()
    labelled_photos: set[int] = set()

    def scan(batches, bar):
        """Score the views of ``batches`` into ``top``; returns the views seen, and the logits of class units."""
        seen, logits = 0, []
        for pid, vid, x in batches:
            taps.run(x.to(dev))
            a = taps[layers[0]].float().cpu()
            ids = torch.tensor(pid, dtype=torch.int64) * views + torch.tensor(vid, dtype=torch.int64)
            if unit.is_class:
                logits.append((pid, a))
                chosen = (a.topk(min(5, a.shape[1]), dim=1).indices == unit.index).any(1)
                if wanted:
                    labelled = torch.tensor([paths[i] in wanted for i in pid])
                    labelled_photos.update(i for i, hit in zip(pid, labelled.tolist()) if hit)
                    chosen |= labelled
                scores = UnitScores.without_place(ids[chosen], a[chosen, unit.index : unit.index + 1])
            elif a.dim() == 4:
                scores = spatial_max(a[:, unit.index : unit.index + 1], ids)
            else:
                v = a[:, unit.index] if a.dim() == 2 else a[:, :, unit.index].max(1).values
                scores = UnitScores.without_place(ids, v.view(-1, 1))
            top.update(scores)
            seen += len(pid)
            bar.update(len(set(pid)))  # a photo's views never span two batches
        bar.close()
        return seen, logits

    two_stage = unit.is_class and views > 1
    candidates: list[int] = []
    with torch.inference_mode(), tap(model, layers, stop_early=True) as taps:
        if not two_stage:
            bar = phase_bar(progress, len(paths), "examples", weight=views, unit="img")
            n_views, _ = scan(_batches_of_views(paths, size, views, seed, batch_size), bar)
        else:
            # a class unit: the evaluation crop of every photo first; the other views only of the photos
            # that are labelled with the class or whose crop ranks it within the top CANDIDATE_RANK classes
            bar = phase_bar(progress, len(paths), "examples", weight=1, unit="img")
            n_views, logits = scan(_batches_of_views(paths, size, 1, seed, batch_size), bar)
            for pid, a in logits:
                rank = (a > a[:, unit.index : unit.index + 1]).sum(1)
                candidates += [i for i, r in zip(pid, rank.tolist()) if r < CANDIDATE_RANK or paths[i] in wanted]
            if isinstance(progress, Overall):
                progress.plan("more views", len(candidates) * (views - 1) * VIEW_WEIGHT)
            bar = phase_bar(progress, len(candidates), "more views", weight=views - 1, unit="img")
            more, _ = scan(_batches_of_views(paths, size, views, seed, batch_size, photos=candidates, first=1), bar)
            n_views += more
    if not n_views:
        raise NeuronscopeError("none of the images could be read")

    if unit.is_class:
        how = f"views where the model ranks {unit.label} in its top-5"
        if labelled_photos:
            how = f"views of the {len(labelled_photos)} images labelled {unit.label} and " + how
        if two_stage:
            how += (f" (more views only of the {len(candidates)} images whose evaluation crop ranks it "
                    f"in the top {CANDIDATE_RANK}" + (" or that are labelled so)" if wanted else ")"))
        if top.ids[0, 0] < 0:
            raise NeuronscopeError(
                f"no image in the folder is of {unit.label} (none is labelled so, and the model never "
                "ranks it in its top-5); give a folder with images of that class"
            )
        n_max = keep
    else:
        n_max = n_max or min(1000, max(100, n_views // 100))
        how = f"top {min(n_max, n_views)} of {n_views} views by the unit's spatial maximum"
    best = top.entries(0)[:n_max]  # (view id, score, x, y), best first
    pids_a = np.array([i // views for i, _, _, _ in best])
    vids_a = np.array([i % views for i, _, _, _ in best])
    xs_a = np.array([x for _, _, x, _ in best])
    ys_a = np.array([y for _, _, _, y in best])
    how = f"{how}; {len(best)} views of {len(set(pids_a.tolist()))} images ({views} views per image)"

    # second pass: rebuild only the chosen views (conv units: the receptive-field crop at the max)
    rf = receptive_field(model, unit.layer, size) if spatial and unit.layer != "logits" else None
    chosen: dict[int, list[int]] = {}
    for j, pid in enumerate(pids_a.tolist()):
        chosen.setdefault(pid, []).append(j)
    rebuilt: dict[int, torch.Tensor] = {}
    for pid, js in chosen.items():
        vs = image_views(paths[pid], size, views, seed=seed)
        for j in js:
            v = vs[vids_a[j]]
            if rf is not None and rf.spatial and xs_a[j] >= 0:
                v = pil_to_tensor(rf.crop(tensor_to_pil(v), int(xs_a[j]), int(ys_a[j])).resize((size, size)))
            rebuilt[j] = (v * 255).round().to(torch.uint8)
    imgs = torch.stack([rebuilt[j] for j in range(len(best))])
    values = unit_values(model, unit, imgs.float() / 255.0, batch_size=batch_size)
    return Examples(imgs, values, pids_a, vids_a, paths, how)


def unit_values(model: Model, unit: Unit, x: torch.Tensor, *, batch_size: int = 16, log_prob: bool = False) -> np.ndarray:
    """The unit's value (its objective) on each [0, 1] image of ``x``, without gradients."""
    out = []
    with torch.inference_mode(), tap(model, [unit.layer], stop_early=True) as taps:
        for i in range(0, len(x), batch_size):
            taps.run(x[i : i + batch_size].to(model.device))
            out.append(unit.value(taps.values, log_prob=log_prob).float().cpu())
    return torch.cat(out).numpy() if out else np.zeros(0, dtype=np.float32)
