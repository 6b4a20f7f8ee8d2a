"""What frames overlay.png and heatmap.png: a title band (slide name, result), the colour key of the
model's fixed score scale with the threshold marked, and a micrometre scale bar. Pillow only.

Text is ASCII ("um", ">="): Pillow's built-in font has no micro sign. Labels never overlap: the
threshold is marked above the colour bar and the score ticks are written below it.

    canvas = frame(picture, title="tumor_001", subtitle="slide score 2.31", key=colour_key(...))
"""

from __future__ import annotations

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


def font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's scalable built-in font (Pillow >= 10.1 with FreeType), else its bitmap font."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError):
        return ImageFont.load_default()


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
    small swatches with their meaning. Depends on the scale only, so it is identical on every slide."""
    face = font(13)
    height = BAR_TOP + BAR_HEIGHT + 22 + (24 if swatches else 0) + 6
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

    x, y = MARGIN, y0 + BAR_HEIGHT + 26
    for swatch, meaning in swatches:
        key.paste(swatch, (x, y))
        draw.text((x + swatch.width + 6, y + 1), meaning, fill=INK, font=face)
        x += swatch.width + 6 + text_width(draw, meaning, face) + 18
    return key


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


def draw_scale_bar(image: Image.Image, um_per_px: float | None) -> None:
    """A black bar (1-2-5 micrometres, at most a fifth of the width) on a white box, bottom left."""
    if not um_per_px:
        return
    um = nice_length(um_per_px, image.width / 5)
    if um <= 0:
        return
    draw = ImageDraw.Draw(image)
    face = font(13)
    px = int(round(um / um_per_px))
    label = scale_bar_label(um)
    box_w = max(px, text_width(draw, label, face)) + 12
    x0, y1 = 8, image.height - 8
    y0 = y1 - 30
    draw.rectangle([x0, y0, x0 + box_w, y1], fill=PAPER, outline=MUTED)
    draw.rectangle([x0 + 6, y1 - 10, x0 + 6 + px - 1, y1 - 6], fill=INK)
    draw.text((x0 + 6, y0 + 2), label, fill=INK, font=face)


def frame(picture: Image.Image, title: str, subtitle: str, key: Image.Image) -> Image.Image:
    """Title band on top, `picture` centred, `key` below: one white RGB canvas."""
    width = max(picture.width + 2 * MARGIN, key.width)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    canvas = Image.new("RGB", (width, TITLE_BAND + picture.height + 8 + key.height), PAPER)
    draw = ImageDraw.Draw(canvas)
    draw.text((MARGIN, 6), _fit(probe, title, font(18), width - 2 * MARGIN), fill=INK, font=font(18))
    draw.text((MARGIN, 30), _fit(probe, subtitle, font(13), width - 2 * MARGIN), fill=MUTED, font=font(13))
    canvas.paste(picture.convert("RGB"), ((width - picture.width) // 2, TITLE_BAND))
    canvas.paste(key, (0, TITLE_BAND + picture.height + 8))
    return canvas


def _fit(draw: ImageDraw.ImageDraw, text: str, face, width: int) -> str:
    """`text`, cut with "..." to `width` pixels."""
    if text_width(draw, text, face) <= width:
        return text
    while text and text_width(draw, text + "...", face) > width:
        text = text[:-1]
    return text + "..."
