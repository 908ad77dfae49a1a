"""``neuronscope classes [QUERY]``: list the model's classes, or find them by meaning.

Without QUERY every class is listed with its index. With QUERY the classes it
names are listed best first, with the reason: for ImageNet models by WordNet
meaning (``cat`` gives the domestic and big cats, ``dog`` the dog breeds), then
by name. ``--model`` lists another model's labels (the ImageNet list is the
default and needs no weights); your own model takes ``--preprocess`` and
``--input-size`` as in every verb that loads one. ``-v`` adds WordNet synonyms,
hypernyms and the definition.
"""

from __future__ import annotations

from ..models import DEFAULT_MODEL
from ._common import add_model_argument, count, load


def add_parser(sub):
    p = sub.add_parser("classes", help="list class names with indexes, or find classes by meaning (cat, dog, bird)",
                       description=__doc__)
    p.add_argument("query", nargs="*", help="words to look for (e.g. cat, 'sports car', fruit); none: list all")
    add_model_argument(p, positional=False, default=None,
                       what=f"model whose labels to list (default: the ImageNet labels of {DEFAULT_MODEL}, no weights loaded)")
    p.add_argument("-n", "--limit", type=count, default=None, help="show at most this many matches")
    p.add_argument("-v", "--verbose", action="store_true", help="WordNet synonyms, hypernyms and definition per class")
    return p


def _labels(args):
    from ..errors import NeuronscopeError
    from ..models import imagenet_labels

    if args.model is None:
        return "ImageNet-1k", list(imagenet_labels())
    model = load(args)  # with --preprocess / --input-size for your own model
    if not model.labels:
        raise NeuronscopeError(f"model {model.name!r} has no class labels; give load_model(..., labels=[...]) a list")
    return model.name, list(model.labels)


def run(args):
    from ..class_search import find_classes, has_wordnet, wordnet_entry
    from ..errors import NeuronscopeError

    if args.limit is not None and args.limit < 1:
        raise NeuronscopeError(f"--limit must be at least 1, got {args.limit}")
    name, labels = _labels(args)
    wordnet = has_wordnet(labels)
    query = " ".join(args.query).strip()

    def detail(k: int) -> str:
        e = wordnet_entry(k) if wordnet and args.verbose else None
        if not e:
            return ""
        return (f"\n      {e['wnid']}: {e['gloss']}\n      synonyms: {', '.join(e['synonyms'])}"
                f"\n      is a: {' > '.join(e['hypernyms'][:6])}")

    if not query:
        rows = list(enumerate(labels))[: args.limit]
        print(f"{name}: {len(labels)} classes (use class:INDEX or class:NAME as a target)")
        for k, label in rows:
            print(f"{k:>5}  {label}{detail(k)}")
        return 0
    hits = find_classes(query, labels)
    if not hits:
        how = "WordNet meaning or name" if wordnet else "name"
        raise NeuronscopeError(f"no class of {name} matches {query!r} by {how}; `neuronscope classes` lists all "
                               f"{len(labels)}")
    shown = hits[: args.limit] if args.limit else hits
    print(f"{name}: {len(hits)} classes match {query!r}" + (f" (showing {len(shown)})" if len(shown) < len(hits) else ""))
    for m in shown:
        print(f"{m.index:>5}  {m.label}  [{m.why}]{detail(m.index)}")
    return 0
