"""Recipes: how an imported model's networks chain on one volume, as its card says.

``single``: the model on the whole series, its lesion class scored. ``panorama``: the PANORAMA
baseline's two stages (see :class:`screen.nnunet.card.PanoramaRecipe`); a series where the
localiser finds no pancreas gets a Detection with ``pancreas_found`` false and score 0, never
an error.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from screen.detect.postprocess import largest
from screen.nnunet.findings import findings
from screen.nnunet.predictor import NnunetModel, predict_volume
from screen.records import Detection, Volume

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, eq=False)
class Outcome:
    detection: Detection
    probabilities: np.ndarray  # float32 (C, K, J, I) on the volume grid (background outside a crop)
    pancreas: np.ndarray | None  # bool on the volume grid
    seconds: Mapping[str, float] = field(default_factory=dict)
    lesion: np.ndarray | None = None  # (n, 3) voxels of the reported candidate on the volume grid


def run(model: NnunetModel, volume: Volume) -> Outcome:
    if model.localiser is None:
        start = time.perf_counter()
        probs = predict_volume(model, volume.hu, volume.spacing).probabilities
        detection, pancreas, found = findings(volume, model.card, probs)
        return Outcome(detection, probs, pancreas, {"total": time.perf_counter() - start},
                       lesion=found.voxels)
    return _panorama(model, volume)


def _crop_volume(volume: Volume, box: tuple[slice, slice, slice]) -> Volume:
    offset = np.array([box[2].start, box[1].start, box[0].start, 1.0])  # i, j, k
    affine = volume.affine.copy()
    affine[:, 3] = volume.affine @ offset
    hu = volume.hu[box]
    return Volume(hu=hu, affine=affine, slice_uids=("",) * hu.shape[volume.slice_axis],
                  slice_axis=volume.slice_axis)


def _panorama(model: NnunetModel, volume: Volume) -> Outcome:
    recipe = model.card.recipe
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    located = predict_volume(model.localiser, volume.hu, volume.spacing).probabilities
    seconds["localise"] = time.perf_counter() - start
    gland = located.argmax(axis=0) == model.localiser.card.index(recipe.localiser_label)
    del located  # the localiser's maps on the whole series: gone before the detector runs
    if not gland.any():
        logger.info("the localiser found no pancreas")
        return Outcome(Detection(0.0, False, 0.0), _background(model.card.n_classes, volume), None,
                       seconds)
    gland = largest(gland)
    voxels = np.argwhere(gland)
    lo, hi = voxels.min(axis=0), voxels.max(axis=0)
    spacing = np.asarray(volume.spacing)  # k, j, i
    margin = (np.asarray(recipe.margins_mm[::-1]) / spacing).astype(int)  # x, y, z → k, j, i
    box = tuple(slice(int(max(0, a - m)), int(min(n, b + m + 1)))
                for a, b, m, n in zip(lo, hi, margin, volume.hu.shape))
    crop = _crop_volume(volume, box)
    start = time.perf_counter()
    probs = predict_volume(model, crop.hu, crop.spacing).probabilities
    seconds["detect"] = time.perf_counter() - start
    labels = probs.argmax(axis=0)
    organ = np.isin(labels, [model.card.index(m) for m in recipe.mask_labels])
    del labels  # int64 on the crop: as large as two of its class maps
    if recipe.mask_dilation_mm > 0 and organ.any():
        iterations = np.maximum(1, np.round(recipe.mask_dilation_mm / np.asarray(crop.spacing))).astype(int)
        organ = _dilate(organ, iterations)
    lesion = probs[model.card.index(model.card.lesion_label)] * organ
    detection, pancreas, found = findings(crop, model.card, probs, lesion_prob=lesion)
    full = _background(model.card.n_classes, volume)
    full[(slice(None), *box)] = probs
    gland_full = np.zeros(volume.hu.shape, bool)
    if pancreas is not None:
        gland_full[box] = pancreas
    key = detection.key_slice + box[0].start if detection.key_slice is not None else None
    detection = Detection(detection.score, True, detection.pancreas_volume_ml,
                          detection.lesion_center_lps, detection.lesion_diameter_mm,
                          detection.lesion_location, key)
    origin = np.array([b.start for b in box])
    return Outcome(detection, full, gland_full if pancreas is not None else gland, seconds,
                   lesion=None if found.voxels is None else found.voxels + origin)


def _background(n_classes: int, volume: Volume) -> np.ndarray:
    """Class maps on the volume grid that say background everywhere."""
    maps = np.zeros((n_classes, *volume.hu.shape), np.float32)
    maps[0] = 1.0
    return maps


def _dilate(mask: np.ndarray, iterations: np.ndarray) -> np.ndarray:
    """Grow ``mask`` by ``iterations`` voxels along each axis (k, j, i), one axis at a time."""
    out = mask
    for axis, n in enumerate(iterations):
        structure = np.zeros((3, 3, 3), bool)
        structure[1, 1, 1] = True
        index = [1, 1, 1]
        for offset in (0, 2):
            index[axis] = offset
            structure[tuple(index)] = True
        out = ndimage.binary_dilation(out, structure, iterations=int(n))
    return out
