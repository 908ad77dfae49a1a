#!/usr/bin/env python3
"""Build neuronscope/imagenet_wordnet.json: the 1000 ImageNet classes placed in WordNet.

The data file lets ``class:cat`` and ``neuronscope classes cat`` find classes by
meaning (synonyms and hypernyms) instead of by spelling. It holds, for every
ImageNet class and every synset above one, the synset's lemmas, its parents
(hypernyms), the sense number of each lemma and, for the classes, the gloss.

Sources, both from package registries and read offline:

* WordNet 3.0 from Debian's ``wordnet-base`` package (``apt-get install
  wordnet-base``: ``/usr/share/wordnet/data.noun`` and ``index.noun``);
* the ILSVRC-2012 class order as WordNet ids (``imagenet_synsets.txt``) from the
  timm wheel on PyPI (``pip download timm --no-deps -d DIR``); the file is read
  straight out of the wheel, timm is not installed or imported.

Every class is checked against neuronscope's own label list: the class's first
label must be a lemma of its synset (the script stops otherwise).

    python scripts/make_class_wordnet.py --wheel DIR/timm-*.whl [--wordnet /usr/share/wordnet]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "neuronscope" / "imagenet_wordnet.json"
LABELS = ROOT / "neuronscope" / "models" / "imagenet_classes.txt"
LICENCE = (
    "Derived from WordNet 3.0 (Debian package wordnet-base). WordNet 3.0 Copyright 2006 by Princeton University. "
    "All rights reserved. Permission to use, copy, modify and distribute this software and database and its "
    "documentation for any purpose and without fee or royalty is hereby granted, provided that you agree to comply "
    "with the following copyright notice and statements, including the disclaimer, and that the same appear on ALL "
    "copies of the software, database and documentation, including modifications that you make for internal use or "
    "for distribution. THIS SOFTWARE AND DATABASE IS PROVIDED \"AS IS\" AND PRINCETON UNIVERSITY MAKES NO "
    "REPRESENTATIONS OR WARRANTIES, EXPRESS OR IMPLIED. BY WAY OF EXAMPLE, BUT NOT LIMITATION, PRINCETON UNIVERSITY "
    "MAKES NO REPRESENTATIONS OR WARRANTIES OF MERCHANTABILITY OR FITNESS FOR ANY PARTICULAR PURPOSE OR THAT THE USE "
    "OF THE LICENSED SOFTWARE, DATABASE OR DOCUMENTATION WILL NOT INFRINGE ANY THIRD PARTY PATENTS, COPYRIGHTS, "
    "TRADEMARKS OR OTHER RIGHTS. The name of Princeton University or Princeton may not be used in advertising or "
    "publicity pertaining to distribution of the software and/or database. Title to copyright in this software, "
    "database and any associated documentation shall at all times remain with Princeton University and LICENSEE "
    "agrees to preserve same."
)


def read_nouns(wordnet: Path) -> dict[str, dict]:
    """offset -> {lemmas, parents, gloss} for every noun synset."""
    out = {}
    with open(wordnet / "data.noun", encoding="latin-1") as f:
        for line in f:
            if line.startswith("  "):  # the licence header
                continue
            body, _, gloss = line.partition(" | ")
            parts = body.split()
            offset, n_words = parts[0], int(parts[3], 16)
            lemmas = [parts[4 + 2 * i].lower() for i in range(n_words)]
            i = 4 + 2 * n_words
            n_ptrs = int(parts[i])
            parents = []
            for j in range(n_ptrs):
                sym, target, pos = parts[i + 1 + 4 * j : i + 4 + 4 * j]
                if sym in ("@", "@i") and pos == "n":
                    parents.append(target)
            out[offset] = {"lemmas": [l.split("(")[0] for l in lemmas], "parents": parents, "gloss": gloss.strip()}
    return out


def read_senses(wordnet: Path) -> dict[str, list[str]]:
    """lemma -> its noun synset offsets, most frequent sense first."""
    out = {}
    with open(wordnet / "index.noun", encoding="latin-1") as f:
        for line in f:
            if line.startswith("  "):
                continue
            parts = line.split()
            n_syn, n_ptr = int(parts[2]), int(parts[3])
            out[parts[0].lower()] = parts[4 + n_ptr + 2 :][:n_syn]
    return out


def wnids_from_wheel(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as z:
        return z.read("timm/data/_info/imagenet_synsets.txt").decode().split()


def build(wordnet: Path, wnids: list[str], labels: list[str]) -> dict:
    nouns, senses = read_nouns(wordnet), read_senses(wordnet)
    if len(wnids) != 1000 or len(labels) != 1000:
        raise SystemExit(f"expected 1000 wnids and 1000 labels, got {len(wnids)} and {len(labels)}")
    keep: set[str] = set()
    classes = []
    for k, (wnid, label) in enumerate(zip(wnids, labels)):
        off = wnid[1:]
        syn = nouns[off]
        first = label.split(",")[0].strip().lower().replace(" ", "_")
        if first not in syn["lemmas"]:
            raise SystemExit(f"class {k} {label!r}: {first!r} is not a lemma of {wnid} {syn['lemmas']}")
        classes.append({"wnid": wnid, "gloss": syn["gloss"]})
        todo = [off]
        while todo:
            o = todo.pop()
            if o not in keep:
                keep.add(o)
                todo += nouns[o]["parents"]
    synsets = {}
    for o in sorted(keep):
        s = nouns[o]
        rank = {l: senses[l].index(o) + 1 for l in s["lemmas"] if l in senses and o in senses[l]}
        synsets[o] = {"lemmas": s["lemmas"], "parents": s["parents"], "sense": rank}
    return {
        "about": "The 1000 ImageNet (ILSVRC-2012) classes in WordNet 3.0: synonyms, hypernyms, sense numbers, glosses. "
        "Made by scripts/make_class_wordnet.py.",
        "licence": LICENCE,
        "classes": classes,
        "synsets": synsets,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--wheel", type=Path, required=True, help="a timm wheel (pip download timm --no-deps -d DIR)")
    ap.add_argument("--wordnet", type=Path, default=Path("/usr/share/wordnet"), help="WordNet 3.0 dict folder")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    labels = LABELS.read_text().splitlines()
    data = build(args.wordnet, wnids_from_wheel(args.wheel), labels)
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False, sort_keys=False)
    with tempfile.NamedTemporaryFile("w", dir=args.out.parent, delete=False, suffix=".tmp") as f:
        f.write(text + "\n")
    os.replace(f.name, args.out)
    print(f"{args.out}: {len(data['classes'])} classes, {len(data['synsets'])} synsets, {len(text) / 1e3:.0f} kB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
