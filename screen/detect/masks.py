"""The detector's pancreas and lesion as masks on the volume's own voxels.

The detector segments on a grid of its own laid over the volume (``Analysis.segment_grid``).
Contours on key images and DICOM Segmentations both need the masks on the volume's voxels,
so both come from here: nearest-neighbour, so every voxel takes exactly one grid label.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from screen.detect.detector import Analysis
from screen.detect.preprocess import to_volume_labels
from screen.records import Volume

logger = logging.getLogger(__name__)


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


def volume_masks(volume: Volume, analysis: Analysis) -> Masks:
    """The pancreas (the whole gland, lesion included) and the reported lesion on ``volume``.

    The lesion is the region the detector reported (``Analysis.lesion``): the one the score,
    size and location describe, not every faint spot; none where it reports no region.
    """
    shape = volume.hu.shape
    empty = np.zeros(shape, dtype=bool)
    grid = analysis.segment_grid
    if grid is None or analysis.pancreas_mask is None:
        return Masks(empty, empty.copy())
    pancreas_grid = np.asarray(analysis.pancreas_mask, dtype=bool)
    pancreas = to_volume_labels(pancreas_grid, grid, shape).astype(bool)
    if analysis.lesion is None:  # an Analysis holds a region only with the lesion it reports
        return Masks(pancreas, empty)
    lesion_grid = np.zeros(pancreas_grid.shape, dtype=bool)
    lesion_grid[tuple(analysis.lesion.T)] = True
    return Masks(pancreas, to_volume_labels(lesion_grid, grid, shape).astype(bool))
