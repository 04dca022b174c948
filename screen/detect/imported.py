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
    probs, detection, pancreas = outcome.probabilities, outcome.detection, outcome.pancreas
    # Downstream (review images, DICOM SEG) reads background, pancreas, lesion in that order.
    zeros = np.zeros(probs.shape[1:], np.float32)
    lesion = probs[card.index(card.lesion_label)] if card.lesion_label else zeros
    gland = probs[card.index(card.pancreas_label)] if card.pancreas_label else zeros
    three = np.stack([np.clip(1.0 - lesion - gland, 0, 1), gland, lesion])
    grid = Grid((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), tuple(volume.hu.shape))
    seconds = {"inference": inference}
    return Analysis(detection, {"lesion_peak": detection.score}, grid, grid, three, pancreas,
                    seconds=seconds, lesion=outcome.lesion)
