"""What frames overlay.png and heatmap.png: a title band (slide name, result), the colour key of the
model's fixed score scale with the threshold marked, and a micrometre scale bar. Pillow only.

Fixed text is ASCII ("um", ">="): Pillow's built-in font has no micro sign. Slide names can be any
Unicode: the title takes the first font that has every glyph (Pillow's own, then common system fonts:
`TITLE_FONTS`), and where none has one, that character is written as its code point (<U+1F52C>) instead of
a missing-glyph box. Labels never overlap: the threshold is marked above the colour bar and the score ticks
are written below it; key swatches wrap onto more rows as entries are added.

    canvas = frame(picture, title="tumor_001", subtitle="slide score 2.31", key=colour_key(...))
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from fwrd.runtime.outputs.colormap import ScoreScale

INK = (20, 20, 20)
MUTED = (90, 90, 90)
PAPER = (255, 255, 255)
MARGIN = 12
MIN_WIDTH = 560  # room for the key whatever the slide's shape
BAR_WIDTH = 360
BAR_HEIGHT = 16
BAR_LEFT = MARGIN + 4
BAR_TOP = 44  # below the caption and the threshold's label
TITLE_BAND = 50  # the picture starts this far down, centred across the canvas
STAMP_BAND = 24  # added below the title band for a stamp ("demo model: random teacher")
STAMP = (190, 0, 0)
SWATCH_ROW = 24
# Fonts tried, in order, for text that may hold any Unicode (slide names); found on the system by name.
TITLE_FONTS = ("DejaVuSans.ttf", "NotoSans-Regular.ttf", "NotoSansCJK-Regular.ttc", "LiberationSans-Regular.ttf",
               "Arial Unicode.ttf", "arialuni.ttf", "Arial.ttf")


@functools.lru_cache(maxsize=None)
def font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's scalable built-in font (Pillow >= 10.1 with FreeType), else its bitmap font."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError):
        return ImageFont.load_default()


@functools.lru_cache(maxsize=None)
def _system_font(name: str, size: int) -> ImageFont.FreeTypeFont | None:
    try:
        return ImageFont.truetype(name, size)
    except OSError:
        return None


def _glyph(face, char: str) -> tuple:
    mask = face.getmask(char)
    return mask.size, bytes(mask)


@functools.lru_cache(maxsize=4096)
def _has_glyph(face, char: str) -> bool:
    """Whether `face` draws `char` as something other than its missing-glyph box (the drawing of a code
    point no font maps, U+10FFFD)."""
    if char.isspace() or not hasattr(face, "getmask"):
        return char.isspace() or char.isascii()
    return _glyph(face, char) != _glyph(face, "\U0010FFFD")


def unicode_text(text: str, size: int) -> tuple[str, ImageFont.ImageFont | ImageFont.FreeTypeFont]:
    """(text, font) to draw `text`: the first font of Pillow's own and TITLE_FONTS that has all its
    glyphs; else the one with most, and each character it lacks written as its code point in angle
    brackets (an emoji: <U+1F600>)."""
    faces = [font(size)] + [f for f in (_system_font(name, size) for name in TITLE_FONTS) if f is not None]
    chars = set(text)
    best, best_missing = faces[0], None
    for face in faces:
        missing = {c for c in chars if not _has_glyph(face, c)}
        if not missing:
            return text, face
        if best_missing is None or len(missing) < len(best_missing):
            best, best_missing = face, missing
    assert best_missing is not None
    return "".join(f"<U+{ord(c):04X}>" if c in best_missing else c for c in text), best


def text_width(draw: ImageDraw.ImageDraw, text: str, face) -> int:
    box = draw.textbbox((0, 0), text, font=face)
    return int(box[2] - box[0])


def scale_ticks(scale: ScoreScale, most: int = 7) -> list[float]:
    """Evenly spaced round scores inside the scale (steps of 0.5, 1, 2, 5, ...), at most `most`."""
    span = scale.hi - scale.lo
    step, k = 0.5, 0
    while span / step + 1 > most:  # 0.5, then 1, 2, 5 x 10^k: as many steps as digits, whatever the span
        step, k = (1.0, 2.0, 5.0)[k % 3] * 10.0 ** (k // 3), k + 1
    first = math.ceil(scale.lo / step) * step
    return [round(first + k * step, 6) for k in range(int(math.floor((scale.hi - first) / step + 1e-9)) + 1)]


def fmt(value: float) -> str:
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"


def colour_key(
    scale: ScoreScale, bar: np.ndarray, caption: str, swatches: Sequence[tuple[Image.Image, str]] = ()
) -> Image.Image:
    """The key: `caption`, then a horizontal colour bar (`bar`: uint8 [n, 3], the colour of each
    position from scale.lo to scale.hi) with the threshold marked above it and ticks below it, then
    small swatches with their meaning, wrapped onto as many lines as they need. Depends on the scale and
    the swatches only, so it is identical on every slide that shows the same entries."""
    face = font(13)
    rows = swatch_rows(swatches, face)
    height = BAR_TOP + BAR_HEIGHT + 22 + SWATCH_ROW * len(rows) + 6
    key = Image.new("RGB", (MIN_WIDTH, height), PAPER)
    draw = ImageDraw.Draw(key)
    draw.text((MARGIN, 2), caption, fill=INK, font=font(14))
    x0, y0 = BAR_LEFT, BAR_TOP
    strip = bar[np.linspace(0, len(bar) - 1, BAR_WIDTH).round().astype(np.intp)]
    key.paste(Image.fromarray(np.repeat(strip[None], BAR_HEIGHT, axis=0)), (x0, y0))
    draw.rectangle([x0 - 1, y0 - 1, x0 + BAR_WIDTH, y0 + BAR_HEIGHT], outline=INK)
    for tick in scale_ticks(scale):
        x = bar_x(scale, tick)
        draw.line([x, y0 + BAR_HEIGHT, x, y0 + BAR_HEIGHT + 4], fill=INK)
    tx = bar_x(scale, scale.threshold)
    draw.polygon([(tx - 5, y0 - 8), (tx + 5, y0 - 8), (tx, y0 - 1)], fill=INK)
    draw.line([tx, y0, tx, y0 + BAR_HEIGHT - 1], fill=INK, width=1)
    for text, (x, y, _, _) in key_labels(scale, draw):
        draw.text((x, y), text, fill=INK, font=face)

    y = y0 + BAR_HEIGHT + 26
    for row in rows:
        x = MARGIN
        for swatch, meaning in row:
            key.paste(swatch, (x, y))
            draw.text((x + swatch.width + 6, y + 1), meaning, fill=INK, font=face)
            x += swatch.width + 6 + text_width(draw, meaning, face) + 18
        y += SWATCH_ROW
    return key


def swatch_rows(swatches: Sequence[tuple[Image.Image, str]], face) -> list[list[tuple[Image.Image, str]]]:
    """The key's swatches in rows that fit its width, in order (any number of entries)."""
    draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    rows: list[list[tuple[Image.Image, str]]] = []
    x = MIN_WIDTH
    for swatch, meaning in swatches:
        width = swatch.width + 6 + text_width(draw, meaning, face) + 18
        if not rows or x + width > MIN_WIDTH - MARGIN + 18:
            rows.append([])
            x = MARGIN
        rows[-1].append((swatch, meaning))
        x += width
    return rows


