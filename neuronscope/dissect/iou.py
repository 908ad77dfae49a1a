"""Network Dissection's numbers (Bau et al. 2017).

For each unit k of a layer:

1. T_k, the top ``quantile`` (0.005) activation of k over all positions of all
   images, from a streaming quantile sketch (no activations are stored;
   :class:`~neuronscope.stats.StreamingQuantile`).
2. Per image, the unit mask M_k = [bilinear-upsampled A_k > T_k] at label
   resolution.
3. IoU_{k,c} = Σ|M_k ∩ L_c| / Σ|M_k ∪ L_c| over the dataset, the unit's area
   counted only in images annotated for c.
4. The unit's label is argmax_c IoU (also per category); it is a detector when
   that IoU exceeds ``iou_threshold`` (0.04).

Two passes over the data: thresholds (and the top images per unit, ranked by
the spatial maximum of the unit, as NetDissect-Lite does; a
:class:`~neuronscope.stats.RunningTopK`), then IoU. Several
layers are dissected in the same passes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..errors import NeuronscopeError
from ..stats import RunningTopK, StreamingQuantile, spatial_max
from ..taps import resolve, tap
from .dataset import Concept, SegmentationDataset

QUANTILE = 0.005
IOU_THRESHOLD = 0.04
LABEL_SIZE = 112
_CHUNK = 8_000_000  # upsampled unit x pixel elements processed at once


@dataclass
class UnitLabel:
    """A unit's best concept overall and per category."""

    unit: int
    concept: Concept | None
    iou: float
    detector: bool
    threshold: float
    per_category: dict[str, tuple[Concept | None, float]] = field(default_factory=dict)


@dataclass
class LayerDissection:
    """The dissection of one layer."""

    layer: str
    concepts: list[Concept]
    thresholds: torch.Tensor  # (C,)
    intersection: torch.Tensor  # (C, N) float64
    union: torch.Tensor  # (C, N) float64
    top_images: torch.Tensor  # (C, K) dataset indexes, -1 where fewer images
    top_scores: torch.Tensor  # (C, K) spatial max of the unit
    rank_error: torch.Tensor  # (C,) bound on the threshold's rank error / n (δ = 1e-3)
    saturated: torch.Tensor  # (C,) bool: T_k is the unit's maximum (e.g. ReLU6 at 6), masks use >=
    map_size: tuple[int, int]
    quantile: float = QUANTILE
    iou_threshold: float = IOU_THRESHOLD
    settings: dict = field(default_factory=dict)

    @property
    def iou(self) -> torch.Tensor:
        return torch.where(self.union > 0, self.intersection / self.union.clamp_min(1e-12), torch.zeros_like(self.union))

    @property
    def units(self) -> int:
        return self.thresholds.numel()

    def labels(self) -> list[UnitLabel]:
        """One label per unit, in unit order."""
        iou = self.iou
        cats = list(dict.fromkeys(c.category for c in self.concepts))
        cat_cols = {g: torch.tensor([i for i, c in enumerate(self.concepts) if c.category == g]) for g in cats}
        best_val, best_col = iou.max(1)
        out = []
        for k in range(self.units):
            per = {}
            for g, cols in cat_cols.items():
                v, j = iou[k, cols].max(0)
                per[g] = (self.concepts[int(cols[j])] if v > 0 else None, float(v))
            v = float(best_val[k])
            out.append(
                UnitLabel(
                    unit=k,
                    concept=self.concepts[int(best_col[k])] if v > 0 else None,
                    iou=v,
                    detector=v > self.iou_threshold,
                    threshold=float(self.thresholds[k]),
                    per_category=per,
                )
            )
        return out

    def ranked(self) -> list[UnitLabel]:
        """Units sorted by IoU, highest first."""
        return sorted(self.labels(), key=lambda u: (-u.iou, u.unit))


def unit_mask(up: torch.Tensor, thresholds: torch.Tensor, saturated: torch.Tensor) -> torch.Tensor:
    """[A > T] per unit along dim 1, or [A >= T] for saturated units (whose top values tie at T)."""
    shape = (1, -1) + (1,) * (up.dim() - 2)
    t = thresholds.view(shape).to(up.device)
    return (up > t) | (saturated.view(shape).to(up.device) & (up >= t))


def _batches(dataset: SegmentationDataset, size: int, batch_size: int, indexes: Sequence[int] | None = None,
             label_size: int | None = None) -> Iterator[tuple[list[int], torch.Tensor, list]]:
    idx = list(range(len(dataset))) if indexes is None else list(indexes)
    for start in range(0, len(idx), batch_size):
        chunk = idx[start : start + batch_size]
        x = torch.stack([dataset.image_tensor(i, size) for i in chunk])
        labels = [dataset.label_map(i, label_size) for i in chunk] if label_size else []
        yield chunk, x, labels


def _check_layers(model, layers: Sequence[str]) -> list[str]:
    layers = list(dict.fromkeys(layers))
    if not layers:
        raise NeuronscopeError("give at least one layer to dissect, e.g. --layer blocks.4")
    for name in layers:
        if resolve(model, name).path in ("input", "logits"):
            raise NeuronscopeError(f"layer {name!r} has no units with spatial maps to dissect; choose a conv layer")
    return layers


