"""Validation: the whole detector on validation phantoms, its score calibrated and its
operating threshold chosen there; and the head/body/tail split learnt from the training gland."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from screen.detect.detector import FEATURES, Detector, analyse
from screen.metrics import auroc, flags
from screen.model.card import Calibration
from screen.records import Volume
from screen.synth.cases import TRAIN_SETTINGS, draw_case, render_pool
from screen.training.calibrate import fit_platt, threshold_for_sensitivity
from screen.training.patches import Item, in_order

logger = logging.getLogger(__name__)


def validation_case(seed: int) -> tuple[Volume, bool]:
    """A validation phantom: the whole scan, as the detector will see it, and whether it holds
    a lesion (the labels stay in the worker: they are not needed and would double the memory)."""
    volume, phantom = draw_case(seed, TRAIN_SETTINGS)
    return volume, phantom.lesion_diameter_mm is not None


def location_fractions(items: Sequence[Item]) -> tuple[float, float]:
    t = np.concatenate([i.positions for i in items])
    part = np.concatenate([i.parts for i in items])
    grid = np.linspace(0.05, 0.95, 181)
    head = grid[int(np.argmax([np.mean((t < f) == (part == 0)) for f in grid]))]
    tail = grid[int(np.argmax([np.mean((t >= f) == (part == 2)) for f in grid]))]
    if not head < tail:
        head, tail = 1 / 3, 2 / 3
    return float(round(head, 3)), float(round(tail, 3))


def calibrate_on_validation(detector: Detector, seeds: Sequence[int], workers: int = 2) -> tuple[Calibration, float, dict]:
    """Platt calibration of the detector's features on validation phantoms, the threshold for
    >= 95 % sensitivity there, and the validation numbers at that threshold."""
    with render_pool(workers) as pool:
        return validate({"": detector}, in_order(pool, validation_case, seeds, 2 * workers))[""]


def validate(detectors: Mapping[str, Detector], cases: Iterable[tuple[Volume, bool]]) -> dict[str, tuple[Calibration, float, dict]]:
    """:func:`calibrate_on_validation` for each detector, on the same rendered phantoms."""
    rows: dict[str, list[list[float]]] = {name: [] for name in detectors}
    labels = []
    for volume, positive in cases:
        for name, detector in detectors.items():
            rows[name].append([analyse(volume, detector).features[f] for f in FEATURES])
        labels.append(int(positive))
        if len(labels) % 25 == 0:
            logger.info("validated on %d phantoms", len(labels))
    y = np.asarray(labels)
    results = {}
    for name, r in rows.items():
        results[name] = calibrate(np.asarray(r), y)
        logger.info("validation%s: %s", f" of {name}" if name else "", results[name][2])
    return results


def calibrate(x: np.ndarray, y: np.ndarray) -> tuple[Calibration, float, dict]:
    coef, intercept = fit_platt(x, y)
    calibration = Calibration(FEATURES, tuple(float(c) for c in coef), intercept)
    scores = np.asarray([calibration.score(dict(zip(FEATURES, r))) for r in x])
    threshold = threshold_for_sensitivity(scores, y, 0.95)
    validation = {
        "cases": len(y), "positives": int(y.sum()),
        "auroc": round(float(auroc(y, scores)), 4),
        "sensitivity_at_threshold": round(float(np.mean(flags(scores[y == 1], threshold))), 4),
        "specificity_at_threshold": round(float(np.mean(~flags(scores[y == 0], threshold))), 4),
    }
    return calibration, threshold, validation
