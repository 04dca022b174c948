"""Typed records passed between the stages of a sweep.

Each record is frozen and checks itself when built, so a bad value fails where it is made
rather than three stages later. Stages exchange these records and nothing else: no dicts
with loose keys.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum

import numpy as np

Vector3 = tuple[float, float, float]
Orientation = tuple[float, float, float, float, float, float]


class Stage(str, Enum):
    """Where in the flow a file or series was lost; recorded in errors.parquet."""

    CRAWL = "crawl"
    HEADER = "header"
    GROUP = "group"
    LOAD = "load"
    DETECT = "detect"


@dataclass(frozen=True, slots=True)
class FileError:
    """A file that could not be read or placed, and why."""

    path: str
    stage: Stage
    error: str

    def __post_init__(self) -> None:
        if not isinstance(self.stage, Stage):
            object.__setattr__(self, "stage", Stage(self.stage))
        if not self.error:
            raise ValueError(f"FileError for {self.path!r} needs a reason")


def _check_finite(name: str, values: tuple[float, ...] | None, length: int) -> None:
    if values is None:
        return
    if len(values) != length:
        raise ValueError(f"{name} needs {length} values, got {len(values)}: {values!r}")
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"{name} holds a non-finite value: {values!r}")


@dataclass(frozen=True, slots=True)
class Instance:
    """What one DICOM file's header says, read without its pixels.

    Text tags are stripped strings, empty when absent; numbers are None when absent or
    unreadable. A multi-frame file is one Instance with ``number_of_frames`` > 1.
    """

    path: str
    sop_instance_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    modality: str
    patient_id: str = ""
    # Read only so that pseudonymisation can find them inside paths; never written out.
    patient_name: str = ""
    patient_birth_date: str = ""
    accession_number: str = ""
    study_instance_uid: str = ""
    study_date: str = ""
    study_description: str = ""
    series_instance_uid: str = ""
    series_number: int | None = None
    series_description: str = ""
    protocol_name: str = ""
    body_part_examined: str = ""
    frame_of_reference_uid: str = ""
    acquisition_number: int | None = None
    instance_number: int | None = None
    manufacturer: str = ""
    manufacturer_model_name: str = ""
    image_type: tuple[str, ...] = ()
    convolution_kernel: str = ""
    contrast_agent: str = ""
    image_position: Vector3 | None = None
    image_orientation: Orientation | None = None
    pixel_spacing: tuple[float, float] | None = None
    slice_thickness: float | None = None
    gantry_tilt: float | None = None
    rows: int | None = None
    columns: int | None = None
    number_of_frames: int = 1
    # Per-frame positions of a multi-frame file (Enhanced CT), in frame order; empty otherwise.
    frame_positions: tuple[Vector3, ...] = ()
    file_size: int = 0

    def __post_init__(self) -> None:
        if not self.path:
            raise ValueError("an Instance needs the path it was read from")
        if not isinstance(self.image_type, tuple):
            raise TypeError(f"image_type must be a tuple, got {type(self.image_type).__name__}")
        _check_finite("image_position", self.image_position, 3)
        _check_finite("image_orientation", self.image_orientation, 6)
        _check_finite("pixel_spacing", self.pixel_spacing, 2)
        if self.number_of_frames < 1:
            raise ValueError(f"number_of_frames must be >= 1, got {self.number_of_frames}")


@dataclass(frozen=True, slots=True)
class Geometry:
    """How a series' slices sit in space, measured once when the series is assembled
    (``screen.geometry.measure``): the checks the inventory shows, in the spirit of
    idc-index, and the slice order, repeats and tilt the loader follows.

    It describes the instances it was measured on: a series of other instances is assembled
    again (``screen.series.make_series``), never given another's geometry.
    """

    single_orientation: bool
    orientation: str  # axial, coronal, sagittal, oblique or unknown
    obliquity_deg: float | None  # angle between the slice normal and the nearest patient axis
    unique_positions: bool
    uniform_spacing: bool
    slice_spacing_mm: float | None  # median distance between neighbouring slices
    min_gap_mm: float | None
    max_gap_mm: float | None
    consistent_pixel_spacing: bool
    consistent_image_size: bool
    gantry_tilt_deg: float | None  # from the tag or, failing that, the shear of positions
    z_coverage_mm: float | None  # extent along the slice normal, first to last centre
    # The slices (each file's frames in turn, files as listed) in order along the normal;
    # empty when they are listed in that order already, as assembly lists single-frame files.
    slice_order: tuple[int, ...] = ()
    # The first slice, in slice order, at the same position as the next; None when none is.
    first_repeat: int | None = None
    # The angle the positions' shear makes with the normal, towards the column direction,
    # whatever the tag says; None for fewer than two slices or unknown positions.
    shear_deg: float | None = None
    # Whether the slices drift in their plane by a visible fraction of a pixel as they step
    # along the normal: the loader then shifts each onto a straight stack.
    sheared: bool = False


@dataclass(frozen=True, slots=True)
class Series:
    """One volume's worth of instances, sorted along the slice normal (feet to head for axial)."""

    key: str  # series_instance_uid, or a derived key when the UID is missing or split
    instances: tuple[Instance, ...]
    geometry: Geometry
    uid_source: str = "SeriesInstanceUID"  # how the key was made, for the inventory
    split_reason: str = ""  # why a shared UID was split into several volumes
    # What assembling the series found and did (repeated slices left out, say), for people.
    assembly_warnings: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.instances:
            raise ValueError(f"series {self.key!r} has no instances")

    @property
    def first(self) -> Instance:
        return self.instances[0]

    @property
    def n_frames(self) -> int:
        return sum(i.number_of_frames for i in self.instances)


