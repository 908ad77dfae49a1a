"""Text on PNG sheets: the font, and lines drawn with a visible space between words.

Pillow's built-in font advances a space by 2 px at 11 px, no wider than the gaps
between its letters, so "15 nearest" read as "15nearest" on the sheets. Every
caption, grid label and legend is drawn with :func:`draw_line`.
"""

from __future__ import annotations

from PIL import ImageDraw, ImageFont


def font(size: int = 12):
    """Pillow's built-in font at ``size`` px (its fixed bitmap font before Pillow 10.1)."""
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def word_space(face, font_size: int) -> int:
    """The advance of a space between words, in px: a third of the font size at least."""
    return max(round(face.getlength(" ")), round(font_size / 3))


def draw_line(draw: ImageDraw.ImageDraw, xy: tuple[int, int], line: str, face, font_size: int, fill) -> None:
    """Draw one line of text word by word, each space :func:`word_space` wide (two spaces: twice that)."""
    x, y = xy
    space = word_space(face, font_size)
    for word in line.split(" "):
        if word:
            draw.text((x, y), word, fill=fill, font=face)
            x += round(face.getlength(word))
        x += space
