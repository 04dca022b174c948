"""Where slices sit in patient space (DICOM LPS, millimetres).

The one place that knows how to turn ImageOrientationPatient and ImagePositionPatient into
normals, slice order, spacing and tilt. Series assembly and volume loading both use it, so
the order a series is indexed in is the order its volume is built in.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from screen.records import Orientation, Vector3

# Positions closer than this along the normal are the same slice position.
POSITION_TOLERANCE_MM = 0.01
# Slice spacing is uniform when every gap is within this fraction of the median gap.
SPACING_TOLERANCE = 0.05
# Direction cosines differing by less than this are one orientation.
ORIENTATION_TOLERANCE = 1e-3
# A normal within this many degrees of a patient axis counts as that plane.
PLANE_TOLERANCE_DEG = 5.0

_PLANE_BY_AXIS = {0: "sagittal", 1: "coronal", 2: "axial"}


def row_col_normal(orientation: Orientation) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row direction, column direction and slice normal (row x col) as unit vectors."""
    row = np.asarray(orientation[:3], dtype=np.float64)
    col = np.asarray(orientation[3:], dtype=np.float64)
    row /= np.linalg.norm(row) or 1.0
    col /= np.linalg.norm(col) or 1.0
    normal = np.cross(row, col)
    return row, col, normal / (np.linalg.norm(normal) or 1.0)


def same_orientation(a: Orientation, b: Orientation) -> bool:
    return all(abs(x - y) < ORIENTATION_TOLERANCE for x, y in zip(a, b))


def plane(orientation: Orientation) -> tuple[str, float]:
    """The anatomical plane of a slice and its obliquity in degrees.

    The plane is the one whose axis lies nearest the slice normal; beyond
    ``PLANE_TOLERANCE_DEG`` the slice is called oblique.
    """
    _, _, normal = row_col_normal(orientation)
    axis = int(np.argmax(np.abs(normal)))
    obliquity = math.degrees(math.acos(min(1.0, abs(float(normal[axis])))))
    name = _PLANE_BY_AXIS[axis] if obliquity <= PLANE_TOLERANCE_DEG else "oblique"
    return name, obliquity


def along_normal(positions: Sequence[Vector3], orientation: Orientation) -> np.ndarray:
    """Each position's distance along the slice normal."""
    _, _, normal = row_col_normal(orientation)
    return np.asarray(positions, dtype=np.float64) @ normal


def slice_order(positions: Sequence[Vector3], orientation: Orientation) -> np.ndarray:
    """Indices that sort slices by increasing distance along the normal (stable)."""
    return np.argsort(along_normal(positions, orientation), kind="stable")


def gaps(sorted_distances: np.ndarray) -> np.ndarray:
    return np.diff(sorted_distances)


def is_uniform(steps: np.ndarray) -> bool:
    if steps.size == 0:
        return True
    median = float(np.median(steps))
    if median <= POSITION_TOLERANCE_MM:
        return False
    return bool(np.all(np.abs(steps - median) <= SPACING_TOLERANCE * median))


def shear_tilt_deg(sorted_positions: np.ndarray, orientation: Orientation) -> float:
    """Gantry tilt seen in the positions: the angle between the line through the slice
    centres and the slice normal, measured in the plane of the column direction.

    A tilted acquisition keeps axial-looking orientations but moves each slice along the
    column direction as it steps along the normal; dcm2niix corrects the same shear.
    """
    if len(sorted_positions) < 2:
        return 0.0
    _, col, normal = row_col_normal(orientation)
    travel = sorted_positions[-1] - sorted_positions[0]
    along = float(travel @ normal)
    if abs(along) < POSITION_TOLERANCE_MM:
        return 0.0
    return math.degrees(math.atan2(float(travel @ col), abs(along)))


def affine(
    orientation: Orientation, first_position: Vector3, pixel_spacing: tuple[float, float],
    slice_step: np.ndarray,
) -> np.ndarray:
    """The 4x4 matrix from voxel indices (column i, row j, slice k) to LPS millimetres.

    ``pixel_spacing`` is DICOM's (row spacing, column spacing); ``slice_step`` is the vector
    from one slice's first voxel to the next one's.
    """
    row, col, _ = row_col_normal(orientation)
    matrix = np.eye(4)
    matrix[:3, 0] = row * pixel_spacing[1]
    matrix[:3, 1] = col * pixel_spacing[0]
    matrix[:3, 2] = slice_step
    matrix[:3, 3] = first_position
    return matrix