@dataclass(frozen=True, slots=True)
class Decision:
    """Whether a series is screened, and if not, which rule said no and why."""

    eligible: bool
    rule: str = ""
    reason: str = ""

    def __post_init__(self) -> None:
        if not self.eligible and not (self.rule and self.reason):
            raise ValueError("a rejection must name its rule and give a reason")


@dataclass(frozen=True, slots=True)
class InventoryEntry:
    series: Series
    decision: Decision
    warnings: tuple[str, ...] = field(default=())
    # Why the image content must confirm the series is abdominal (tags do not say so).
    confirm: tuple[str, ...] = field(default=())
    # Rejected for its geometry although every tag said it is an abdominal CT to screen.
    abdominal_by_tags: bool = False


class Location(str, Enum):
    """Part of the pancreas a lesion lies in, from its position along the gland."""

    HEAD = "head"
    BODY = "body"
    TAIL = "tail"


@dataclass(frozen=True, slots=True, eq=False)
class Volume:
    """A series as one array of Hounsfield units with an exact map to patient space.

    ``hu[k, j, i]``: i runs along the rows, j down the columns, k from slice to slice.
    ``affine`` maps (i, j, k, 1) to LPS millimetres. After loading, the axes are turned so
    that i, j and k run as near as the acquisition allows towards patient left, posterior and
    superior; an oblique series keeps its obliquity in the affine, never in the voxels.
    """

    hu: np.ndarray
    affine: np.ndarray
    slice_uids: tuple[str, ...]  # SOPInstanceUID behind each k (repeats for multi-frame files)
    warnings: tuple[str, ...] = ()
    # The array axis the acquired slices follow one another along (and slice_uids index):
    # 0 (k) for an axial acquisition; 1 (j) for coronal, 2 (i) for sagittal ones.
    slice_axis: int = 0
    left_out: tuple[str, ...] = ()  # files of the series whose damaged pixels were left out

    def __post_init__(self) -> None:
        if self.hu.ndim != 3:
            raise ValueError(f"a volume is 3-D, got shape {self.hu.shape}")
        if self.affine.shape != (4, 4):
            raise ValueError(f"affine must be 4x4, got {self.affine.shape}")
        if self.slice_axis not in (0, 1, 2):
            raise ValueError(f"slice_axis must be 0, 1 or 2, got {self.slice_axis}")
        if len(self.slice_uids) != self.hu.shape[self.slice_axis]:
            raise ValueError(
                f"{len(self.slice_uids)} slice UIDs for {self.hu.shape[self.slice_axis]} slices"
            )

    def __reduce__(self):
        # A volume goes from the worker that decoded it to the one that runs the detector, and
        # Dask spills what waits to disk, both as pickles. CT is whole HU, so it travels as
        # int16: half the bytes of float32, and exactly the same float32 once unpacked.
        return _unpacked_volume, (_packed_hu(self.hu), self.hu.dtype.str, self.affine,
                                  self.slice_uids, self.warnings, self.slice_axis)

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm as (k, j, i), matching the array's axes."""
        norms = np.linalg.norm(self.affine[:3, :3], axis=0)
        return float(norms[2]), float(norms[1]), float(norms[0])

    def to_lps(self, kji: np.ndarray) -> np.ndarray:
        """Voxel coordinates (k, j, i), shape (..., 3), to LPS millimetres."""
        ijk = np.asarray(kji, dtype=np.float64)[..., ::-1]
        return ijk @ self.affine[:3, :3].T + self.affine[:3, 3]

    def from_lps(self, lps: np.ndarray | Vector3) -> np.ndarray:
        """LPS millimetres, shape (..., 3), to (fractional) voxel coordinates (k, j, i): the
        inverse of :meth:`to_lps`."""
        inverse = np.linalg.inv(self.affine)
        ijk = np.asarray(lps, dtype=np.float64) @ inverse[:3, :3].T + inverse[:3, 3]
        return ijk[..., ::-1]


