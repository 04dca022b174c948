"""Where slices sit in patient space (DICOM LPS, millimetres).

The one place that knows how to turn ImageOrientationPatient and ImagePositionPatient into
normals, slice order, spacing and tilt. :func:`measure` decides all of it once per series, as
the series is assembled; the result travels on the record (``Series.geometry``), and the
loader, the rules and the inventory all read it there, so the order a series is indexed in is
the order its volume is built in.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from screen.records import Geometry, Instance, Orientation, Vector3

# Positions closer than this along the normal are the same slice position.
POSITION_TOLERANCE_MM = 0.01
# Slice spacing is uniform when every gap is within this fraction of the median gap.
SPACING_TOLERANCE = 0.05
# Direction cosines differing by less than this are one orientation.
ORIENTATION_TOLERANCE = 1e-3
# A normal within this many degrees of a patient axis counts as that plane.
PLANE_TOLERANCE_DEG = 5.0
# A shear of positions below this angle is reported as no gantry tilt at all.
TILT_TOLERANCE_DEG = 0.1
# In-plane drift below this fraction of a pixel is position rounding, not a tilt.
SHEAR_TOLERANCE_PX = 0.05

# One slice of a series: the file, the frame within it (0-based) and where the frame lies.
Frame = tuple[Instance, int, Vector3]

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


def frames(instances: Sequence[Instance]) -> list[Frame]:
    """Every slice of a series with its position: each file's frames in turn, files as
    listed (the order a DICOM Segmentation lays its frames in too). ValueError, naming the
    file, when a slice's position is unknown."""
    found: list[Frame] = []
    for instance in instances:
        if instance.number_of_frames > 1:
            if len(instance.frame_positions) != instance.number_of_frames:
                raise ValueError(
                    f"{instance.path}: {instance.number_of_frames} frames but "
                    f"{len(instance.frame_positions)} frame positions in its functional groups")
            found.extend((instance, f, p) for f, p in enumerate(instance.frame_positions))
            continue
        position = instance.image_position or (
            instance.frame_positions[0] if instance.frame_positions else None)
        if position is None:
            raise ValueError(f"{instance.path} has no ImagePositionPatient")
        found.append((instance, 0, position))
    return found


def measure(instances: Sequence[Instance]) -> Geometry:
    """How the slices of a series sit, for its instances sorted along the normal: whether
    they share one orientation and which plane it is, their order, spacing, gaps and repeated
    positions along the normal, and the gantry tilt. Unknowns are None rather than guesses."""
    orientations = [m.image_orientation for m in instances if m.image_orientation]
    single = bool(orientations) and len(orientations) == len(instances) and all(
        same_orientation(orientations[0], o) for o in orientations
    )
    spacings = {m.pixel_spacing for m in instances}
    sizes = {(m.rows, m.columns) for m in instances}
    plane_name, obliquity = plane(orientations[0]) if orientations else ("unknown", None)
    positions = None
    if single:
        try:
            positions = np.asarray([p for _, _, p in frames(instances)], dtype=np.float64)
        except ValueError:
            positions = None
    unique = uniform = sheared = False
    step = min_gap = max_gap = coverage = shear = first_repeat = None
    order: tuple[int, ...] = ()
    tilt = next((m.gantry_tilt for m in instances if m.gantry_tilt), None)
    if positions is not None and len(positions):
        orientation = orientations[0]
        distances = along_normal(positions, orientation)
        by_distance = np.argsort(distances, kind="stable")
        if np.any(by_distance != np.arange(len(by_distance))):
            order = tuple(int(i) for i in by_distance)
        positions, distances = positions[by_distance], distances[by_distance]
        steps = np.diff(distances)
        repeats = np.flatnonzero(steps <= POSITION_TOLERANCE_MM)
        first_repeat = int(repeats[0]) if repeats.size else None
        unique = first_repeat is None
        uniform = unique and is_uniform(steps)
        if steps.size:
            step, min_gap, max_gap = (float(np.median(steps)), float(steps.min()),
                                      float(steps.max()))
        coverage = float(distances[-1] - distances[0])
        if len(positions) > 1:
            shear = shear_tilt_deg(positions, orientation)
            if tilt is None:
                tilt = shear if abs(shear) > TILT_TOLERANCE_DEG else 0.0
            sheared = _drifts(positions, orientation, instances[0].pixel_spacing)
    return Geometry(
        single_orientation=single,
        orientation=plane_name,
        obliquity_deg=obliquity,
        unique_positions=unique,
        uniform_spacing=uniform,
        slice_spacing_mm=step,
        min_gap_mm=min_gap,
        max_gap_mm=max_gap,
        consistent_pixel_spacing=len(spacings) == 1 and None not in spacings,
        consistent_image_size=len(sizes) == 1 and (None, None) not in sizes,
        gantry_tilt_deg=tilt,
        z_coverage_mm=coverage,
        slice_order=order,
        first_repeat=first_repeat,
        shear_deg=shear,
        sheared=sheared,
    )


def _drifts(sorted_positions: np.ndarray, orientation: Orientation,
            pixel_spacing: tuple[float, float] | None) -> bool:
    """Whether any slice lies a visible fraction of a pixel off the straight stack."""
    if pixel_spacing is None or min(pixel_spacing) <= 0:
        return False  # such a series is not loaded at all
    drift_px = in_plane_drift_mm(sorted_positions, orientation) / np.asarray(pixel_spacing)
    return bool(np.max(np.abs(drift_px)) >= SHEAR_TOLERANCE_PX)


def in_plane_drift_mm(sorted_positions: np.ndarray, orientation: Orientation) -> np.ndarray:
    """How far each slice lies, within its own plane, from the straight stack through the
    middle slice: (n, 2) mm along the column direction (rows, j) and the row direction
    (columns, i). A tilted gantry makes it grow steadily from slice to slice."""
    row, col, _ = row_col_normal(orientation)
    drift = sorted_positions - sorted_positions[len(sorted_positions) // 2]
    return np.stack([drift @ col, drift @ row], axis=-1)


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


def unit_axes(matrix: np.ndarray) -> np.ndarray:
    """The voxel axes (i, j, k) of a voxel-to-LPS affine as unit vectors, as columns."""
    return matrix[:3, :3] / np.linalg.norm(matrix[:3, :3], axis=0)


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
