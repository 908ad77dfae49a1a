"""PNG sheet helpers (neuronscope.sheets): caption lines keep their words apart."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from neuronscope.sheets import caption_block


def _ink_columns(line: str, font_size: int) -> np.ndarray:
    """The x of every column with ink in ``line`` drawn by caption_block (over a blank strip)."""
    block = caption_block(Image.new("RGB", (300, 2), (255, 255, 255)), [line], font_size=font_size)
    band = np.asarray(block.convert("L"))[: font_size + 3]
    return np.flatnonzero((band < 160).any(axis=0))


def _gap_after(line: str, first: str, font_size: int) -> int:
    """The blank columns between the ink of ``first`` (the line's start) and the ink after it."""
    end = _ink_columns(first, font_size).max()
    cols = _ink_columns(line, font_size)
    return int(cols[cols > end].min() - end - 1)


@pytest.mark.parametrize("font_size", [11, 13])
def test_a_space_between_caption_words_is_a_third_of_the_font_size_wide(font_size):
    # the facets sheet's caption; Pillow's own space is 2 px at 11 px, and "15 nearest" read as "15nearest"
    joined = _gap_after("15nearest real views", "15", font_size)
    spaced = _gap_after("15 nearest real views", "15", font_size)
    assert spaced - joined >= round(font_size / 3)
    double = _gap_after("best 1.23  mean 0.98", "best 1.23", font_size) - _gap_after("best 1.23mean 0.98", "best 1.23", font_size)
    assert double >= 2 * round(font_size / 3)  # two spaces stay twice as wide


def _grid_gap(caption: str, first: str) -> int:
    """The blank columns after ``first`` in a labelled_grid caption (the grid under the demo and render sheets)."""
    from neuronscope.images import labelled_grid

    def ink(text):
        grid = labelled_grid([Image.new("RGB", (200, 20), (255, 255, 255))], [text], caption_lines=1, pad=0)
        band = np.asarray(grid.convert("L"))[200:]
        return np.flatnonzero((band < 160).any(axis=0))

    end = ink(first).max()
    cols = ink(caption)
    return int(cols[cols > end].min() - end - 1)


def test_grid_captions_keep_a_visible_space_between_words():
    # "class:9 s0" under each demo render read as one word with Pillow's 2 px space
    assert _grid_gap("class:9 s0", "class:9") - _grid_gap("class:9s0", "class:9") >= round(11 / 3)
