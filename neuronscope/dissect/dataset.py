"""The segmentation dataset format for Network Dissection, and its validation.

A dataset is a folder::

    DIR/
      images/        photos, any format neuronscope reads (JPEG, PNG, WebP, ...)
      masks/         PNG label maps: pixel value = concept id, 0 = unlabelled
      concepts.csv   id,name,category
      index.csv      image,mask[,labels]

- ``concepts.csv``: one row per concept; ``id`` an integer ≥ 1 (0 means
  unlabelled), unique; ``name`` non-empty and unique; ``category`` any word
  (color, object, part, material, scene, texture, ...).
- ``index.csv``: one row per image. ``image`` is a path under ``images/``;
  ``mask`` a path under ``masks/`` (may be empty when the row has labels);
  the optional ``labels`` column lists ids of image-level concepts (scenes,
  textures) that cover the whole image, separated by ``;``.
- A mask holds one concept id per pixel: an 8-bit or 16-bit grayscale or
  palette PNG (the pixel value or palette index is the id), or an RGB PNG with
  id = R + 256·G (Broden's convention). It must have the image's size, or the
  same aspect ratio (within 2 %): it is then resized with nearest neighbour.
- Annotation: a concept that appears in some mask is a *pixel* concept; every
  image with a mask counts as annotated for all pixel concepts. A concept named
  in some ``labels`` cell is an *image-level* concept; images with a non-empty
  ``labels`` cell count as annotated for all of them. A unit's mask area enters
  a concept's IoU union only on images annotated for that concept.

Geometry: for the network each image is resized (stretched, not cropped) to
size × size; its mask is resized with nearest neighbour to label_size ×
label_size, so both stay aligned.

Everything is checked before any network runs: missing files, unreadable or
mis-sized masks, unknown concept ids and an empty dataset all raise
:class:`NeuronscopeError` naming the file and the rule.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError
from tqdm.auto import tqdm

from ..errors import NeuronscopeError
from ..images import load_image, pil_to_tensor

ASPECT_TOLERANCE = 0.02
FORMAT_HINT = (
    "expected DIR/images/, DIR/masks/, DIR/concepts.csv (id,name,category) and DIR/index.csv "
    "(image,mask[,labels]); see docs/inversion-backprop-dissection.md"
)


@dataclass(frozen=True)
class Concept:
    id: int
    name: str
    category: str


@dataclass(frozen=True)
class Sample:
    image: Path
    mask: Path | None
    labels: tuple[int, ...] = ()


@dataclass
class SegmentationDataset:
    """A validated dataset: concepts (in file order), samples, and what is annotated where."""

    root: Path
    concepts: list[Concept]
    samples: list[Sample]
    pixel_counts: dict[int, int] = field(default_factory=dict)  # id -> labelled pixels over the dataset
    image_counts: dict[int, int] = field(default_factory=dict)  # id -> images where it occurs

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def ids(self) -> list[int]:
        return [c.id for c in self.concepts]

    @property
    def categories(self) -> list[str]:
        return list(dict.fromkeys(c.category for c in self.concepts))

    def column(self, concept_id: int) -> int:
        return self._columns[concept_id]

    def __post_init__(self):
        self._columns = {c.id: i for i, c in enumerate(self.concepts)}
        self._sorted_ids = torch.tensor(sorted(self._columns), dtype=torch.long)
        self._sorted_cols = torch.tensor([self._columns[i] for i in sorted(self._columns)], dtype=torch.long)
        self.pixel_concepts = torch.zeros(len(self.concepts), dtype=torch.bool)
        self.label_concepts = torch.zeros(len(self.concepts), dtype=torch.bool)

    def columns_of(self, ids: torch.Tensor) -> torch.Tensor:
        """Column indexes of known concept ids (a tensor of ids)."""
        pos = torch.searchsorted(self._sorted_ids, ids)
        return self._sorted_cols[pos]

    # ------------------------------------------------------------ items
    def image_tensor(self, i: int, size: int) -> torch.Tensor:
        """Image i as (3, size, size) in [0, 1], stretched to the square."""
        img = load_image(self.samples[i].image).resize((size, size), Image.BILINEAR)
        return pil_to_tensor(img)

    def label_map(self, i: int, label_size: int) -> torch.Tensor | None:
        """Mask i as (label_size, label_size) concept ids (nearest neighbour), or None."""
        s = self.samples[i]
        if s.mask is None:
            return None
        ids = torch.from_numpy(read_mask(s.mask).astype(np.int64))
        return F.interpolate(ids[None, None].float(), size=(label_size, label_size), mode="nearest")[0, 0].long()


def read_mask(path: Path) -> np.ndarray:
    """A mask PNG as an (H, W) integer array of concept ids."""
    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            if mode == "1":
                return (np.asarray(im) > 0).astype(np.int64)
            if mode in ("L", "P"):  # palette PNGs: the palette index is the id
                return np.asarray(im, dtype=np.int64)
            if mode in ("I;16", "I;16B", "I;16L", "I"):
                return np.asarray(im, dtype=np.int64)
            if mode in ("RGB", "RGBA"):
                a = np.asarray(im.convert("RGB"), dtype=np.int64)
                return a[..., 0] + 256 * a[..., 1]
    except FileNotFoundError as e:
        raise NeuronscopeError(f"mask file not found: {path}") from e
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise NeuronscopeError(f"mask {path} is not a readable PNG ({e})") from e
    raise NeuronscopeError(
        f"mask {path} has image mode {mode!r}; valid: 8/16-bit grayscale or palette (value = concept id) "
        "or RGB (id = R + 256*G)"
    )


def _image_size(path: Path) -> tuple[int, int]:
    try:
        with Image.open(path) as im:
            return im.size
    except FileNotFoundError as e:
        raise NeuronscopeError(f"image file not found: {path}") from e
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise NeuronscopeError(f"{path} is not an image neuronscope can read ({e})") from e


def _read_csv(path: Path, required: list[str]) -> list[dict[str, str]]:
    if not path.is_file():
        raise NeuronscopeError(f"missing {path.name} in {path.parent}; {FORMAT_HINT}")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header = [h.strip() for h in (reader.fieldnames or [])]
            missing = [c for c in required if c not in header]
            if missing:
                raise NeuronscopeError(
                    f"{path} lacks column(s) {', '.join(missing)}; its header is {','.join(header) or '(empty)'}; "
                    f"required: {','.join(required)}"
                )
            return [{(k or "").strip(): (v or "").strip() for k, v in row.items()} for row in reader]
    except UnicodeDecodeError as e:
        raise NeuronscopeError(f"{path} is not UTF-8 text ({e})") from e
    except csv.Error as e:
        raise NeuronscopeError(f"{path} is not valid CSV ({e})") from e


def _parse_concepts(path: Path) -> list[Concept]:
    rows = _read_csv(path, ["id", "name", "category"])
    concepts, seen_ids, seen_names = [], set(), set()
    for line, row in enumerate(rows, start=2):
        try:
            cid = int(row["id"])
        except ValueError as e:
            raise NeuronscopeError(f"{path} line {line}: id {row['id']!r} is not an integer") from e
        if cid < 1:
            raise NeuronscopeError(f"{path} line {line}: id {cid} is invalid; ids start at 1 (0 means unlabelled)")
        if cid in seen_ids:
            raise NeuronscopeError(f"{path} line {line}: id {cid} appears twice; ids must be unique")
        name, category = row["name"], row["category"] or "concept"
        if not name:
            raise NeuronscopeError(f"{path} line {line}: concept {cid} has an empty name")
        if name in seen_names:
            raise NeuronscopeError(f"{path} line {line}: name {name!r} appears twice; names must be unique")
        seen_ids.add(cid)
        seen_names.add(name)
        concepts.append(Concept(cid, name, category))
    if not concepts:
        raise NeuronscopeError(f"{path} lists no concepts; add rows id,name,category")
    return concepts


def _inside(folder: Path, rel: str, what: str, line: int, index: Path) -> Path:
    p = Path(rel)
    if p.is_absolute() or ".." in p.parts:
        raise NeuronscopeError(f"{index} line {line}: {what} path {rel!r} must be relative to {folder.name}/")
    return folder / p


def load_dataset(root: str | Path, *, limit: int | None = None, progress: bool = True) -> SegmentationDataset:
    """Read and validate a dataset folder (see the module docstring for the format)."""
    root = Path(root)
    if not root.is_dir():
        raise NeuronscopeError(f"dataset folder not found: {root}; {FORMAT_HINT}")
    images_dir, masks_dir = root / "images", root / "masks"
    if not images_dir.is_dir():
        raise NeuronscopeError(f"missing folder {images_dir}; {FORMAT_HINT}")
    concepts = _parse_concepts(root / "concepts.csv")
    known = {c.id for c in concepts}
    index = root / "index.csv"
    rows = _read_csv(index, ["image", "mask"])
    if not rows:
        raise NeuronscopeError(f"the dataset is empty: {index} has no rows; add rows image,mask")
    if limit is not None:
        if limit < 1:
            raise NeuronscopeError(f"limit must be >= 1, got {limit}")
        rows = rows[:limit]

    samples: list[Sample] = []
    pixel_counts: dict[int, int] = {}
    image_counts: dict[int, int] = {}
    pixel_ids: set[int] = set()
    label_ids: set[int] = set()
    for line, row in enumerate(tqdm(rows, desc="checking dataset", disable=not progress, leave=False), start=2):
        if not row["image"]:
            raise NeuronscopeError(f"{index} line {line}: empty image path")
        image = _inside(images_dir, row["image"], "image", line, index)
        if not image.is_file():
            raise NeuronscopeError(f"{index} line {line}: image file not found: {image}")
        labels: tuple[int, ...] = ()
        if row.get("labels"):
            try:
                labels = tuple(int(t) for t in row["labels"].replace(",", ";").split(";") if t.strip())
            except ValueError as e:
                raise NeuronscopeError(
                    f"{index} line {line}: labels {row['labels']!r} must be concept ids separated by ';'"
                ) from e
            unknown = [i for i in labels if i not in known]
            if unknown:
                raise NeuronscopeError(
                    f"{index} line {line}: unknown concept id(s) {unknown} in labels; concepts.csv defines "
                    f"{_id_summary(known)}"
                )
            label_ids.update(labels)
            for i in set(labels):
                image_counts[i] = image_counts.get(i, 0) + 1
        mask = None
        if row["mask"]:
            if not masks_dir.is_dir():
                raise NeuronscopeError(f"missing folder {masks_dir}; {FORMAT_HINT}")
            mask = _inside(masks_dir, row["mask"], "mask", line, index)
            if not mask.is_file():
                raise NeuronscopeError(f"{index} line {line}: mask file not found: {mask}")
            iw, ih = _image_size(image)
            ids = read_mask(mask)
            mh, mw = ids.shape
            if (mw, mh) != (iw, ih):
                sw, sh = iw / mw, ih / mh
                if abs(sw - sh) / max(sw, sh) > ASPECT_TOLERANCE:
                    raise NeuronscopeError(
                        f"mask size mismatch: {mask} is {mw}x{mh} but its image {image} is {iw}x{ih}; "
                        "a mask must have its image's size (or the same aspect ratio, then it is resized)"
                    )
            values, counts = np.unique(ids, return_counts=True)
            bad = [int(v) for v in values if v != 0 and int(v) not in known]
            if bad:
                raise NeuronscopeError(
                    f"unknown concept id(s) {bad[:10]} in mask {mask}; concepts.csv defines {_id_summary(known)} "
                    "(0 = unlabelled)"
                )
            for v, n in zip(values.tolist(), counts.tolist()):
                if v:
                    pixel_counts[v] = pixel_counts.get(v, 0) + n
                    image_counts[v] = image_counts.get(v, 0) + 1
                    pixel_ids.add(v)
        elif not labels:
            raise NeuronscopeError(f"{index} line {line}: row for {row['image']} has neither a mask nor labels")
        samples.append(Sample(image, mask, labels))

    both = sorted(pixel_ids & label_ids)
    if both:
        raise NeuronscopeError(
            f"concept id(s) {both[:10]} occur both in masks and in labels columns; a concept is either "
            "pixel-level (masks) or image-level (labels), not both"
        )
    ds = SegmentationDataset(root, concepts, samples, pixel_counts, image_counts)
    for cid in pixel_ids:
        ds.pixel_concepts[ds.column(cid)] = True
    for cid in label_ids:
        ds.label_concepts[ds.column(cid)] = True
    if not (ds.pixel_concepts.any() or ds.label_concepts.any()):
        raise NeuronscopeError(f"no concept of concepts.csv occurs in any mask or labels of {root}: nothing to dissect")
    return ds


def _id_summary(ids: set[int]) -> str:
    s = sorted(ids)
    return f"{len(s)} ids: " + (", ".join(map(str, s)) if len(s) <= 12 else f"{s[0]}..{s[-1]} (not all in between)")
