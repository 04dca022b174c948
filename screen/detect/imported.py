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
    # Review images and the gate read the lesion's probability on the volume grid: the crop's
    # map of the lesion class, zero outside the crop.
    lesion = np.zeros(volume.hu.shape, np.float32)
    if card.lesion_label:
        lesion[outcome.box] = outcome.box_probabilities[card.index(card.lesion_label)]
    grid = Grid((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), tuple(volume.hu.shape))
    seconds = {"inference": inference}
    return Analysis(detection, {"lesion_peak": detection.score}, grid, grid, lesion, pancreas,
                    seconds=seconds, lesion=outcome.lesion)
