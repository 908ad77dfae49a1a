"""The offline photo set: real photographs assembled from registry packages.

Nobody here took these photos; they ship inside packages that a Debian machine
with ``pip`` can fetch without any other network access:

``skimage``
    scikit-image's bundled samples: chelsea, coffee, astronaut, rocket,
    motorcycle (its other samples are downloaded at run time).
``sklearn``
    scikit-learn's ``load_sample_images``: china, flower.
``gcompris``
    Debian ``gcompris-qt-data``: photos inside the Qt resource bundles
    ``/usr/share/gcompris-qt/rcc/*.rcc`` (read with :mod:`tools.rcc`).
    Only folders known to hold photographs are taken (fishes, tools,
    household objects, monuments, renewable energy, animals, musicians); the
    drawings, paintings, puzzles and icons of the other activities are left.
``tuxpaint``
    Debian ``tuxpaint-stamps-default``: photographic cut-outs with alpha.
    Folders of drawings (``cartoon``, ``symbols``, ``seasonal``, ``clothes``,
    road signs, flags) and mirrored copies (``*_mirror``) are skipped, and so
    is a stamp that :func:`looks_drawn`.  Each cut-out is centred on a square
    light-grey canvas (RGB 240, 240, 240) with a margin, so that a centre crop
    keeps it whole.
``wallpapers`` (optional, not in the default set)
    Debian ``mate-backgrounds``: its nature photographs.

Debian packages are fetched with ``apt-get download`` into a cache and read
with ``dpkg-deb --fsys-tarfile``: only the files needed are kept, in memory,
and nothing is installed or unpacked to disk.

Images under 100 px on their longer side are skipped, and a photo shipped
twice is written once.  Every image is written as an RGB JPEG (quality 92) of
at most ``max_side`` px on its longer side, and described in
``manifest.json``: file, source, package, licence and credit (per file where
the package's Debian copyright file gives them), original path, a coarse
label from the file name, the ImageNet-1k class that label clearly names
(else null), width and height.
"""

from __future__ import annotations

import fnmatch
import io
import json
import os
import re
import shutil
import subprocess
import secrets
import tarfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterable, Iterator
from urllib.parse import unquote

import numpy as np
from PIL import Image

import neuronscope.models
from neuronscope.data.photoset import MANIFEST, default_photoset_dir, list_photos, read_manifest  # noqa: F401 (list_photos: for scripts)
from neuronscope.errors import NeuronscopeError, closest

from .rcc import RccReader

DEFAULT_SOURCES = ("skimage", "sklearn", "gcompris", "tuxpaint")
ALL_SOURCES = DEFAULT_SOURCES + ("wallpapers",)
DEBIAN_PACKAGES = {
    "gcompris": "gcompris-qt-data",
    "tuxpaint": "tuxpaint-stamps-default",
    "wallpapers": "mate-backgrounds",
}
IMAGES = "images"
JPEG_QUALITY = 92
MIN_SIDE = 100  # images whose longer side is smaller are icons, not photos
BACKGROUND = (240, 240, 240)  # light neutral grey behind cut-outs
CUTOUT_FILL = 0.85  # a cut-out's longer side spans this share of its canvas
RASTER_EXTENSIONS = (".webp", ".jpg", ".jpeg", ".png")

GCOMPRIS_RCC_DIR = "usr/share/gcompris-qt/rcc/"
GCOMPRIS_PHOTO_DIRS = (  # folders under gcompris/src/activities/
    "categorization/resource/images/fishes",
    "categorization/resource/images/monuments",
    "categorization/resource/images/others",
    "categorization/resource/images/renewable",
    "categorization/resource/images/tools",
    "erase/resource",
    "explore_farm_animals/resource/animals",
    "explore_monuments/resource/*",
    "explore_world_animals/resource/animals",
    "explore_world_music/resource/music",
)
TUXPAINT_STAMPS_DIR = "usr/share/tuxpaint/stamps/"
TUXPAINT_DRAWING_DIRS = frozenset({"cartoon", "symbols", "seasonal", "clothes", "roadsigns", "flags"})
MATE_NATURE_DIR = "usr/share/backgrounds/mate/nature/"

