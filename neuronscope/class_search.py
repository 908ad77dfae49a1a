"""Finding classes by meaning: ``class:cat`` offers the cat classes, not "crate" or "coast".

For a model with the 1000 ImageNet labels, a query is looked up in WordNet 3.0
(the small table ``imagenet_wordnet.json`` made by
``scripts/make_class_wordnet.py``): every class whose synset *is* or *descends
from* a synset named by the query matches, e.g. ``cat`` finds tabby, tiger cat,
Persian cat, ... and the big cats, ``dog`` the 118 breeds, ``bird`` the birds.
Senses are taken most frequent first, then classes in label order. After the meanings come classes whose own names contain the query as a
word ("hot dog" for ``dog``), then as a substring. Models with other labels get
the word and substring matches.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources


@dataclass(frozen=True)
class ClassMatch:
    """One class found for a query, and why."""

    index: int
    label: str  # the model's full label line ("tabby, tabby cat")
    why: str  # "is a cat", "name contains 'dog'", ...
    rank: tuple  # sort key: lower is better

    @property
    def name(self) -> str:
        return self.label.split(",")[0].strip()


@lru_cache(maxsize=1)
def _table() -> dict:
    return json.loads(resources.files("neuronscope").joinpath("imagenet_wordnet.json").read_text(encoding="utf-8"))


@lru_cache(maxsize=1)
def _imagenet_labels() -> tuple[str, ...]:
    text = resources.files("neuronscope").joinpath("models", "imagenet_classes.txt").read_text(encoding="utf-8")
    return tuple(text.splitlines())


def has_wordnet(labels) -> bool:
    """Whether ``labels`` are the ImageNet-1k labels the WordNet table describes."""
    return labels is not None and tuple(labels) == _imagenet_labels()


def _norm(text: str) -> str:
    return re.sub(r"[\s_-]+", " ", str(text).strip().lower())


@lru_cache(maxsize=1)
def _descendants() -> dict[str, list[tuple[int, int]]]:
    """synset offset -> [(class index, depth below it)] for every synset in the table."""
    t = _table()
    out: dict[str, list[tuple[int, int]]] = {}
    for k, c in enumerate(t["classes"]):
        seen: dict[str, int] = {}
        frontier, depth = [c["wnid"][1:]], 0
        while frontier:
            nxt = []
            for o in frontier:
                if o not in seen:
                    seen[o] = depth
                    nxt += t["synsets"][o]["parents"]
            frontier, depth = nxt, depth + 1
        for o, d in seen.items():
            out.setdefault(o, []).append((k, d))
    return out


def wordnet_entry(index: int) -> dict | None:
    """WordNet facts of ImageNet class ``index``: wnid, synonyms, hypernym chain, gloss."""
    t = _table()
    if not 0 <= index < len(t["classes"]):
        return None
    c = t["classes"][index]
    syn = t["synsets"]
    o = c["wnid"][1:]
    chain = []
    while syn[o]["parents"]:
        o = syn[o]["parents"][0]
        chain.append(syn[o]["lemmas"][0].replace("_", " "))
    return {
        "wnid": c["wnid"],
        "synonyms": [l.replace("_", " ") for l in syn[c["wnid"][1:]]["lemmas"]],
        "hypernyms": chain,
        "gloss": c["gloss"],
    }


def find_classes(query: str, labels=None, limit: int | None = None) -> list[ClassMatch]:
    """Classes of ``labels`` (default: ImageNet's) matching ``query``, best first."""
    labels = list(_imagenet_labels() if labels is None else labels)
    q = _norm(query)
    if not q:
        return []
    best: dict[int, ClassMatch] = {}

    def offer(k: int, why: str, rank: tuple) -> None:
        if k not in best or rank < best[k].rank:
            best[k] = ClassMatch(k, labels[k], why, rank)

    names = [[_norm(s) for s in line.split(",") if s.strip()] for line in labels]
    for k, ns in enumerate(names):
        if q in ns:
            offer(k, "is named so", (0, 0, 0, k))
    if has_wordnet(labels):
        t = _table()
        key = q.replace(" ", "_")
        desc = _descendants()
        for o, s in t["synsets"].items():
            if key in s["lemmas"]:
                sense = s["sense"].get(key, 99)
                what = s["lemmas"][0].replace("_", " ")
                for k, d in desc.get(o, []):
                    offer(k, f"is a {what}" if d else f"is a {what} (synonym)", (1, sense, k, d))
    word = re.compile(rf"\b{re.escape(q)}\b")
    for k, ns in enumerate(names):
        if any(word.search(n) for n in ns):
            offer(k, f"name contains {q!r}", (2, 0, 0, k))
        elif any(q in n for n in ns):
            offer(k, f"name contains {q!r}", (3, 0, 0, k))
    out = sorted(best.values(), key=lambda m: m.rank)
    return out[:limit] if limit is not None else out


def suggest(query: str, labels, n: int = 8) -> list[str]:
    """Up to ``n`` "name (index)" suggestions for an unknown class name, by meaning first."""
    return [f"{m.name} ({m.index})" for m in find_classes(query, labels, limit=n)]


__all__ = ["ClassMatch", "find_classes", "has_wordnet", "suggest", "wordnet_entry"]
