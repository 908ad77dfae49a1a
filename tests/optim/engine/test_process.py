"""Process-wide settings (glibc heap, torch threads) change only when the caller opts in, and come back."""

from __future__ import annotations

import pytest
import torch

from neuronscope.errors import NeuronscopeError
from neuronscope.optim import objectives as O
from neuronscope.optim import render
from neuronscope.optim.engine import Engine, allow_process_tuning, heap, process_tuning_wanted
from neuronscope.optim.engine.fast_copy import native_bf16


class _FakeLibc:
    def __init__(self):
        self.calls = []

    def mallopt(self, key, value):
        self.calls.append((key, value))
        return 1

    def malloc_trim(self, pad):
        self.calls.append(("trim", pad))
        return 1


@pytest.fixture
def fake_libc(monkeypatch):
    libc = _FakeLibc()
    monkeypatch.setattr(heap, "_libc", libc)
    monkeypatch.delenv("NEURONSCOPE_MALLOC_TUNING", raising=False)
    for key in [k for k in __import__("os").environ if k.startswith(("MALLOC_", "GLIBC_TUNABLES"))]:
        monkeypatch.delenv(key)
    return libc


def test_a_library_render_leaves_the_process_alone_unless_asked(lite0, fake_libc):
    threads = torch.get_num_threads()
    kw = dict(size=32, steps=2, preset="pixel", progress=False, engine=Engine(fast=True, precision="bfloat16"))
    objs = [O.class_logit(k) for k in range(2)]
    res = render(lite0, objs, **kw)
    assert fake_libc.calls == [] and res.meta["stages"][0]["threads"] == 1  # no heap setting, no row split
    res = render(lite0, objs, tune_process=True, **kw)
    assert fake_libc.calls[0] == (heap.M_MMAP_THRESHOLD, 32 << 20) and fake_libc.calls[-1] == ("trim", 0)
    assert (heap.M_MMAP_THRESHOLD, 128 << 10) in fake_libc.calls[4:]  # restored, the mmap threshold too
    if native_bf16("cpu"):  # the bfloat16 stage splits its rows over the cores
        assert res.meta["stages"][0]["threads"] == min(threads, 2)
    assert torch.get_num_threads() == threads


def test_an_application_opts_in_for_a_block():
    assert not process_tuning_wanted(None) and process_tuning_wanted(True)
    with allow_process_tuning():
        assert process_tuning_wanted(None) and not process_tuning_wanted(False)
    assert not process_tuning_wanted(None)


def test_engine_names_and_errors():
    assert Engine.parse(None) == Engine() == Engine(fast=None, precision="mixed")
    assert Engine.parse("plain") == Engine(fast=False) and Engine.parse("fast") == Engine(fast=True)
    assert Engine.parse("bfloat16") == Engine(precision="bfloat16")
    with pytest.raises(NeuronscopeError, match="plain, fast, auto, float32, bfloat16, mixed"):
        Engine.parse("quick")