# Voxels checked at a time while packing: a MiB of scratch, whatever the volume's size.
_PACK_BLOCK = 1 << 18


def _packed_hu(hu: np.ndarray) -> np.ndarray:
    """``hu`` as int16 when every float32 value comes back bit for bit; else ``hu`` itself."""
    if hu.dtype != np.float32 or hu.size == 0:
        return hu
    packed = np.empty(hu.shape, dtype=np.int16)
    flat_hu, flat_packed = hu.reshape(-1), packed.reshape(-1)  # a copy only if hu is strided
    back = np.empty(min(_PACK_BLOCK, hu.size), dtype=np.float32)
    same = np.empty(back.size, dtype=bool)
    with np.errstate(invalid="ignore"):  # NaN and values beyond int16 fail the check below
        for start in range(0, flat_hu.size, _PACK_BLOCK):
            block = flat_hu[start:start + _PACK_BLOCK]
            n = block.size
            np.copyto(flat_packed[start:start + n], block, casting="unsafe")
            np.copyto(back[:n], flat_packed[start:start + n])
            # Bit patterns, not values: -0.0 must not come back as 0.0.
            np.equal(back[:n].view(np.int32), block.view(np.int32), out=same[:n])
            if not same[:n].all():
                return hu
    return packed


def _unpacked_volume(hu: np.ndarray, dtype: str, affine: np.ndarray, slice_uids: tuple[str, ...],
                     warnings: tuple[str, ...], slice_axis: int) -> Volume:
    return Volume(hu=hu.astype(dtype, copy=False), affine=affine, slice_uids=slice_uids,
                  warnings=warnings, slice_axis=slice_axis)


@dataclass(frozen=True, slots=True)
class Detection:
    """What the detector concluded about one series."""

    score: float  # calibrated probability that the series shows a pancreatic lesion
    pancreas_found: bool
    pancreas_volume_ml: float
    lesion_center_lps: Vector3 | None = None
    lesion_diameter_mm: float | None = None
    lesion_location: Location | None = None
    key_slice: int | None = None  # index k of the slice through the lesion centre

    def __post_init__(self) -> None:
        if not 0.0 <= self.score <= 1.0 or math.isnan(self.score):
            raise ValueError(f"score must be a probability, got {self.score}")
        if self.lesion_location is not None and not isinstance(self.lesion_location, Location):
            object.__setattr__(self, "lesion_location", Location(self.lesion_location))
        if (self.lesion_center_lps is None) != (self.lesion_diameter_mm is None):
            raise ValueError("a lesion needs both its centre and its diameter")
