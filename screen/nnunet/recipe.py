"""Recipes: how an imported model's networks chain on one volume, as its card says.

``single``: the model on the whole series, its lesion class scored. ``panorama``: the PANORAMA
baseline's two stages (see :class:`screen.nnunet.card.PanoramaRecipe`); a series where the
localiser finds no pancreas gets a Detection with ``pancreas_found`` false and score 0, never
an error.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from screen.nnunet.card import NnunetCard
from screen.nnunet.findings import bounding_box, class_labels, findings, largest_region
from screen.nnunet.predictor import NnunetModel, predict_volume
from screen.records import Detection, Volume

logger = logging.getLogger(__name__)


Box = tuple[slice, slice, slice]


@dataclass(frozen=True, slots=True, eq=False)
class Outcome:
    """A recipe's result. The class maps are kept only inside ``box`` (the detector's crop;
    the whole grid for a single model): outside it every voxel is background, and a series'
    seven maps on its full grid are gigabytes, so they are made only when asked for."""

    detection: Detection
    box_probabilities: np.ndarray  # float32 (C, k, j, i) inside box
    box: Box  # where box_probabilities lie on the volume grid
    shape: tuple[int, int, int]  # the volume grid (K, J, I)
    pancreas: np.ndarray | None  # bool on the volume grid
    seconds: Mapping[str, float] = field(default_factory=dict)
    lesion: np.ndarray | None = None  # (n, 3) voxels of the reported candidate on the volume grid

    def __post_init__(self) -> None:
        inside = tuple(len(range(*b.indices(n))) for b, n in zip(self.box, self.shape))
        if self.box_probabilities.shape[1:] != inside:
            raise ValueError(f"class maps of shape {self.box_probabilities.shape[1:]} do not fill "
                             f"the box {self.box} of a {self.shape} grid")

    @property
    def n_classes(self) -> int:
        return len(self.box_probabilities)

    @property
    def probabilities(self) -> np.ndarray:
        """float32 (C, K, J, I) on the volume grid, background outside the box."""
        if self.box_probabilities.shape[1:] == tuple(self.shape):
            return self.box_probabilities
        out = np.zeros((self.n_classes, *self.shape), np.float32)
        out[0] = 1.0
        out[(slice(None), *self.box)] = self.box_probabilities
        return out


def run(model: NnunetModel, volume: Volume) -> Outcome:
    if model.localiser is None:
        start = time.perf_counter()
        probs = predict_volume(model, volume.hu, volume.spacing).probabilities
        detection, pancreas, lesion = findings(volume, model.card, probs)
        return Outcome(detection, probs, _whole(volume), volume.hu.shape, pancreas,
                       {"total": time.perf_counter() - start}, lesion=lesion)
    return _panorama(model, volume)


def _whole(volume: Volume) -> Box:
    return tuple(slice(0, n) for n in volume.hu.shape)  # type: ignore[return-value]


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
    gland = class_labels(located) == model.localiser.card.index(recipe.localiser_label)
    del located  # the localiser's maps on the whole series: gone before the detector runs
    if not gland.any():
        logger.info("the localiser found no pancreas")
        empty = np.zeros((model.card.n_classes, 0, 0, 0), np.float32)
        return Outcome(Detection(0.0, False, 0.0), empty, (slice(0, 0),) * 3, volume.hu.shape,
                       None, seconds)
    gland = largest_region(gland)
    lo, hi = zip(*((b.start, b.stop - 1) for b in bounding_box(gland)))
    spacing = np.asarray(volume.spacing)  # k, j, i
    margin = (np.asarray(recipe.margins_mm[::-1]) / spacing).astype(int)  # x, y, z → k, j, i
    box = tuple(slice(int(max(0, a - m)), int(min(n, b + m + 1)))
                for a, b, m, n in zip(lo, hi, margin, volume.hu.shape))
    crop = _crop_volume(volume, box)
    start = time.perf_counter()
    probs = predict_volume(model, crop.hu, crop.spacing).probabilities
    seconds["detect"] = time.perf_counter() - start
    # The masked copy is made in the call and not kept here, so findings drops it as soon as
    # it has the candidates.
    detection, pancreas, voxels = findings(crop, model.card, probs,
                                           lesion_prob=_lesion_in_organ(model.card, probs, crop.spacing))
    gland_full = np.zeros(volume.hu.shape, bool)
    if pancreas is not None:
        gland_full[box] = pancreas
    key = detection.key_slice + box[0].start if detection.key_slice is not None else None
    detection = Detection(detection.score, True, detection.pancreas_volume_ml,
                          detection.lesion_center_lps, detection.lesion_diameter_mm,
                          detection.lesion_location, key)
    if voxels is not None:
        voxels += np.array([b.start for b in box])  # onto the volume grid, in place (24 bytes a voxel)
    return Outcome(detection, probs, box, volume.hu.shape,
                   gland_full if pancreas is not None else gland, seconds, lesion=voxels)


def _lesion_in_organ(card: NnunetCard, probs: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
    """The lesion probability kept inside the recipe's organs (pancreas and duct) grown by its
    dilation; their mask is gone once it has been applied."""
    recipe = card.recipe
    organ = np.isin(class_labels(probs), [card.index(m) for m in recipe.mask_labels])
    if recipe.mask_dilation_mm > 0 and organ.any():
        iterations = np.maximum(1, np.round(recipe.mask_dilation_mm / np.asarray(spacing))).astype(int)
        organ = _dilate(organ, iterations)
    return probs[card.index(card.lesion_label)] * organ


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
