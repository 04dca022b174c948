"""From probability maps to findings: the pancreas, its most suspicious lesion, where it is.

Pure numpy/scipy on arrays with their voxel sizes, so each step is testable on its own:
connected components, the largest diameter of a lesion, and head/body/tail from the lesion's
position along the gland's principal axis.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

from screen.records import Location

logger = logging.getLogger(__name__)

_MAX_HULL_POINTS = 4000  # beyond this, the diameter is taken over the convex hull's vertices
_FULL_CONNECTIVITY = np.ones((3, 3, 3), bool)
_BLOCK = 1 << 20  # voxels a block when a region is read a slab at a time (24 MiB of indices)


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


def voxel_blocks(mask: np.ndarray) -> Iterator[np.ndarray]:
    """``np.argwhere(mask)`` a slab of about ``_BLOCK`` voxels at a time, in the same order:
    argwhere on a whole region holds its indices twice over (24 bytes a voxel each time), and
    a region may fill most of a series."""
    rows = max(1, _BLOCK // max(1, mask[0].size))
    for start in range(0, len(mask), rows):
        voxels = np.argwhere(mask[start:start + rows])
        voxels[:, 0] += start
        yield voxels


def voxels_of(mask: np.ndarray) -> np.ndarray:
    """``np.argwhere(mask)``, (n, 3) int64, filled from :func:`voxel_blocks`: only the result
    is ever whole."""
    out = np.empty((int(np.count_nonzero(mask)), mask.ndim), np.int64)
    at = 0
    for block in voxel_blocks(mask):
        out[at:at + len(block)] = block
        at += len(block)
    return out


def feret_diameter_mm(voxels: np.ndarray, spacing_kji: tuple[float, float, float]) -> float:
    """Largest distance across a region of voxels, in mm.

    Between voxel centres plus one voxel's size (the mean spacing), so a single voxel
    measures one voxel across and a sampled sphere measures about its diameter.
    """
    points = np.array(voxels, dtype=np.float64)  # scaled in place: 24 bytes a voxel
    points *= np.asarray(spacing_kji)
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
    return _along(lambda: (pts[s:s + _BLOCK] for s in range(0, len(pts), _BLOCK)), len(pts),
                  points_lps)


def position_in_mask(mask: np.ndarray, to_lps: Callable[[np.ndarray], np.ndarray],
                     points_lps: np.ndarray) -> np.ndarray:
    """:func:`position_along` for a gland given as a mask, ``to_lps`` taking its voxels (n, 3)
    to LPS: read a slab of the mask at a time, never every gland voxel's coordinates at once
    (24 bytes a voxel, and their copies, for a gland that may fill most of a series)."""
    mask = np.asarray(mask, dtype=bool)
    n = int(np.count_nonzero(mask))
    if mask.ndim != 3 or n < 2:
        raise ValueError(f"pancreas points must be (n >= 2, 3), got a {mask.ndim}-D mask of {n}")
    return _along(lambda: (to_lps(block) for block in voxel_blocks(mask)), n, points_lps)


def _along(blocks: Callable[[], Iterator[np.ndarray]], n: int, points_lps: np.ndarray) -> np.ndarray:
    """:func:`position_along` on ``n`` gland points (LPS) that ``blocks`` yields a block at a
    time, each pass anew: the mean, then the 3 x 3 scatter matrix about it, whose leading
    eigenvector is the principal axis (the first right singular vector of the centred points),
    then every point's projection on it, for the percentiles."""
    centre = np.zeros(3)
    for block in blocks():
        centre += block.sum(axis=0)
    centre /= n
    scatter = np.zeros((3, 3))
    for block in blocks():
        offsets = block - centre
        scatter += offsets.T @ offsets
    axis = np.linalg.eigh(scatter)[1][:, -1]  # eigenvalues ascend: the last is the largest
    if axis[0] < 0:  # +x is patient left in LPS, where the tail lies
        axis = -axis
    proj = np.empty(n)
    at = 0
    for block in blocks():
        proj[at:at + len(block)] = (block - centre) @ axis
        at += len(block)
    lo, hi = np.percentile(proj, [2.0, 98.0], overwrite_input=True)
    return ((np.asarray(points_lps, dtype=np.float64) - centre) @ axis - lo) / max(hi - lo, 1e-6)


def location_in_mask(
    mask: np.ndarray, to_lps: Callable[[np.ndarray], np.ndarray], point_lps: np.ndarray,
    fractions: tuple[float, float] = (1 / 3, 2 / 3),
) -> Location:
    """Head, body or tail: ``point_lps`` by its :func:`position_in_mask` along the gland."""
    point = np.asarray(point_lps, dtype=np.float64)[None]
    return location_at(float(position_in_mask(mask, to_lps, point)[0]), fractions)


def location_at(t: float, fractions: tuple[float, float] = (1 / 3, 2 / 3)) -> Location:
    """Head, body or tail at position ``t`` along the gland (0 head, 1 tail), split at
    ``fractions``."""
    if t < fractions[0]:
        return Location.HEAD
    if t < fractions[1]:
        return Location.BODY
    return Location.TAIL