# ImageNet synonyms that file names use in another sense (the ImageNet "mouse"
# is a computer mouse, "plane" a carpenter's plane, "bath" a bathtub ...).
POLYSEMOUS = frozenset({
    "mouse", "plane", "monitor", "screen", "iron", "jersey", "bow", "cricket", "nail",
    "bath", "anemone", "rule", "drop", "wing",
})
# Labels whose matching word names a different thing (a trophy is not a cup).
NOT_IMAGENET = frozenset({"trophy cup", "castle clinton", "wheel tractor"})


# --------------------------------------------------------------------------
# Public API


def default_cache_dir() -> Path:
    """Where downloaded ``.deb`` files are kept (in ``debs/``): ``~/.cache/neuronscope``."""
    return Path.home() / ".cache" / "neuronscope"


def ensure_photoset(dir: str | Path | None = None) -> Path:
    """The photo set at ``dir`` (default :func:`default_photoset_dir`), built
    from the default sources first if it is not there yet."""
    return build_photoset(dir if dir is not None else default_photoset_dir(), progress=False)


def build_photoset(
    out_dir: str | Path,
    *,
    sources: Iterable[str] = DEFAULT_SOURCES,
    max_side: int = 512,
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> Path:
    """Build the photo set into ``out_dir`` and return its path.

    The set is written into a temporary sibling folder that is renamed into
    place at the end, so ``out_dir`` is either absent or complete.  If it
    already holds a completed set, that set is returned as it is (its sources
    and size are not compared); if it holds anything else,
    :class:`NeuronscopeError` is raised and nothing is touched.
    """
    out = Path(out_dir).expanduser().absolute()
    sources = _check_sources(sources)
    if max_side < MIN_SIDE:
        raise NeuronscopeError(f"max_side must be at least {MIN_SIDE}, got {max_side}")
    if read_manifest(out) is not None:
        return out
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise NeuronscopeError(
            f"{out} exists and is not a photo set (no valid {MANIFEST}); "
            "give a new or empty folder (nothing was changed)"
        )
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.building-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        (tmp / IMAGES).mkdir(parents=True)
        entries = _write_images(tmp, sources, max_side, cache, progress)
        (tmp / MANIFEST).write_text(json.dumps(entries, indent=1, ensure_ascii=False) + "\n")
        if out.is_dir():
            out.rmdir()  # empty, checked above
        try:
            tmp.rename(out)
        except OSError:
            if read_manifest(out) is None:
                raise
            # another process completed the same set first: keep theirs
        return out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------
# Labels and ImageNet classes


def label_from_name(name: str) -> str | None:
    """A coarse label from a file name: ``"tajMahal2.webp"`` -> ``"taj mahal"``.

    The extension goes, camelCase is split, digits, underscores and dashes
    become spaces, and the rest is lower-cased; ``None`` if nothing is left.
    """
    stem = Path(name).stem if Path(name).suffix.lower() in RASTER_EXTENSIONS else name
    stem = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", stem)
    words = re.sub(r"[\W\d_]+", " ", stem).lower().split()
    return " ".join(words) or None


def imagenet_class_for(label_or_name: str | None) -> int | None:
    """The ImageNet-1k class index a label or file name clearly names, or ``None``.

    Word sequences of the label are compared with the class synonyms (exact,
    case-insensitive, '_'/'-' as spaces, plural 's' dropped), longest first,
    each also with its words run together (``screwDriver`` -> "screwdriver");
    the label maps only if the longest matching sequences all name one class.
    Synonyms shared by two classes, and those in :data:`POLYSEMOUS`, never match.
    """
    label = label_from_name(label_or_name) if label_or_name else None
    if not label or label in NOT_IMAGENET:
        return None
    words = _normal_phrase(label).split()
    table = _imagenet_synonyms()
    for n in range(len(words), 0, -1):
        windows = [words[i : i + n] for i in range(len(words) - n + 1)]
        phrases = {" ".join(w) for w in windows} | {"".join(w) for w in windows}
        hits = {table[p] for p in phrases if p in table}
        if hits:
            return hits.pop() if len(hits) == 1 else None
    return None


def _normal_word(word: str) -> str:
    word = word.lower()
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    return word


def _normal_phrase(text: str) -> str:
    return " ".join(_normal_word(w) for w in re.split(r"[\s_\-]+", text.strip()) if w)


@lru_cache(maxsize=1)
def _imagenet_synonyms() -> dict[str, int]:
    """Normalised synonym -> class index, for synonyms of exactly one class."""
    path = Path(neuronscope.models.__file__).parent / "imagenet_classes.txt"  # the class list the library ships
    owners: dict[str, set[int]] = {}
    for index, line in enumerate(path.read_text().splitlines()):
        for synonym in line.split(","):
            if synonym.strip():
                owners.setdefault(_normal_phrase(synonym), set()).add(index)
    return {s: next(iter(c)) for s, c in owners.items() if len(c) == 1 and s not in POLYSEMOUS}


# --------------------------------------------------------------------------
# Building


@dataclass
class Candidate:
    """An image a source offers; ``load`` returns it, or ``None`` to skip it."""

    name: str
    package: str
    licence: str
    original_path: str
    load: Callable[[], Image.Image | None]
    label: str | None
    credit: str | None = None


def _check_sources(sources: Iterable[str]) -> tuple[str, ...]:
    chosen = tuple(dict.fromkeys([sources] if isinstance(sources, str) else sources))
    for s in chosen:
        if s not in ALL_SOURCES:
            hint = closest(s, ALL_SOURCES, n=1)
            raise NeuronscopeError(
                f"unknown photo source {s!r}; valid: {', '.join(ALL_SOURCES)}"
                + (f" (did you mean {hint[0]!r}?)" if hint else "")
            )
    if not chosen:
        raise NeuronscopeError(f"no photo source given; valid: {', '.join(ALL_SOURCES)}")
    return chosen


def _candidates(source: str, cache: Path) -> list[Candidate]:
    if source == "skimage":
        return list(_skimage_candidates())
    if source == "sklearn":
        return list(_sklearn_candidates())
    readers = {"gcompris": _gcompris_candidates, "tuxpaint": _tuxpaint_candidates, "wallpapers": _wallpaper_candidates}
    return list(readers[source](cache))


def _write_images(root: Path, sources: tuple[str, ...], max_side: int, cache: Path, progress: bool) -> list[dict]:
    from tqdm.auto import tqdm

    entries, seen = [], _DuplicateFilter()
    for source in sources:
        for cand in tqdm(_candidates(source, cache), desc=source, unit="img", disable=not progress):
            image = cand.load()
            if image is None:
                continue
            image = _fit(image, max_side)
            if seen.is_duplicate(image):
                continue
            file = f"{IMAGES}/{source}__{_safe_name(cand.name)}.jpg"
            image.save(root / file, "JPEG", quality=JPEG_QUALITY)
            entries.append({
                "file": file,
                "source": source,
                "package": cand.package,
                "licence": cand.licence,
                "credit": cand.credit,
                "original_path": cand.original_path,
                "label": cand.label,
                "imagenet_class": imagenet_class_for(cand.label),
                "width": image.width,
                "height": image.height,
            })
    return entries


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "image"


def _fit(image: Image.Image, max_side: int) -> Image.Image:
    """RGB, at most ``max_side`` on the longer side (never enlarged)."""
    image = _on_background(image)
    scale = max_side / max(image.size)
    if scale < 1:
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(size, Image.Resampling.LANCZOS)
    return image


def _on_background(image: Image.Image, square: bool = False) -> Image.Image:
    """RGB, transparent parts filled with :data:`BACKGROUND`; with ``square``,
    centred on a square canvas with a margin."""
    has_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
    if not has_alpha and not square:
        return image.convert("RGB")
    rgba = image.convert("RGBA")
    side = int(np.ceil(max(rgba.size) / CUTOUT_FILL)) if square else None
    canvas = Image.new("RGB", (side, side) if side else rgba.size, BACKGROUND)
    offset = ((side - rgba.width) // 2, (side - rgba.height) // 2) if side else (0, 0)
    canvas.paste(rgba, offset, rgba)
    return canvas


def looks_drawn(image: Image.Image) -> bool:
    """A crude test for drawings among cut-outs, over the opaque pixels:
    fewer than 200 distinct colours (at 6 bits per channel), or more than
    75 % of neighbouring pixel pairs (nearly) equal, i.e. flat fills."""
    rgba = np.asarray(image.convert("RGBA")).astype(np.int16)
    opaque = rgba[..., 3] > 200
    if opaque.sum() < 500:
        return True
    rgb = rgba[..., :3]
    if len(np.unique((rgb[opaque] >> 2) @ np.array([4096, 64, 1]))) < 200:
        return True
    same = pairs = 0
    for axis in (0, 1):
        a, b = (rgb[1:], rgb[:-1]) if axis == 0 else (rgb[:, 1:], rgb[:, :-1])
        both = (opaque[1:] & opaque[:-1]) if axis == 0 else (opaque[:, 1:] & opaque[:, :-1])
        same += int((np.abs(a - b).max(-1) <= 2)[both].sum())
        pairs += int(both.sum())
    return same > 0.75 * pairs


class _DuplicateFilter:
    """Spots images already written: a 256-bit difference hash within
    :attr:`MAX_DISTANCE` bits of an earlier one (the same photo shipped
    twice, possibly at another size)."""

    MAX_DISTANCE = 4

    def __init__(self) -> None:
        self.hashes: list[np.ndarray] = []

    def is_duplicate(self, image: Image.Image) -> bool:
        grey = np.asarray(image.convert("L").resize((17, 16), Image.Resampling.BILINEAR), dtype=np.int16)
        bits = (grey[:, 1:] > grey[:, :-1]).ravel()
        if any(int((bits != h).sum()) <= self.MAX_DISTANCE for h in self.hashes):
            return True
        self.hashes.append(bits)
        return False


def _decode(data: bytes) -> Image.Image | None:
    """The image in ``data``, or ``None`` if it is too small to be a photo."""
    image = Image.open(io.BytesIO(data))
    image.load()
    return image if max(image.size) >= MIN_SIDE else None


# --------------------------------------------------------------------------
# Sources bundled with Python packages


def _dist(name: str) -> str:
    from importlib.metadata import version

    return f"{name} {version(name)}"


def _skimage_candidates() -> Iterator[Candidate]:
    try:
        from skimage import data
    except ImportError:
        raise NeuronscopeError(
            "the photo source 'skimage' needs scikit-image: pip install 'neuronscope[photos]', "
            "or leave 'skimage' out of sources"
        ) from None

    package = _dist("scikit-image")
    samples = [  # name, loader, label, licence, file in skimage/data
        ("chelsea", data.chelsea, "cat", "CC0-1.0", "chelsea.png"),
        ("coffee", data.coffee, "espresso", "CC0-1.0", "coffee.png"),
        ("astronaut", data.astronaut, "astronaut", "public-domain", "astronaut.png"),
        ("rocket", data.rocket, "rocket", "public-domain", "rocket.jpg"),
        ("motorcycle", lambda: data.stereo_motorcycle()[0], "motorcycle",
         "Middlebury 2014 stereo data set (see scikit-image)", "motorcycle_left.png"),
    ]
    for name, loader, label, licence, file in samples:
        yield Candidate(name, package, licence, f"skimage/data/{file}",
                        lambda f=loader: Image.fromarray(f()), label=label)


def _sklearn_candidates() -> Iterator[Candidate]:
    from sklearn.datasets import load_sample_images

    package = _dist("scikit-learn")
    credits = {"china": "danielbuechele on Flickr", "flower": "vultilion on Flickr"}
    bunch = load_sample_images()
    for path, array in zip(bunch.filenames, bunch.images):
        name = Path(path).stem
        yield Candidate(name, package, "CC-BY-2.0", f"sklearn/datasets/images/{Path(path).name}",
                        lambda a=array: Image.fromarray(a), label=name, credit=credits.get(name))


# --------------------------------------------------------------------------
# Sources in Debian packages


def _gcompris_candidates(cache: Path) -> Iterator[Candidate]:
    deb = read_deb(DEBIAN_PACKAGES["gcompris"], cache,
                   lambda p: p.startswith(GCOMPRIS_RCC_DIR) and p.endswith(".rcc"))
    for bundle in sorted(p for p in deb.files if p.startswith(GCOMPRIS_RCC_DIR)):
        for entry in RccReader(deb.files[bundle]).entries():
            inner = entry.path.split("/activities/", 1)[-1]
            folder, _, file = inner.rpartition("/")
            if not file.lower().endswith(RASTER_EXTENSIONS):
                continue
            if not any(fnmatch.fnmatchcase(folder, d) for d in GCOMPRIS_PHOTO_DIRS):
                continue
            licence, credit = deb.copyright.lookup(entry.path.removeprefix("gcompris/"))
            name = "-".join(p for p in Path(inner).with_suffix("").parts if p not in ("resource", "images"))
            yield Candidate(name, deb.package_version, licence, f"/{bundle}:{entry.path}",
                            lambda e=entry: _decode(e.data()), label=label_from_name(file), credit=credit)


def _tuxpaint_candidates(cache: Path) -> Iterator[Candidate]:
    def wanted(path: str) -> bool:
        parts = path.removeprefix(TUXPAINT_STAMPS_DIR).split("/")
        return (path.startswith(TUXPAINT_STAMPS_DIR) and path.endswith(".png")
                and not TUXPAINT_DRAWING_DIRS & set(parts[:-1]) and not parts[-1].endswith("_mirror.png"))

    deb = read_deb(DEBIAN_PACKAGES["tuxpaint"], cache, wanted)
    for path in sorted(p for p in deb.files if wanted(p)):
        rel = path.removeprefix(TUXPAINT_STAMPS_DIR)
        licence, credit = deb.copyright.lookup(f"stamps/{rel}")
        yield Candidate(Path(rel).with_suffix("").as_posix().replace("/", "-"), deb.package_version, licence, f"/{path}",
                        lambda d=deb.files[path]: _cutout(d), label=label_from_name(Path(rel).name), credit=credit)


def _cutout(data: bytes) -> Image.Image | None:
    """A Tux Paint stamp on a square canvas, or ``None`` if tiny or drawn."""
    image = _decode(data)
    if image is None or looks_drawn(image):
        return None
    return _on_background(image, square=True)


def _wallpaper_candidates(cache: Path) -> Iterator[Candidate]:
    deb = read_deb(DEBIAN_PACKAGES["wallpapers"], cache,
                   lambda p: p.startswith(MATE_NATURE_DIR) and p.endswith(".jpg"))
    for path in sorted(p for p in deb.files if p.startswith(MATE_NATURE_DIR)):
        name = Path(path).stem
        licence, credit = deb.copyright.lookup(f"nature/{Path(path).name}")
        yield Candidate(name, deb.package_version, licence, f"/{path}",
                        lambda d=deb.files[path]: _decode(d), label=label_from_name(name), credit=credit)


# --------------------------------------------------------------------------
# Debian packages: download, read, licences


@dataclass
class DebContents:
    """Some files of a ``.deb`` (paths without a leading '/'), and its copyright."""

    package: str
    version: str
    files: dict[str, bytes]
    copyright: "DebianCopyright"

    @property
    def package_version(self) -> str:
        return f"{self.package} {self.version}"


def read_deb(package: str, cache: Path, wanted: Callable[[str], bool]) -> DebContents:
    """Download ``package`` (cached in ``cache/debs``) and read the files
    ``wanted`` accepts, plus its copyright file, with ``dpkg-deb --fsys-tarfile``."""
    deb = download_deb(package, cache / "debs")
    copyright_path = f"usr/share/doc/{package}/copyright"
    files: dict[str, bytes] = {}
    proc = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
            for member in tar:
                path = member.name.removeprefix("./")
                if member.isfile() and (path == copyright_path or wanted(path)):
                    files[path] = tar.extractfile(member).read()
        while proc.stdout.read(1 << 16):  # let dpkg-deb finish writing
            pass
    except tarfile.TarError as exc:
        proc.kill()
        raise NeuronscopeError(f"cannot read {deb}: {exc}; if the file is damaged, delete it and retry") from exc
    finally:
        proc.stdout.close()
        stderr = proc.stderr.read().decode(errors="replace")
        proc.stderr.close()
    if proc.wait() != 0:
        raise NeuronscopeError(
            f"dpkg-deb --fsys-tarfile {deb} failed: {_last_line(stderr)}; if the file is damaged, delete it and retry"
        )
    copyright_ = DebianCopyright(files.pop(copyright_path, b"").decode(errors="replace"))
    version = unquote(deb.name.split("_")[1]) if deb.name.count("_") >= 2 else "?"
    return DebContents(package, version, files, copyright_)


def download_deb(package: str, debs: Path) -> Path:
    """The ``.deb`` of ``package`` in ``debs``, fetched with ``apt-get download``
    if absent (after ``apt-get update`` when the package lists lack it)."""
    debs.mkdir(parents=True, exist_ok=True)

    def cached() -> Path | None:
        found = sorted(debs.glob(f"{package}_*.deb"), key=lambda p: p.stat().st_mtime)
        return found[-1] if found else None

    if deb := cached():
        return deb
    if not (shutil.which("apt-get") and shutil.which("dpkg-deb")):
        raise NeuronscopeError(
            f"the photo set needs the Debian package {package!r}, but apt-get/dpkg-deb are missing; "
            f"put {package}_*.deb into {debs}, or build with sources=('skimage', 'sklearn')"
        )
    command = ["apt-get", "download", package]
    result = subprocess.run(command, cwd=debs, capture_output=True, text=True)
    if result.returncode != 0:
        update = subprocess.run(["apt-get", "update"], capture_output=True, text=True)
        result = subprocess.run(command, cwd=debs, capture_output=True, text=True)
        if result.returncode != 0:
            why = _last_line(result.stderr or result.stdout)
            if update.returncode != 0:
                why += f"; apt-get update failed too: {_last_line(update.stderr)}"
            raise NeuronscopeError(f"cannot download the Debian package {package!r}: {why}")
    if deb := cached():
        return deb
    raise NeuronscopeError(f"apt-get download {package} left no {package}_*.deb in {debs}")


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no message"


@dataclass
class _Stanza:
    patterns: list[str]
    licence: str
    credit: str | None


class DebianCopyright:
    """Per-file licences from a machine-readable Debian copyright file (DEP-5).

    Paths are relative to the source tree the file describes.  Pictures are
    often converted at build time (``fish1.jpg`` ships as ``fish1.webp``), so
    raster-image extensions are ignored when matching; as in DEP-5, the last
    matching stanza wins.
    """

    def __init__(self, text: str):
        self.stanzas: list[_Stanza] = []
        for block in re.split(r"\n\s*\n", text):
            fields = self._fields(block)
            if "files" in fields and "license" in fields:
                licence = fields["license"].splitlines()[0].strip()
                credit = " ".join(fields.get("copyright", "").split()) or None
                patterns = [self._strip_raster_ext(p) for p in fields["files"].split()]
                self.stanzas.append(_Stanza(patterns, licence, credit))

    @staticmethod
    def _fields(block: str) -> dict[str, str]:
        fields: dict[str, str] = {}
        key = None
        for line in block.splitlines():
            if line[:1].isspace() and key:
                fields[key] += "\n" + line.strip()
            elif ":" in line:
                key, value = line.split(":", 1)
                key = key.strip().lower()
                fields[key] = value.strip()
        return fields

    @staticmethod
    def _strip_raster_ext(path: str) -> str:
        root, ext = os.path.splitext(path)
        return root if ext.lower() in RASTER_EXTENSIONS else path

    def lookup(self, path: str) -> tuple[str, str | None]:
        """``(licence, credit)`` for ``path``; ``("unknown", None)`` if no stanza matches."""
        path = self._strip_raster_ext(path)
        found: tuple[str, str | None] = ("unknown", None)
        for stanza in self.stanzas:
            if any(fnmatch.fnmatchcase(path, p) for p in stanza.patterns):
                found = (stanza.licence, stanza.credit)
        return found
