"""A resumed top-k pass runs with the thread count its store was started with (so it computes what one pass would)."""

from __future__ import annotations

import torch
from PIL import Image

from neuronscope.data.scan import run_topk
from neuronscope.data.store import Store


def test_topk_store_records_threads_and_resumes_with_them(lite0, tmp_path, monkeypatch):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(4):
        Image.new("RGB", (40, 40), (60 * i, 20, 200 - 40 * i)).save(folder / f"{i}.png")
    before = torch.get_num_threads()
    run_topk(lite0, folder, ["stem"], k=2, store=tmp_path / "s", batch_size=2, size=32, progress=False).store.close()
    with Store.open(tmp_path / "s") as st:
        assert st.meta["threads"] == before and st.meta["precision"] == "float32"
    seen = []
    real = torch.set_num_threads

    def spy(n):
        seen.append(n)
        real(n)

    monkeypatch.setattr(torch, "set_num_threads", spy)
    other = before + 1
    real(other)  # resume with another thread count: the store's is used for the pass, then restored
    try:
        res = run_topk(lite0, folder, ["stem", "blocks.0"], k=2, store=tmp_path / "s", batch_size=2, size=32,
                       progress=False)
        res.store.close()
        assert seen == [before, other] and torch.get_num_threads() == other
    finally:
        real(before)