@dataclass
class ThresholdStats:
    """Pass 1 of one layer over some images: the activation sketch, the top images, the map size."""

    sketch: StreamingQuantile
    top: RunningTopK
    map_size: tuple[int, int]

    def merge(self, other: "ThresholdStats") -> "ThresholdStats":
        self.sketch.merge(other.sketch)
        self.top.merge(other.top)
        return self

    def state_dict(self) -> dict:
        return {"sketch": self.sketch.state_dict(), "top": self.top.state_dict(), "map_size": list(self.map_size)}

    @classmethod
    def from_state_dict(cls, state: dict, device="cpu") -> "ThresholdStats":
        return cls(StreamingQuantile.from_state_dict(state["sketch"], device=device),
                   RunningTopK.from_state_dict(state["top"]), tuple(state["map_size"]))


def _spatial(name: str, a: torch.Tensor) -> torch.Tensor:
    if a.dim() != 4:
        raise NeuronscopeError(
            f"layer {name!r} outputs shape {tuple(a.shape)}; dissection needs a spatial (B, C, H, W) layer"
        )
    return a


def threshold_pass(model, dataset: SegmentationDataset, layers: Sequence[str], indexes: Sequence[int], *,
                   size: int, batch_size: int, top: int, sketch_k: int, seed: int = 0,
                   progress: bool = False) -> dict[str, ThresholdStats]:
    """Pass 1 over the samples ``indexes``: per layer a quantile sketch of all positions and the top images."""
    dev = model.device
    out: dict[str, ThresholdStats] = {}
    bar = tqdm(total=len(indexes), desc="dissect 1/2 thresholds", unit="img", disable=not progress, leave=False)
    with torch.inference_mode(), tap(model, layers, stop_early=True) as taps:
        for chunk, x, _ in _batches(dataset, size, batch_size, indexes):
            taps.run(x.to(dev))
            for name in layers:
                a = _spatial(name, taps[name])
                C = a.shape[1]
                if name not in out:
                    out[name] = ThresholdStats(StreamingQuantile(C, k=sketch_k, seed=seed, device=dev),
                                               RunningTopK(C, top), tuple(a.shape[-2:]))
                out[name].sketch.update(a.transpose(0, 1).reshape(C, -1).float())
                out[name].top.update(spatial_max(a, chunk))
            bar.update(len(chunk))
    bar.close()
    return out


