"""Dataset examples: streaming image folders, running top-k per unit, and the unit store.

    from neuronscope.data import run_topk, Store
    run = run_topk(model, "photos/", ["blocks.5", "blocks.10"], k=9, store="runs/lite0")
    s = Store.open("runs/lite0"); s.topk("blocks.10", 5); s.max_patch("blocks.10", 5, 0)
"""

from .folder import Batch, folder_images, image_views, stream_batches
from .scan import TopkRun, run_topk
from .store import Artifact, Store, TopEntry, UnitExample

__all__ = [
    "Artifact", "Batch", "Store", "TopEntry", "TopkRun", "UnitExample", "folder_images", "image_views", "run_topk", "stream_batches",
]
