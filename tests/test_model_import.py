"""Your own model from the command line: ./file.py:factory and local modules, with declared preprocessing."""

from __future__ import annotations

import sys

import pytest

from neuronscope import load_model
from neuronscope.cli import main
from neuronscope.errors import NeuronscopeError

MODULE = '''
import torch.nn as nn

def build():
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))

def declared():
    return build()
declared.preprocess = "minus_one_one"
declared.labels = ["red", "green", "blue"]
'''


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    (tmp_path / "mymodels_ns_test.py").write_text(MODULE)
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    sys.modules.pop("mymodels_ns_test", None)


def test_a_file_path_factory_loads_with_the_preprocessing_given(workdir, capsys):
    assert main(["layers", "./mymodels_ns_test.py:build", "--preprocess", "imagenet", "--input-size", "32"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("./mymodels_ns_test.py:build: 7 addressable layers") and "ReLU" in out and "logits" in out
    assert load_model("./mymodels_ns_test.py:build", preprocess="none", input_size=32).input_size == 32


def test_a_local_module_needs_no_pythonpath_and_may_declare_its_preprocessing(workdir):
    m = load_model("mymodels_ns_test:declared")
    assert m.labels == ["red", "green", "blue"] and m.input_size == 224
    assert type(m.preprocess).__name__ == "Normalize" and float(m.preprocess.mean.flatten()[0]) == 0.5


def test_undeclared_preprocessing_is_asked_for_not_assumed(workdir, capsys):
    assert main(["layers", "mymodels_ns_test:build"]) == 2
    err = capsys.readouterr().err
    assert "does not declare its preprocessing" in err and "--preprocess" in err
    with pytest.raises(NeuronscopeError, match="no 'nothere'; callables in it: build, declared"):
        load_model("./mymodels_ns_test.py:nothere", preprocess="none")
    with pytest.raises(NeuronscopeError, match="not found"):
        load_model("./missing.py:build", preprocess="none")
