"""From probability maps to findings: the pancreas, its most suspicious lesion, where it is.

Pure numpy/scipy on arrays with their voxel sizes, so each step is testable on its own:
connected components, the largest diameter of a lesion, and head/body/tail from the lesion's
position along the gland's principal axis.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

from screen.records import Location

logger = logging.getLogger(__name__)

_MAX_HULL_POINTS = 4000  # beyond this, the diameter is taken over the convex hull's vertices
_FULL_CONNECTIVITY = np.ones((3, 3, 3), bool)


@dataclass(frozen=True, slots=True)
class Component:
    """One connected region of a mask, in grid voxels."""

    voxels: np.ndarray  # (n, 3) int, (k, j, i)
    peak: float  # highest probability inside it
    mass: float  # summed probability inside it

    def __post_init__(self) -> None:
        if self.voxels.ndim != 2 or self.voxels.shape[1] != 3 or len(self.voxels) == 0:
            raise ValueError(f"a component needs (n, 3) voxel indices, got {self.voxels.shape}")

    @property
    def size(self) -> int:
        return len(self.voxels)

    @property
    def centre(self) -> np.ndarray:
        return self.voxels.mean(axis=0)


def components(mask: np.ndarray, prob: np.ndarray) -> list[Component]:
    """Connected regions (26-connectivity) of ``mask``, most suspicious (highest peak) first."""
    if mask.shape != prob.shape:
        raise ValueError(f"mask {mask.shape} and probabilities {prob.shape} differ in shape")
    labelled, n = ndimage.label(mask, structure=_FULL_CONNECTIVITY)
    if n == 0:
        return []
    found = []
    slices = ndimage.find_objects(labelled)
    for index, window in enumerate(slices, start=1):
        local = labelled[window] == index
        offset = np.asarray([s.start for s in window])
        voxels = np.argwhere(local) + offset
        values = prob[window][local]
        found.append(Component(voxels, float(values.max()), float(values.sum())))
    return sorted(found, key=lambda c: (c.peak, c.mass), reverse=True)


def largest(mask: np.ndarray) -> np.ndarray:
    """Only the biggest connected region of ``mask``."""
    labelled, n = ndimage.label(mask, structure=_FULL_CONNECTIVITY)
    if n <= 1:
        return mask.astype(bool)
    sizes = np.bincount(labelled.ravel())
    sizes[0] = 0
    return labelled == int(np.argmax(sizes))


def feret_diameter_mm(voxels: np.ndarray, spacing_kji: tuple[float, float, float]) -> float:
    """Largest distance across a region of voxels, in mm.

    Between voxel centres plus one voxel's size (the mean spacing), so a single voxel
    measures one voxel across and a sampled sphere measures about its diameter.
    """
    points = np.asarray(voxels, dtype=np.float64) * np.asarray(spacing_kji)
    if len(points) > _MAX_HULL_POINTS:
        try:
            points = points[ConvexHull(points).vertices]
        except QhullError:  # flat regions have no 3-D hull; the extreme points still do
            pass
    if len(points) > 1:
        # Pairwise distances in blocks, to bound memory for regions with many hull points.
        widest = 0.0
        for start in range(0, len(points), 1024):
            block = points[start:start + 1024]
            d2 = ((block[:, None, :] - points[None, :, :]) ** 2).sum(axis=-1)
            widest = max(widest, float(d2.max()))
        widest = math.sqrt(widest)
    else:
        widest = 0.0
    return widest + float(np.mean(spacing_kji))


def position_along(pancreas_lps: np.ndarray, points_lps: np.ndarray) -> np.ndarray:
    """Where points fall along the pancreas' principal axis: 0 at the head end, 1 at the tail.

    The axis is oriented so that 0 is the end on the patient's right (smaller LPS x: the
    head) and 1 the end on the left (the tail); 2nd/98th percentiles of the gland stand for
    the ends so that a few stray voxels do not move them.
    """
    pts = np.asarray(pancreas_lps, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 3 or len(pts) < 2:
        raise ValueError(f"pancreas points must be (n >= 2, 3), got {pts.shape}")
    centre = pts.mean(axis=0)
    _, _, vt = np.linalg.svd(pts - centre, full_matrices=False)
    axis = vt[0]
    if axis[0] < 0:  # +x is patient left in LPS, where the tail lies
        axis = -axis
    proj = (pts - centre) @ axis
    lo, hi = np.percentile(proj, [2.0, 98.0])
    return ((np.asarray(points_lps, dtype=np.float64) - centre) @ axis - lo) / max(hi - lo, 1e-6)


def location_along(
    pancreas_lps: np.ndarray, point_lps: np.ndarray, fractions: tuple[float, float] = (1 / 3, 2 / 3)
) -> Location:
    """Head, body or tail: ``point_lps`` by its :func:`position_along` the gland, split at
    ``fractions``."""
    t = float(position_along(pancreas_lps, np.asarray(point_lps, dtype=np.float64)[None])[0])
    if t < fractions[0]:
        return Location.HEAD
    if t < fractions[1]:
        return Location.BODY
    return Location.TAIL
