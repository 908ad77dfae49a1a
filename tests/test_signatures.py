"""takes_arguments_of: a forwarding function shows, checks and passes on its target's arguments."""

from __future__ import annotations

import inspect

import pytest

from neuronscope.signatures import takes_arguments_of


class Settings:
    def __init__(self, name: str, *, steps: int = 3, size: int | None = None):
        self.name, self.steps, self.size = name, steps, size


@takes_arguments_of(Settings)
def describe(name, **settings) -> str:
    s = Settings(name, **settings)
    return f"{s.name}:{s.steps}:{s.size}"


def test_the_forwarding_function_shows_the_targets_parameters_and_its_own_return():
    sig = inspect.signature(describe)
    assert list(sig.parameters) == ["name", "steps", "size"]
    assert sig.parameters["steps"].default == 3 and sig.return_annotation == "str"
    assert describe.__name__ == "describe" and "steps" in str(sig)


def test_arguments_pass_through_and_an_unknown_keyword_is_named_with_the_closest():
    assert describe("a", size=5) == "a:3:5" and describe(name="b", steps=1) == "b:1:None"
    with pytest.raises(TypeError, match=r"describe\(\) got an unexpected keyword argument 'stpes'; did you mean: steps"):
        describe("a", stpes=2)
    with pytest.raises(TypeError, match="'zzz'; valid: name, steps, size"):
        describe("a", zzz=1)
