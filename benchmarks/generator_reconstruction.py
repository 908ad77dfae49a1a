"""Does the shipped generator reconstruct held-out photos better than the mean image?

Held-out photos: the offline photo set's files whose name hash falls in the 10 %
the training never saw (``train.holdout_split``). For each, the centre square
x; h = E(x) (Lite0 code at 128 px); G(h) at the generator's size. Reported:

* pixel MSE of G(h) vs x at the generator's size, against the mean training
  image (the best constant image for MSE) and against x itself downsampled
  (zero, by definition) -- lower is better;
* Lite1-feature distance: 1 - cos between Lite1's pooled features (240 px,
  bilinear upsampling) of the full-resolution photo and of G(h), of the mean
  image, and of x downsampled to the generator's size (the resolution floor);
* Lite1 top-1 agreement with the photo's own Lite1 top-1;
* the code-cycle error ||E(G(h)) - h|| / ||h - mu||.

    python benchmarks/generator_reconstruction.py [--generator PATH]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

RESULTS = Path(__file__).resolve().parent / "results"


@torch.no_grad()
def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--generator", default="shipped")
    ap.add_argument("--photos", default=None, help="photo set folder (default: the offline photo set)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(RESULTS / "generator_reconstruction.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from neuronscope import load_model
    from neuronscope.generators.shipped import load_generator
    from neuronscope.generators.train import center_view, holdout_split, views_to_tensors
    from neuronscope.images import labelled_grid, list_images, load_image, save_png
    from neuronscope.data.photoset import photo_folder
    from neuronscope.taps import tap

    root = Path(args.photos) if args.photos else photo_folder()
    m0 = load_model("efficientnet_lite0", device="cpu")
    gen = load_generator(args.generator, m0.name)
    frac = gen.meta.get("config", {}).get("holdout_fraction", 0.1)
    train, held = holdout_split(list_images(root), frac)
    S = gen.image_size
    views = [center_view(load_image(p)) for p in held]
    x_full = views_to_tensors(views, 240)
    x_code = views_to_tensors(views, gen.spec.size)
    x_small = views_to_tensors(views, S)
    mean_img = torch.zeros(3, S, S)
    for i in range(0, len(train), 32):
        mean_img += views_to_tensors([center_view(load_image(p)) for p in train[i : i + 32]], S).sum(0)
    mean_img /= len(train)

    h = gen.encode(m0, x_code)
    y = gen(h)
    h2 = gen.encode(m0, y)
    cyc = ((h2 - h).norm(dim=1) / (h - gen.code_mean).norm(dim=1)).numpy()

    lite1 = load_model("efficientnet_lite1", device="cpu")

    def feats(x):
        x = F.interpolate(x, size=(240, 240), mode="bilinear", align_corners=False)
        with tap(lite1, ["pool", "logits"]) as t:
            t.run(x)
            return t["pool"], t["logits"]

    f_real, l_real = feats(x_full)
    top_real = l_real.argmax(1)

    def dist(x):
        f, l = feats(x)
        d = (1 - F.cosine_similarity(f, f_real, dim=1)).numpy()
        agree = (l.argmax(1) == top_real).float().numpy()
        return d, agree

    mse_g = ((y - x_small) ** 2).flatten(1).mean(1).numpy()
    mse_m = ((mean_img[None] - x_small) ** 2).flatten(1).mean(1).numpy()
    d_g, a_g = dist(y)
    d_m, a_m = dist(mean_img[None].expand_as(x_small).contiguous())
    d_s, a_s = dist(x_small)
    rec = {
        "generator": str(args.generator),
        "generator_step": gen.meta.get("step"),
        "n_heldout": len(held),
        "n_train": len(train),
        "image_size": S,
        "pixel_mse": {"generator": float(mse_g.mean()), "mean_image": float(mse_m.mean()),
                      "generator_better_on": float((mse_g < mse_m).mean())},
        "lite1_feature_distance": {"generator": float(d_g.mean()), "mean_image": float(d_m.mean()),
                                   "photo_at_generator_size": float(d_s.mean()),
                                   "generator_better_on": float((d_g < d_m).mean())},
        "lite1_top1_agreement": {"generator": float(a_g.mean()), "mean_image": float(a_m.mean()),
                                 "photo_at_generator_size": float(a_s.mean())},
        "code_cycle_relative_error": float(np.mean(cyc)),
        "command": " ".join(sys.argv),
    }
    Path(args.out).parent.mkdir(exist_ok=True, parents=True)
    Path(args.out).write_text(json.dumps(rec, indent=1) + "\n")
    n = min(12, len(held))
    cells = list(x_small[:n]) + list(y[:n])
    save_png(labelled_grid(cells, ["held-out"] * n + ["G(E(x))"] * n, columns=n, cell=64, caption_lines=1),
             Path(args.out).with_suffix(".png"))
    print(json.dumps(rec, indent=1))


if __name__ == "__main__":
    main()
