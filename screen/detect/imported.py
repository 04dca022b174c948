"""Imported nnU-Net models in the sweep: one model with a lesion label, run as nnU-Net runs it,
its probabilities turned into a Detection (the default recipe for an imported model)."""

from __future__ import annotations

import logging
import time

import numpy as np

from screen.detect.preprocess import Grid
from screen.nnunet import recipe
from screen.nnunet.predictor import NnunetModel
from screen.records import Volume

logger = logging.getLogger(__name__)


def analyse_imported(volume: Volume, model: NnunetModel):
    """An :class:`screen.detect.detector.Analysis` for one volume, on the volume's own grid."""
    from screen.detect.detector import Analysis

    card = model.card
    start = time.perf_counter()
    outcome = recipe.run(model, volume)
    inference = time.perf_counter() - start
    detection, pancreas = outcome.detection, outcome.pancreas
    # Downstream (review images, DICOM SEG) reads background, pancreas, lesion in that order,
    # on the volume grid: made from the crop's maps one channel at a time, never all classes.
    three = np.zeros((3, *volume.hu.shape), np.float32)
    three[0] = 1.0
    inside = three[(slice(None), *outcome.box)]
    for c, label in ((1, card.pancreas_label), (2, card.lesion_label)):
        if label:
            inside[c] = outcome.box_probabilities[card.index(label)]
    np.subtract(inside[0], inside[2], out=inside[0])  # 1 - lesion - gland, in that order
    np.subtract(inside[0], inside[1], out=inside[0])
    np.clip(inside[0], 0, 1, out=inside[0])
    grid = Grid((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), tuple(volume.hu.shape))
    seconds = {"inference": inference}
    return Analysis(detection, {"lesion_peak": detection.score}, grid, grid, three, pancreas,
                    seconds=seconds, lesion=outcome.lesion)
