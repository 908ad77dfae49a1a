"""Network Dissection (Bau et al. 2017): label each unit with the concept its top activations segment.

- :mod:`.dataset`: the simple dataset format (images/, masks/, concepts.csv, index.csv) and its validation;
- :mod:`.iou`: thresholds by streaming quantile, upsampled unit masks, IoU with every concept;
- :mod:`.sharded`: both passes sharded over Ray workers;
- :mod:`.report`: the HTML page and CSV per layer;
- :mod:`.synthetic`: small synthetic datasets (shapes on noise; colour regions of photos).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

from ..images import prepare_output_dir
from .dataset import Concept, Sample, SegmentationDataset, load_dataset
from .iou import IOU_THRESHOLD, LABEL_SIZE, QUANTILE, LayerDissection, UnitLabel, dissect
from .report import render_strips, write_index, write_layer_report

__all__ = [
    "Concept", "IOU_THRESHOLD", "LABEL_SIZE", "LayerDissection", "QUANTILE", "Sample", "SegmentationDataset",
    "UnitLabel", "dissect", "load_dataset", "run_dissection",
]


def run_dissection(
    model,
    data: str | Path | SegmentationDataset,
    layers: Sequence[str],
    out: str | Path,
    *,
    overwrite: bool = False,
    size: int | None = None,
    label_size: int = LABEL_SIZE,
    batch_size: int = 16,
    quantile: float = QUANTILE,
    iou_threshold: float = IOU_THRESHOLD,
    top: int = 10,
    thumb: int = 112,
    limit: int | None = None,
    images: bool = True,
    progress: bool = True,
    **scale,
) -> dict[str, dict]:
    """Validate the data, dissect ``layers`` and write the reports into ``out``; summaries by layer.

    ``scale`` goes to :func:`dissect`: ``backend="ray"``, ``workers``, ``ray_address``, ``threads``,
    ``shard_size``, ``send_images``.
    """
    start = time.perf_counter()
    ds = data if isinstance(data, SegmentationDataset) else load_dataset(data, limit=limit, progress=progress)
    out_dir = prepare_output_dir(out, overwrite=overwrite)
    size = size or model.input_size
    results = dissect(model, ds, layers, size=size, label_size=label_size, batch_size=batch_size,
                      quantile=quantile, iou_threshold=iou_threshold, top=top, progress=progress, **scale)
    summaries = {}
    for name, result in results.items():
        strips = render_strips(model, ds, result, size=size, thumb=thumb, batch_size=batch_size,
                               progress=progress) if images else None
        # runtime_s: seconds from the start of the run (validation included) to this layer's report
        summaries[name] = write_layer_report(out_dir, model.name, ds, result, strips,
                                             runtime_s=time.perf_counter() - start)
    write_index(out_dir, model.name, list(summaries.values()))
    return summaries
