"""Make neuronscope/optim/data/maco_magnitude.npy, MACO's natural-image magnitude spectrum.

    python scripts/make_maco_spectrum.py [PHOTOS]      # PHOTOS: the offline photo set (make photos)

The mean |rfft2| per colour channel over 4 crops (the centre 87.5 %, then 3 random ones) of every
photo in the set, at 256 x 256, stored as float16 (3 x 256 x 129).
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from neuronscope.images import list_images, load_image  # noqa: E402
from neuronscope.optim.spectrum import DATA, REFERENCE, compute_magnitude  # noqa: E402


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    root = Path(argv[0]) if argv else Path.home() / ".cache" / "neuronscope" / "photos"
    files = sorted(list_images(root / "images" if (root / "images").is_dir() else root), key=lambda p: p.name)
    if not files:
        print(f"no photos under {root}; run `make photos`", file=sys.stderr)
        return 2
    mag = compute_magnitude((load_image(f) for f in files), (REFERENCE, REFERENCE)).numpy().astype(np.float16)
    DATA.parent.mkdir(parents=True, exist_ok=True)
    tmp = DATA.with_suffix(".tmp.npy")
    np.save(tmp, mag)
    tmp.replace(DATA)
    digest = hashlib.sha256(DATA.read_bytes()).hexdigest()
    print(f"{DATA}: {mag.shape} from {len(files)} photos, sha256 {digest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
