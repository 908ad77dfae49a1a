"""Build neuronscope's offline photo set.

Usage: python scripts/build_photoset.py [OUT] [--sources skimage,sklearn,...] [--max-side 512]

OUT defaults to $NEURONSCOPE_PHOTOS or ~/.cache/neuronscope/photos.  Debian
packages are fetched with apt-get (run as root on a fresh machine so that
apt-get update can run); an existing completed set is left as it is.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from neuronscope.errors import NeuronscopeError  # noqa: E402
from tools.photoset import DEFAULT_SOURCES, build_photoset, default_photoset_dir, list_photos  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", type=Path, default=None, help="output folder")
    parser.add_argument("--sources", default=",".join(DEFAULT_SOURCES),
                        help="comma-separated: skimage, sklearn, gcompris, tuxpaint, wallpapers")
    parser.add_argument("--max-side", type=int, default=512, help="longest image side in pixels")
    args = parser.parse_args(argv)

    out = args.out or default_photoset_dir()
    start = time.perf_counter()
    try:
        root = build_photoset(out, sources=[s.strip() for s in args.sources.split(",") if s.strip()],
                              max_side=args.max_side, progress=True)
    except NeuronscopeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    photos = list_photos(root)
    counts = Counter(p["source"] for p in photos)
    size = sum(Path(p["path"]).stat().st_size for p in photos)
    for source, n in counts.items():
        print(f"{source:12s} {n:5d}")
    mapped = sum(p["imagenet_class"] is not None for p in photos)
    print(f"{'total':12s} {len(photos):5d}  ({mapped} with an ImageNet class, {size / 1e6:.1f} MB, "
          f"{time.perf_counter() - start:.0f} s)")
    print(root)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
