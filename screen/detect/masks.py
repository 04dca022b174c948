"""The detector's pancreas and lesion as masks on the volume's own voxels.

The detector segments on a grid of its own laid over the volume (``Analysis.segment_grid``).
Contours on key images and DICOM Segmentations both need the masks on the volume's voxels,
so both come from here: nearest-neighbour, so every voxel takes exactly one grid label.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from screen.detect.detector import Analysis
from screen.detect.postprocess import components
from screen.detect.preprocess import to_volume_labels
from screen.records import Volume

logger = logging.getLogger(__name__)

LESION_CHANNEL = 2


@dataclass(frozen=True, slots=True, eq=False)
class Masks:
    """Boolean masks (k, j, i) on a volume's voxels; ``lesion`` is all False without a lesion."""

    pancreas: np.ndarray
    lesion: np.ndarray

    def __post_init__(self) -> None:
        for name in ("pancreas", "lesion"):
            value = getattr(self, name)
            if not isinstance(value, np.ndarray) or value.dtype != np.bool_ or value.ndim != 3:
                raise TypeError(f"{name} must be a 3-D bool array, got {getattr(value, 'shape', value)!r}")
        if self.pancreas.shape != self.lesion.shape:
            raise ValueError(
                f"pancreas {self.pancreas.shape} and lesion {self.lesion.shape} masks differ in shape")


def lps_to_kji(volume: Volume, lps: tuple[float, float, float] | np.ndarray) -> np.ndarray:
    """LPS millimetres to (fractional) volume voxel coordinates (k, j, i)."""
    point = np.append(np.asarray(lps, dtype=np.float64), 1.0)
    ijk = np.linalg.solve(volume.affine, point)[:3]
    return ijk[::-1]


def volume_masks(volume: Volume, analysis: Analysis, *, lesion_probability: float = 0.5) -> Masks:
    """The pancreas (the whole gland, lesion included) and the reported lesion on ``volume``.

    The lesion is the connected region of ``probabilities[2] > lesion_probability`` lying in
    or against the gland whose centre is nearest the Detection's lesion centre: the one the
    score, size and location describe, not every faint spot.
    """
    if not 0.0 < lesion_probability < 1.0:
        raise ValueError(f"lesion_probability must lie strictly between 0 and 1, got {lesion_probability}")
    shape = volume.hu.shape
    empty = np.zeros(shape, dtype=bool)
    grid = analysis.segment_grid
    if grid is None or analysis.pancreas_mask is None:
        return Masks(empty, empty.copy())
    pancreas_grid = np.asarray(analysis.pancreas_mask, dtype=bool)
    pancreas = to_volume_labels(pancreas_grid, grid, shape).astype(bool)

    centre = analysis.detection.lesion_center_lps
    if centre is None or analysis.probabilities is None:
        return Masks(pancreas, empty)
    prob = np.asarray(analysis.probabilities[LESION_CHANNEL], dtype=np.float32)
    if pancreas_grid.any():
        # As the detector does: lesions count only in or against the gland.
        prob = np.where(ndimage.binary_dilation(pancreas_grid, iterations=2), prob, 0.0)
    found = components(prob > lesion_probability, prob)
    if not found:
        logger.warning("the reported lesion has no region above %.2f on the grid", lesion_probability)
        return Masks(pancreas, empty)
    target = grid.from_volume(lps_to_kji(volume, centre))
    nearest = min(found, key=lambda c: float(np.linalg.norm(c.centre - target)))
    lesion_grid = np.zeros(pancreas_grid.shape, dtype=bool)
    lesion_grid[tuple(nearest.voxels.T)] = True
    return Masks(pancreas, to_volume_labels(lesion_grid, grid, shape).astype(bool))
