"""Build a small colour-concept dissection dataset from real photos (nothing is committed).

    python scripts/make_dissect_demo_data.py OUT [--photos DIR] [--limit N] [--size 224]

Photos come from DIR (any folder of images), else the offline photo set
(``make photos``; built here if missing), else scikit-image's and
scikit-learn's sample photos. Each pixel is labelled with one of eleven basic
colour terms (see neuronscope/dissect/synthetic.py). Then:

    neuronscope dissect efficientnet_lite0 --layer blocks.4 --data OUT
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository's tools/ package


def sample_photos(folder: Path) -> list[Path]:
    """scikit-image / scikit-learn sample photos written to ``folder`` (always available offline)."""
    import numpy as np
    from PIL import Image

    out = []
    try:
        import skimage.data as data

        for name in ("coffee", "chelsea", "astronaut", "rocket"):
            p = folder / f"{name}.png"
            Image.fromarray(np.asarray(getattr(data, name)())).save(p)
            out.append(p)
    except Exception:  # noqa: BLE001 - optional sources
        pass
    try:
        from sklearn.datasets import load_sample_images

        for i, img in enumerate(load_sample_images().images):
            p = folder / f"sklearn{i}.png"
            Image.fromarray(img).save(p)
            out.append(p)
    except Exception:  # noqa: BLE001
        pass
    return out


def spread(items: list, limit: int) -> list:
    """At most ``limit`` items taken evenly across the (sorted, source-grouped) list."""
    if len(items) <= limit:
        return items
    step = len(items) / limit
    return [items[int(i * step)] for i in range(limit)]


def find_photos(photos: str | None, limit: int, scratch: Path) -> list[Path]:
    from neuronscope.images import list_images

    if photos:
        return spread(list_images(photos), limit)
    try:
        from tools.photoset import ensure_photoset

        found = list_images(Path(ensure_photoset()) / "images")
        if found:
            return spread(found, limit)
    except Exception as e:  # noqa: BLE001 - fall back to the sample photos
        print(f"offline photo set not available ({e}); using sample photos", file=sys.stderr)
    return sample_photos(scratch)[:limit]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", help="output dataset folder (must be new or empty)")
    ap.add_argument("--photos", default=None, help="folder of photos (default: offline photo set or samples)")
    ap.add_argument("--limit", type=int, default=200, help="at most this many photos (default 200)")
    ap.add_argument("--size", type=int, default=224, help="image side in pixels (default 224)")
    ap.add_argument("--overwrite", action="store_true")
    args = ap.parse_args(argv)
    from neuronscope.dissect.synthetic import make_colour_dataset
    from neuronscope.errors import NeuronscopeError

    try:
        with tempfile.TemporaryDirectory() as tmp:
            photos = find_photos(args.photos, args.limit, Path(tmp))
            out = make_colour_dataset(photos, args.out, args.size, overwrite=args.overwrite)
    except NeuronscopeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {len(photos)} images with colour masks to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