def iou_pass(model, dataset: SegmentationDataset, layers: Sequence[str], indexes: Sequence[int],
             thresholds: dict[str, torch.Tensor], saturated: dict[str, torch.Tensor], *, size: int, label_size: int,
             batch_size: int, progress: bool = False) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Pass 2 over the samples ``indexes``: per layer the (units, concepts) intersection and union counts.

    The counts are sums of pixel counts (integers held exactly in float64), so
    the counts of disjoint parts of the data add up to those of the whole.
    """
    dev = model.device
    N = len(dataset.concepts)
    inter = {name: torch.zeros((t.numel(), N), dtype=torch.float64, device=dev) for name, t in thresholds.items()}
    union = {name: torch.zeros_like(inter[name]) for name in layers}
    thresholds = {name: t.to(dev) for name, t in thresholds.items()}
    saturated = {name: t.to(dev) for name, t in saturated.items()}
    pixel_cols = dataset.pixel_concepts.to(dev)
    label_cols = dataset.label_concepts.to(dev)
    P = label_size * label_size
    bar = tqdm(total=len(indexes), desc="dissect 2/2 IoU", unit="img", disable=not progress, leave=False)
    with torch.inference_mode(), tap(model, layers, stop_early=True) as taps:
        for chunk, x, label_maps in _batches(dataset, size, batch_size, indexes, label_size=label_size):
            taps.run(x.to(dev))
            for name in layers:
                a = _spatial(name, taps[name]).float()
                C = a.shape[1]
                step = max(1, _CHUNK // P)
                for b, i in enumerate(chunk):
                    lab = label_maps[b]
                    sample = dataset.samples[i]
                    ann = torch.zeros(N, dtype=torch.bool, device=dev)
                    if lab is not None:
                        ann |= pixel_cols
                    if sample.labels:
                        ann |= label_cols
                    if lab is not None:
                        ids = lab.flatten().to(dev)
                        present = torch.unique(ids)
                        present = present[present != 0]
                        onehot = (ids.view(-1, 1) == present.view(1, -1)).float()  # (P, n)
                        cols = dataset.columns_of(present.cpu()).to(dev)
                        area_c = onehot.sum(0).double()
                    for u0 in range(0, C, step):
                        up = F.interpolate(a[b : b + 1, u0 : u0 + step], size=(label_size, label_size),
                                           mode="bilinear", align_corners=False)
                        m = unit_mask(up, thresholds[name][u0 : u0 + step], saturated[name][u0 : u0 + step])
                        m = m.view(-1, P)  # (c, P)
                        area = m.sum(1).double()
                        I, U = inter[name][u0 : u0 + step], union[name][u0 : u0 + step]
                        U[:, ann] += area.view(-1, 1)
                        if lab is not None and present.numel():
                            hit = (m.float() @ onehot).double()
                            I[:, cols] += hit
                            U[:, cols] += area_c.view(1, -1) - hit
                        if sample.labels:
                            lcols = dataset.columns_of(torch.tensor(sample.labels)).to(dev)
                            I[:, lcols] += area.view(-1, 1)
                            U[:, lcols] += P - area.view(-1, 1)
            bar.update(len(chunk))
    bar.close()
    return {name: (inter[name], union[name]) for name in layers}


def thresholds_of(stats: dict[str, ThresholdStats], quantile: float):
    """Per layer: T_k, its rank-error bound, and which units saturate (from pass 1's statistics)."""
    thresholds = {name: s.sketch.quantile(1.0 - quantile) for name, s in stats.items()}
    rank_error = {name: s.sketch.rank_error(1.0 - quantile) for name, s in stats.items()}
    # A unit whose top values tie at its maximum (ReLU6 saturating at 6 on more than the top
    # fraction of positions) would get an empty mask from A > T; for it the mask is A >= T,
    # unless the unit is (nearly) constant: a dead unit (median = max) keeps A > T, i.e. no mask.
    saturated = {
        name: (thresholds[name] >= s.top.values[:, 0].to(thresholds[name].device))
        & (s.sketch.quantile(0.5) < thresholds[name])
        for name, s in stats.items()
    }
    return thresholds, rank_error, saturated


def dissect(
    model,
    dataset: SegmentationDataset,
    layers: Sequence[str],
    *,
    size: int | None = None,
    label_size: int = LABEL_SIZE,
    batch_size: int = 16,
    quantile: float = QUANTILE,
    iou_threshold: float = IOU_THRESHOLD,
    top: int = 10,
    sketch_k: int = 1024,
    progress: bool = True,
    backend: str = "local",
    workers: int | None = None,
    ray_address: str | None = None,
    threads: int | None = None,
    shard_size: int | None = None,
    send_images: bool = False,
) -> dict[str, LayerDissection]:
    """Dissect ``layers`` of ``model`` on ``dataset``; one :class:`LayerDissection` per layer.

    ``backend="ray"`` runs both passes sharded over Ray workers (:mod:`.sharded`):
    the merged sketches are within their stated bound, the top images and,
    given the same thresholds, the IoU counts are exactly the local ones.
    """
    layers = _check_layers(model, layers)
    if not 0 < quantile < 0.5:
        raise NeuronscopeError(f"quantile must be in (0, 0.5) (the top fraction of activations), got {quantile}")
    if not 0 <= iou_threshold < 1:
        raise NeuronscopeError(f"iou_threshold must be in [0, 1), got {iou_threshold}")
    if batch_size < 1 or top < 1 or label_size < 4:
        raise NeuronscopeError("batch_size and top must be >= 1, label_size >= 4")
    if backend not in ("local", "ray"):
        raise NeuronscopeError(f"unknown backend {backend!r}; valid: local, ray")
    if backend == "local" and (workers not in (None, 1) or ray_address or send_images):
        raise NeuronscopeError("--workers, --ray-address and --send-images are for --backend ray")
    size = size or model.input_size
    n = len(dataset)
    top = min(top, n)
    every = list(range(n))
    settings = dict(size=size, label_size=label_size, batch_size=batch_size, top=top, sketch_k=sketch_k)

    if backend == "ray":
        from .sharded import ShardedDissection

        with ShardedDissection(model, dataset, layers, settings, workers=workers or 2, address=ray_address,
                               threads=threads or 1, shard_size=shard_size, send_images=send_images,
                               progress=progress) as sharded:
            stats = sharded.threshold_pass()
            thresholds, rank_error, saturated = thresholds_of(stats, quantile)
            counts = sharded.iou_pass(thresholds, saturated)
    else:
        stats = threshold_pass(model, dataset, layers, every, size=size, batch_size=batch_size, top=top,
                               sketch_k=sketch_k, progress=progress)
        thresholds, rank_error, saturated = thresholds_of(stats, quantile)
        counts = iou_pass(model, dataset, layers, every, thresholds, saturated, size=size, label_size=label_size,
                          batch_size=batch_size, progress=progress)

    out = {}
    for name in layers:
        out[name] = LayerDissection(
            layer=name,
            concepts=dataset.concepts,
            thresholds=thresholds[name].cpu(),
            intersection=counts[name][0].cpu(),
            union=counts[name][1].cpu(),
            top_images=stats[name].top.ids,
            top_scores=stats[name].top.values,
            rank_error=rank_error[name].cpu(),
            saturated=saturated[name].cpu(),
            map_size=stats[name].map_size,
            quantile=quantile,
            iou_threshold=iou_threshold,
            settings={
                "size": size,
                "label_size": label_size,
                "images": n,
                "quantile": quantile,
                "iou_threshold": iou_threshold,
                "sketch_k": sketch_k,
                "sketch_exact": stats[name].sketch.exact,
                "backend": backend,
            },
        )
    return out
