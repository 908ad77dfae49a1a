"""Class names by meaning: the shipped WordNet table, `class:cat`, and `neuronscope classes`."""

from __future__ import annotations

import json
from importlib import resources

import pytest

from neuronscope.class_search import find_classes, has_wordnet, suggest, wordnet_entry
from neuronscope.cli import main
from neuronscope.errors import NeuronscopeError
from neuronscope.models import imagenet_labels

DOMESTIC_CATS = {281, 282, 283, 284, 285}  # tabby, tiger cat, Persian, Siamese, Egyptian cat


def test_the_table_places_every_imagenet_class_under_its_own_labels():
    table = json.loads(resources.files("neuronscope").joinpath("imagenet_wordnet.json").read_text())
    labels = imagenet_labels()
    assert len(table["classes"]) == len(labels) == 1000
    for k, c in enumerate(table["classes"]):  # the class's first label is one of its synset's lemmas
        lemmas = table["synsets"][c["wnid"][1:]]["lemmas"]
        assert labels[k].split(",")[0].strip().lower().replace(" ", "_") in lemmas, (k, labels[k], lemmas)
    assert "Princeton" in table["licence"]


def test_cat_finds_the_cats_first_and_no_spelling_neighbours():
    hits = find_classes("cat")
    top = {m.index for m in hits[:5]}
    assert top == DOMESTIC_CATS
    names = {m.name for m in hits}
    assert {"lion", "tiger", "leopard"} <= names  # big cats are cats too (WordNet: big cat -> cat)
    assert not names & {"crate", "coast", "vat"}
    assert all(m.why == "is a cat" for m in hits[:5])


def test_dog_finds_breeds_by_meaning_before_names_that_merely_contain_dog():
    hits = find_classes("dog")
    meaning = [m for m in hits if m.why.startswith("is a")]
    assert len(meaning) >= 110  # ImageNet's dog breeds
    assert hits.index(next(m for m in hits if m.name == "hotdog")) > len(meaning) - 1
    assert "dough" not in {m.name for m in hits}


def test_exact_names_win_and_ambiguous_names_list_both_senses():
    assert [m.index for m in find_classes("crane")] == [134, 517]
    assert find_classes("goldfish")[0].index == 1
    assert suggest("bird", imagenet_labels(), n=3) == ["cock (7)", "hen (8)", "ostrich (9)"]


def test_wordnet_entry_gives_synonyms_hypernyms_and_gloss():
    e = wordnet_entry(281)
    assert e["wnid"] == "n02123045" and "tabby cat" in e["synonyms"]
    assert e["hypernyms"][:2] == ["domestic cat", "cat"] and "grey" in e["gloss"]


def test_other_label_lists_get_name_matches_only():
    labels = ["red cat", "blue dog", "category"]
    assert not has_wordnet(labels)
    assert [m.index for m in find_classes("cat", labels)] == [0, 2]  # word match before substring


def test_unknown_class_target_offers_classes_by_meaning(lite0):
    with pytest.raises(NeuronscopeError) as e:
        lite0.class_index("cat")
    msg = str(e.value)
    assert "tabby (281)" in msg and "Persian cat (283)" in msg and "neuronscope classes cat" in msg
    assert "crate" not in msg and "coast" not in msg


def test_classes_command_lists_and_searches(capsys):
    assert main(["classes", "-n", "3"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("ImageNet-1k: 1000 classes") and out[1].split()[:2] == ["0", "tench,"]
    assert main(["classes", "cat", "-v", "-n", "5"]) == 0
    out = capsys.readouterr().out
    assert "281  tabby, tabby cat  [is a cat]" in out and "n02123045" in out and "is a: domestic cat > cat" in out
    assert main(["classes", "sports", "car"]) == 0
    assert "sports car" in capsys.readouterr().out
    assert main(["classes", "zzzq"]) == 2
    assert "no class" in capsys.readouterr().err
