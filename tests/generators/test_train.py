"""A training run records the thread count and precision it computes with; a resume keeps them or is refused."""

from __future__ import annotations

import json

import pytest
import torch

from neuronscope.errors import NeuronscopeError


def _cfg(steps: int):
    from neuronscope.generators.train import TrainConfig

    return TrainConfig(layer="head.act", grid=1, code_size=64, image_size=32, augs=1, batch=2, steps=steps,
                       adv_from=steps, dae_steps=2, holdout_fraction=0.0, ckpt_minutes=100)


def _log_lines(out) -> int:
    return len((out / "log.jsonl").read_text().splitlines())


def test_a_run_records_its_threads_and_a_resume_keeps_them_or_is_refused(lite0, sample_photos, tmp_path, monkeypatch,
                                                                         capsys):
    from neuronscope.cli import main
    from neuronscope.generators.train import resume_conditions, train_generator

    before = torch.get_num_threads()
    paths = list(sample_photos.values())
    out = tmp_path / "run"
    try:
        torch.set_num_threads(1)
        train_generator(lite0, paths, out, _cfg(1), progress=False)
        recorded = {"threads": 1, "precision": "float32"}
        assert json.loads((out / "config.json").read_text())["conditions"] == recorded
        assert torch.load(out / "checkpoint.pt", weights_only=False)["conditions"] == recorded
        assert torch.load(out / "generator.pt", weights_only=False)["meta"]["conditions"] == recorded

        # another thread count, asked for: refused before any work, nothing of the run changed
        config, lines = (out / "config.json").read_bytes(), _log_lines(out)
        with pytest.raises(NeuronscopeError, match=r"trained with 1 torch thread and --threads 2") as e:
            train_generator(lite0, paths, out, _cfg(2), progress=False, threads=2)
        assert "Leave out --threads" in str(e.value) and "--threads 1" in str(e.value)
        assert (out / "config.json").read_bytes() == config and _log_lines(out) == lines
        # the same through the command line: exit 2 before the model loads, no traceback
        code = main(["train-generator", "--images", str(sample_photos["coffee"].parent), "--out", str(out), "--resume",
                     "--threads", "2", "--steps", "2"])
        err = capsys.readouterr().err
        assert code == 2 and "trained with 1 torch thread" in " ".join(err.split()) and "Traceback" not in err

        # no --threads on resume: the run's own count is used while it runs, the caller's restored after
        seen = []
        real = torch.set_num_threads

        def spy(n):
            seen.append(n)
            real(n)

        real(2)
        monkeypatch.setattr(torch, "set_num_threads", spy)
        g = train_generator(lite0, paths, out, _cfg(2), progress=False)
        monkeypatch.undo()
        assert seen == [1, 2] and torch.get_num_threads() == 2
        assert g.meta["step"] == 2 and g.meta["conditions"] == recorded
        assert resume_conditions(out, 1) == recorded and resume_conditions(out) == recorded

        # a run recorded in another precision cannot be continued by this version
        cfg = json.loads((out / "config.json").read_text())
        (out / "config.json").write_text(json.dumps({**cfg, "conditions": {"threads": 1, "precision": "bfloat16"}}))
        with pytest.raises(NeuronscopeError, match="trained in bfloat16"):
            resume_conditions(out)
        # a run from before conditions were recorded: continued under the current ones, which it then records
        (out / "config.json").write_text(json.dumps({k: v for k, v in cfg.items() if k != "conditions"}))
        assert resume_conditions(out, 3) == {"threads": 3, "precision": "float32"}
    finally:
        torch.set_num_threads(before)