def bar_x(scale: ScoreScale, value: float) -> int:
    """Key pixel column of `value` on the colour bar."""
    return BAR_LEFT + int(round(float(scale.fraction(np.array(value))) * (BAR_WIDTH - 1)))


def key_labels(scale: ScoreScale, draw: ImageDraw.ImageDraw) -> list[tuple[str, tuple[int, int, int, int]]]:
    """(text, box) of every label of the key's bar: tick values below it (the top one with "+": higher
    scores take its colour), the threshold above it, shifted to stay inside the key."""
    face = font(13)
    labels = []
    for tick in scale_ticks(scale):
        text = fmt(tick) + ("+" if tick == scale.hi else "")
        box = draw.textbbox((0, 0), text, font=face)
        x, y = bar_x(scale, tick) - (box[2] - box[0]) // 2, BAR_TOP + BAR_HEIGHT + 5
        labels.append((text, (x, y, x + box[2], y + box[3])))
    text = f"threshold {fmt(scale.threshold)}"
    box = draw.textbbox((0, 0), text, font=face)
    x = min(max(bar_x(scale, scale.threshold) - (box[2] - box[0]) // 2, MARGIN), MIN_WIDTH - MARGIN - box[2])
    y = BAR_TOP - 24
    labels.append((text, (x, y, x + box[2], y + box[3])))
    return labels


def nice_length(um_per_px: float, longest_px: float) -> float:
    """The longest 1-2-5 x 10^k micrometres that fits in `longest_px` pixels (0 if none does)."""
    if not (um_per_px > 0 and longest_px > 0):
        return 0.0
    best = 0.0
    limit = um_per_px * longest_px
    for exponent in range(-1, 7):
        for mantissa in (1, 2, 5):
            length = mantissa * 10.0 ** exponent
            if length <= limit:
                best = length
    return best


def scale_bar_label(um: float) -> str:
    return f"{um / 1000:g} mm" if um >= 1000 else f"{um:g} um"


def draw_scale_bar(image: Image.Image, um_per_px: float | None, source: str = "") -> None:
    """A black bar (1-2-5 micrometres, at most a fifth of the width) on a white box, bottom left;
    `source` says which resolution it rests on ("0.243 um/px from --mpp"), after the length."""
    if not um_per_px:
        return
    um = nice_length(um_per_px, image.width / 5)
    if um <= 0:
        return
    draw = ImageDraw.Draw(image)
    face = font(13)
    px = int(round(um / um_per_px))
    label = scale_bar_label(um) + (f" ({source})" if source else "")
    box_w = max(px, text_width(draw, label, face)) + 12
    x0, y1 = 8, image.height - 8
    y0 = y1 - 30
    draw.rectangle([x0, y0, x0 + box_w, y1], fill=PAPER, outline=MUTED)
    draw.rectangle([x0 + 6, y1 - 10, x0 + 6 + px - 1, y1 - 6], fill=INK)
    draw.text((x0 + 6, y0 + 2), label, fill=INK, font=face)


def frame(picture: Image.Image, title: str, subtitle: str, key: Image.Image,
          stamp: str | Sequence[str] | None = None) -> Image.Image:
    """Title band on top (the title in any Unicode, see unicode_text), then each `stamp` (one text or several)
    as a red band, `picture` centred, `key` below: one white RGB canvas."""
    stamps = [stamp] if isinstance(stamp, str) else [s for s in (stamp or ()) if s]
    width = max(picture.width + 2 * MARGIN, key.width)
    band = TITLE_BAND + STAMP_BAND * len(stamps)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    canvas = Image.new("RGB", (width, band + picture.height + 8 + key.height), PAPER)
    draw = ImageDraw.Draw(canvas)
    title, title_face = unicode_text(title, 18)
    subtitle, subtitle_face = unicode_text(subtitle, 13)
    draw.text((MARGIN, 6), _fit(probe, title, title_face, width - 2 * MARGIN), fill=INK, font=title_face)
    draw.text((MARGIN, 30), _fit(probe, subtitle, subtitle_face, width - 2 * MARGIN), fill=MUTED, font=subtitle_face)
    for i, text in enumerate(stamps):
        top = TITLE_BAND + i * STAMP_BAND
        text, face = unicode_text(text, 14)
        text = _fit(probe, text, face, width - 2 * MARGIN - 12)
        draw.rectangle([MARGIN, top - 2, MARGIN + text_width(probe, text, face) + 12, top + STAMP_BAND - 4], fill=STAMP)
        draw.text((MARGIN + 6, top + 1), text, fill=PAPER, font=face)
    canvas.paste(picture.convert("RGB"), ((width - picture.width) // 2, band))
    canvas.paste(key, (0, band + picture.height + 8))
    return canvas


def _fit(draw: ImageDraw.ImageDraw, text: str, face, width: int) -> str:
    """`text`, cut with "..." to `width` pixels."""
    if text_width(draw, text, face) <= width:
        return text
    while text and text_width(draw, text + "...", face) > width:
        text = text[:-1]
    return text + "..."
