"""Where each slice of a series goes in the volume, worked out from headers alone.

Before any pixel is decoded, a series becomes a ``SlicePlan``: its source slices (one per
single-frame file, one per frame of a multi-frame file) in order along the slice normal, the
in-plane shift that undoes a gantry-tilt shear, and the output slices along k with the two
source slices and weight each is interpolated from. Loading then only follows the plan.

The order, the repeated positions, whether spacing is uniform and whether the slices are
sheared were decided once, when the series was assembled (``Series.geometry``, from
``screen.geometry.measure``); the plan follows those decisions. Its own are, and why:

* Uniformly spaced slices are used as they are. Otherwise the series is resampled
  (linearly, along the normal only) onto an even grid from the first to the last slice at
  close to the median gap, so the first and last slices are kept exactly.
* A gap of 1.5 or more times the median counts as ``round(gap / median) - 1`` missing
  slices. Up to ``max_gap_slices`` missing slices in one gap are filled by that interpolation
  (with a warning); a wider gap is refused, naming where it is, because interpolating
  across centimetres invents anatomy a reader would trust.
* Gantry tilt: the slices' positions drift along their own plane as they step along the
  normal. Each slice is shifted in-plane so that all line up on the normal through the middle
  slice (as dcm2niix does); the affine is then orthogonal. Nothing is returned skewed.

The real GE head CT of the test corpus (18.5 degree tilt, 14 slices 4 mm apart and then 13
slices 7 mm apart) loads with the defaults: its median gap is 4 mm, each 7 mm gap counts as
one missing slice (1.75 x 4 mm), so it is resampled to 37 slices 4.0 mm apart with the tilt
corrected and one warning for each.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from screen import geometry
from screen.records import Geometry, Instance, Series
from screen.volume.errors import VolumeError

logger = logging.getLogger(__name__)

# A gap this many times the median spacing or more holds at least one missing slice.
MISSING_SLICE_RATIO = 1.5


@dataclass(frozen=True, slots=True)
class SourceSlice:
    """One decoded frame: which file and frame, where it lies along the normal."""

    path: str
    frame: int  # 0-based frame within the file
    sop_instance_uid: str
    instance_number: int | None
    distance_mm: float  # along the slice normal
    shift_px: tuple[float, float]  # (rows j, columns i) to move it onto the straight stack


@dataclass(frozen=True, slots=True)
class OutputSlice:
    """Output slice k = (1 - weight) * source[lower] + weight * source[upper]."""

    lower: int
    upper: int
    weight: float

    @property
    def nearest(self) -> int:
        return self.upper if self.weight > 0.5 else self.lower


@dataclass(frozen=True, slots=True)
class SlicePlan:
    sources: tuple[SourceSlice, ...]
    outputs: tuple[OutputSlice, ...]
    rows: int
    columns: int
    affine: np.ndarray  # (i, j, k, 1) in acquisition order -> LPS mm, orthogonal
    warnings: tuple[str, ...]
    transfer_syntaxes: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.sources or not self.outputs:
            raise ValueError("a slice plan needs at least one source and one output slice")


def plan_slices(series: Series, *, max_gap_slices: int = 1) -> SlicePlan:
    if isinstance(max_gap_slices, bool) or not isinstance(max_gap_slices, int):
        raise TypeError(f"max_gap_slices must be an int, got {type(max_gap_slices).__name__}")
    if max_gap_slices < 0:
        raise ValueError(f"max_gap_slices must be >= 0, got {max_gap_slices}")
    instances = series.instances
    orientation, spacing, rows, columns = _common_grid(series)
    g = series.geometry
    try:
        entries = geometry.frames(instances)
    except ValueError as exc:
        raise VolumeError(str(exc)) from None
    positions = np.asarray([p for _, _, p in entries], dtype=np.float64)
    distances = geometry.along_normal(positions, orientation)
    if g.slice_order:
        order = list(g.slice_order)
        entries, positions, distances = [entries[i] for i in order], positions[order], distances[order]
    if (len(entries) > 1 and g.shear_deg is None) or np.any(np.diff(distances) < 0):
        raise ValueError(f"series {series.key!r}: its geometry was not measured on these "
                         "slices (a series of other instances must be assembled again)")
    if g.first_repeat is not None:
        at = g.first_repeat
        raise VolumeError(
            f"two slices at the same position ({distances[at]:.2f} mm along the slice normal, "
            f"{_name(entries[at][0], entries[at][1])} and "
            f"{_name(entries[at + 1][0], entries[at + 1][1])}): the series mixes volumes"
        )

    warnings: list[str] = []
    shift_px = np.zeros((len(entries), 2))
    if g.sheared:
        # A slice sitting +d pixels along the columns shows its content d pixels early:
        # shifting by +d moves it back onto the straight stack through the middle slice.
        drift = geometry.in_plane_drift_mm(positions, orientation)
        shift_px = drift / np.asarray(spacing)
        # The angle of the whole drift, along rows and columns alike (shear_deg measures the
        # columns' alone, as a gantry tilts).
        angle = math.degrees(math.atan2(float(np.hypot(*(drift[-1] - drift[0]))),
                                        abs(float(distances[-1] - distances[0]))))
        warnings.append(
            f"gantry tilt of {angle:.1f} degrees corrected: each slice "
            f"shifted in its plane by up to {np.hypot(drift[:, 1], drift[:, 0]).max():.1f} mm "
            "so the volume is no longer sheared")
    sources = tuple(
        SourceSlice(
            path=inst.path, frame=frame,
            sop_instance_uid=inst.sop_instance_uid, instance_number=inst.instance_number,
            distance_mm=float(d), shift_px=(float(sj), float(si)),
        )
        for (inst, frame, _), d, (sj, si) in zip(entries, distances, shift_px)
    )

    outputs, step_mm = _resample_along_normal(distances, sources, g, max_gap_slices, warnings,
                                              series.first.slice_thickness)
    _, _, normal = geometry.row_col_normal(orientation)
    middle = len(entries) // 2
    origin = positions[middle] + (distances[0] - distances[middle]) * normal
    matrix = geometry.affine(orientation, tuple(origin), spacing, normal * step_mm)
    return SlicePlan(
        sources=sources, outputs=outputs, rows=rows, columns=columns, affine=matrix,
        warnings=tuple(warnings),
        transfer_syntaxes=tuple(sorted({i.transfer_syntax_uid for i in instances})),
    )


def _common_grid(series: Series) -> tuple[tuple[float, ...], tuple[float, float], int, int]:
    g = series.geometry
    first = series.first
    if first.image_orientation is None or any(i.image_position is None and not i.frame_positions
                                              for i in series.instances):
        raise VolumeError("slices lack ImagePositionPatient or ImageOrientationPatient: "
                          "their place in the patient is unknown")
    if not g.single_orientation:
        raise VolumeError("slices have different orientations: not one volume")
    if not g.consistent_image_size or first.rows is None or first.columns is None:
        sizes = sorted({(i.rows, i.columns) for i in series.instances}, key=str)
        raise VolumeError(f"slices differ in size ({', '.join(f'{r}x{c}' for r, c in sizes)})")
    if first.pixel_spacing is None:
        raise VolumeError("no PixelSpacing: the size of a pixel in mm is unknown")
    if not g.consistent_pixel_spacing:
        found = sorted({i.pixel_spacing for i in series.instances}, key=str)
        raise VolumeError(f"slices differ in PixelSpacing ({found})")
    if min(first.pixel_spacing) <= 0:
        raise VolumeError(f"PixelSpacing must be positive, got {first.pixel_spacing}")
    return first.image_orientation, first.pixel_spacing, first.rows, first.columns


def _resample_along_normal(
    distances: np.ndarray, sources: tuple[SourceSlice, ...], g: Geometry, max_gap_slices: int,
    warnings: list[str], thickness: float | None,
) -> tuple[tuple[OutputSlice, ...], float]:
    n = len(distances)
    if n == 1:
        # One slice has no spacing of its own; its thickness is the best stand-in.
        return (OutputSlice(0, 0, 0.0),), float(thickness) if thickness and thickness > 0 else 1.0
    if g.uniform_spacing:
        return tuple(OutputSlice(k, k, 0.0) for k in range(n)), g.z_coverage_mm / (n - 1)
    steps = np.diff(distances)
    median = g.slice_spacing_mm

    wide = np.flatnonzero(steps >= MISSING_SLICE_RATIO * median)
    missing = [max(1, round(float(steps[gap]) / median) - 1) for gap in wide]
    for gap, m in zip(wide, missing):
        if m > max_gap_slices:
            raise VolumeError(
                f"slices missing: a gap of {steps[gap]:.1f} mm (about {m} slices at the median "
                f"{median:.2f} mm spacing) between {_where(sources[gap])} and "
                f"{_where(sources[gap + 1])}; at most {max_gap_slices} missing slice(s) per gap "
                "are filled in"
            )
    coverage = g.z_coverage_mm
    count = round(coverage / median) + 1
    step = coverage / (count - 1)
    targets = distances[0] + step * np.arange(count)
    targets[-1] = distances[-1]  # exactly, whatever the rounding
    upper = np.clip(np.searchsorted(distances, targets, side="left"), 1, n - 1)
    lower = upper - 1
    weights = (targets - distances[lower]) / (distances[upper] - distances[lower])
    outputs = tuple(
        OutputSlice(int(lo), int(hi), float(np.clip(w, 0.0, 1.0)))
        for lo, hi, w in zip(lower, upper, weights)
    )
    if wide.size:
        first = int(wide[0])
        warnings.append(
            f"{len(wide)} gap(s) of {steps[wide].min():.1f}-{steps[wide].max():.1f} mm "
            f"({sum(missing)} missing slice(s) at the median {median:.2f} mm spacing) filled "
            f"by linear interpolation, the first between {_where(sources[first])} and "
            f"{_where(sources[first + 1])}"
        )
    warnings.append(
        f"uneven slice spacing ({g.min_gap_mm:.2f}-{g.max_gap_mm:.2f} mm) resampled to "
        f"{count} slices {step:.2f} mm apart"
    )
    return outputs, step


def _where(source: SourceSlice) -> str:
    number = f"instance {source.instance_number}" if source.instance_number is not None \
        else source.path
    return f"{number} at {source.distance_mm:.1f} mm"


def _name(inst: Instance, frame: int) -> str:
    number = f"instance {inst.instance_number}" if inst.instance_number is not None else inst.path
    return f"{number} frame {frame + 1}" if inst.number_of_frames > 1 else number
