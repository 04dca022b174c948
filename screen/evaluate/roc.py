"""The ROC curve as a PNG, drawn with PIL (no plotting library to install)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike
from PIL import Image, ImageDraw, ImageFont

from screen.atomic import write_atomic
from screen.evaluate.evaluation import Evaluation
from screen.metrics import auroc, roc_curve


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow built without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def plot_roc(
    source: Evaluation | tuple[ArrayLike, ArrayLike], path: Path, *, size: int = 640
) -> Path:
    """Draw the ROC curve as a PNG: axes, chance diagonal, curve, AUROC, operating point."""
    if size < 200:
        raise ValueError(f"plot size must be at least 200 pixels, got {size}")
    operating: tuple[float, float] | None = None
    if isinstance(source, Evaluation):
        labels, scores = source.labels, source.scores
        auroc_ci = source.auroc
        sens, spec = source.confusion.sensitivity, source.confusion.specificity
        if sens is not None and spec is not None:
            operating = (1.0 - spec.estimate, sens.estimate)
        title_value = (
            f"AUROC {auroc_ci.estimate:.3f} (95% CI {auroc_ci.low:.3f}-{auroc_ci.high:.3f})"
            if auroc_ci
            else None
        )
    else:
        labels, scores = source
        title_value = None
    fpr, tpr, _ = roc_curve(labels, scores)  # raises UndefinedMetric for one class
    if title_value is None:
        title_value = f"AUROC {auroc(labels, scores):.3f}"
    n_pos = int(np.asarray(labels, dtype=bool).sum())
    n_neg = len(np.asarray(labels)) - n_pos

    image = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(image)
    font, small = _font(max(12, size // 40)), _font(max(10, size // 50))
    left, right, top, bottom = size * 0.14, size * 0.95, size * 0.12, size * 0.86
    span_x, span_y = right - left, bottom - top

    def to_px(x: float, y: float) -> tuple[float, float]:
        return left + x * span_x, bottom - y * span_y

    # Grid and ticks every 0.2.
    for tick in np.linspace(0.0, 1.0, 6):
        x, _ = to_px(tick, 0.0)
        _, y = to_px(0.0, tick)
        draw.line([(x, top), (x, bottom)], fill=(230, 230, 230))
        draw.line([(left, y), (right, y)], fill=(230, 230, 230))
        draw.text((x, bottom + 6), f"{tick:.1f}", fill="black", font=small, anchor="mt")
        draw.text((left - 6, y), f"{tick:.1f}", fill="black", font=small, anchor="rm")
    draw.rectangle([left, top, right, bottom], outline="black", width=2)

    # Chance diagonal, dashed.
    steps = 40
    for i in range(0, steps, 2):
        draw.line(
            [to_px(i / steps, i / steps), to_px((i + 1) / steps, (i + 1) / steps)],
            fill=(150, 150, 150),
            width=1,
        )

    draw.line([to_px(x, y) for x, y in zip(fpr, tpr)], fill=(31, 92, 180), width=3)
    if operating is not None:
        ox, oy = to_px(*operating)
        r = max(4, size // 110)
        draw.ellipse([ox - r, oy - r, ox + r, oy + r], fill=(200, 40, 40))
        draw.text(
            (ox + 2 * r, oy + r), "operating point", fill=(200, 40, 40), font=small, anchor="lt"
        )

    draw.text((size / 2, top / 2), "ROC curve", fill="black", font=font, anchor="mm")
    draw.text((right - 8, bottom - 8), title_value, fill="black", font=small, anchor="rb")
    draw.text(
        (right - 8, bottom - 8 - size // 30),
        f"{n_pos} positive, {n_neg} negative series",
        fill="black",
        font=small,
        anchor="rb",
    )
    draw.text(
        ((left + right) / 2, bottom + size * 0.07),
        "1 - specificity",
        fill="black",
        font=font,
        anchor="mm",
    )
    # The y label is drawn on its own strip and turned upright.
    strip = Image.new("RGB", (int(span_y), size // 20), "white")
    ImageDraw.Draw(strip).text(
        (span_y / 2, size / 40), "Sensitivity", fill="black", font=font, anchor="mm"
    )
    strip = strip.rotate(90, expand=True)
    image.paste(strip, (int(size * 0.02), int(top)))

    return write_atomic(Path(path), lambda sink: image.save(sink, format="PNG"))
