"""The evaluation plot, drawn with Pillow: score histograms and a DET curve side by side.

Left: how the scores of the two classes (genuine/impostor, or bona fide/attack)
spread over the score range, with the decision thresholds as vertical lines.
Right: the DET curve, false non-match rate against false match rate (BPCER
against APCER) on log axes; rates of 0 sit on the lowest grid line.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

WIDTH, HEIGHT = 960, 400
MARGIN = 56
POSITIVE, NEGATIVE, THRESHOLD, GRID, INK = "#2a7ab0", "#d0462f", "#444444", "#dddddd", "#111111"
LOG_FLOOR = 1e-3


def score_plot(
    title: str,
    positives: Sequence[float],
    negatives: Sequence[float],
    names: tuple[str, str],
    error_names: tuple[str, str],
    thresholds: dict[str, float],
) -> Image.Image:
    """``positives`` should score high (genuine, bona fide), ``negatives`` low."""
    image = Image.new("RGB", (WIDTH, HEIGHT), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=13)
    draw.text((MARGIN, 12), title, fill=INK, font=font)
    half = WIDTH // 2
    _histogram(
        draw,
        font,
        (MARGIN, 48, half - 24, HEIGHT - MARGIN),
        np.asarray(positives, float),
        np.asarray(negatives, float),
        names,
        thresholds,
    )
    _det(
        draw,
        font,
        (half + MARGIN, 48, WIDTH - 24, HEIGHT - MARGIN),
        np.asarray(positives, float),
        np.asarray(negatives, float),
        error_names,
    )
    return image


def _histogram(draw, font, box, positives, negatives, names, thresholds) -> None:
    left, top, right, bottom = box
    scores = (
        np.concatenate([positives, negatives]) if len(positives) + len(negatives) else np.zeros(1)
    )
    low, high = min(0.0, float(scores.min())), max(1.0, float(scores.max()))
    bins = np.linspace(low, high, 41)
    counts = [np.histogram(values, bins)[0] for values in (positives, negatives)]
    tallest = max(1, *(int(c.max()) for c in counts))

    def x_of(score: float) -> float:
        return left + (score - low) / (high - low) * (right - left)

    draw.rectangle(box, outline=GRID)
    for fraction in (0.25, 0.5, 0.75):
        y = bottom - fraction * (bottom - top)
        draw.line((left, y, right, y), fill=GRID)
    for colour, count in ((NEGATIVE, counts[1]), (POSITIVE, counts[0])):
        for i, n in enumerate(count):
            if n:
                y = bottom - n / tallest * (bottom - top)
                draw.rectangle(
                    (x_of(bins[i]) + 1, y, x_of(bins[i + 1]) - 1, bottom), outline=colour, width=2
                )
    for name, value in thresholds.items():
        x = x_of(value)
        draw.line((x, top, x, bottom), fill=THRESHOLD, width=1)
        draw.text(
            (x + 3, top + 2 + 14 * list(thresholds).index(name)),
            f"{name} {value:g}",
            fill=THRESHOLD,
            font=font,
        )
    for value in (low, (low + high) / 2, high):
        draw.text((x_of(value) - 10, bottom + 4), f"{value:.2g}", fill=INK, font=font)
    draw.text((left, bottom + 20), f"score   (max bin {tallest})", fill=INK, font=font)
    draw.text((right - 200, bottom + 20), f"{names[0]} {len(positives)}", fill=POSITIVE, font=font)
    draw.text((right - 100, bottom + 20), f"{names[1]} {len(negatives)}", fill=NEGATIVE, font=font)


def _det(draw, font, box, positives, negatives, error_names) -> None:
    left, top, right, bottom = box
    decades = -math.log10(LOG_FLOOR)

    def to_axis(rate: float) -> float:
        return (math.log10(max(rate, LOG_FLOOR)) + decades) / decades

    draw.rectangle(box, outline=GRID)
    for exponent in range(int(decades) + 1):
        rate = 10.0**-exponent
        x = left + to_axis(rate) * (right - left)
        y = bottom - to_axis(rate) * (bottom - top)
        draw.line((x, top, x, bottom), fill=GRID)
        draw.line((left, y, right, y), fill=GRID)
        label = "<=1e-3" if exponent == decades else f"{rate:g}"
        draw.text((x - 12, bottom + 4), label, fill=INK, font=font)
        draw.text((left - 44, y - 7), label, fill=INK, font=font)
    draw.text((left, bottom + 20), f"{error_names[1]} (log)", fill=INK, font=font)
    draw.text((left + 4, top + 4), f"{error_names[0]} (log)", fill=INK, font=font)
    if len(positives) == 0 or len(negatives) == 0:
        return
    points = []
    for threshold in np.unique(np.concatenate([positives, negatives, [np.inf]])):
        false_match = float((negatives >= threshold).mean())
        false_non_match = float((positives < threshold).mean())
        points.append(
            (
                left + to_axis(false_match) * (right - left),
                bottom - to_axis(false_non_match) * (bottom - top),
            )
        )
    draw.line(points, fill=POSITIVE, width=2)
