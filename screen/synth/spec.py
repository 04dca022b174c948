"""The frozen records of a synthetic patient (``PhantomSpec`` and its parts) and of a rendered
``Phantom``; everything is placed in patient millimetres (DICOM LPS)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from screen.records import Location
from screen.synth.anatomy import PANCREAS_SHAPES, Phase, Vec3


def _vec3(name: str, value: object) -> Vec3:
    try:
        out = tuple(float(v) for v in value)  # type: ignore[union-attr]
    except TypeError as exc:
        raise TypeError(f"{name} must be three numbers, got {value!r}") from exc
    if len(out) != 3 or not all(math.isfinite(v) for v in out):
        raise ValueError(f"{name} must be three finite numbers, got {value!r}")
    return out  # type: ignore[return-value]


@dataclass(frozen=True, slots=True)
class Ellipsoid:
    """An axis-aligned ellipsoid whose centre may drift in x and y along z (``shear``)."""

    center: Vec3
    semi: Vec3
    shear: tuple[float, float] = (0.0, 0.0)  # dx/dz, dy/dz of the centre

    def __post_init__(self) -> None:
        object.__setattr__(self, "center", _vec3("center", self.center))
        object.__setattr__(self, "semi", _vec3("semi", self.semi))
        if min(self.semi) <= 0:
            raise ValueError(f"ellipsoid semi-axes must be positive, got {self.semi}")


@dataclass(frozen=True, slots=True)
class LesionSpec:
    center_mm: Vec3  # LPS mm, on the pancreas centreline
    diameter_mm: float
    location: Location
    delta_hu: float  # attenuation relative to enhanced pancreas; negative = hypo-attenuating
    irregularity: tuple[tuple[float, float, float, float, float], ...]  # kx, ky, kz, phase, amp

    def __post_init__(self) -> None:
        object.__setattr__(self, "center_mm", _vec3("lesion center_mm", self.center_mm))
        if not isinstance(self.location, Location):
            object.__setattr__(self, "location", Location(self.location))
        if not 2.0 <= self.diameter_mm <= 80.0:
            raise ValueError(f"lesion diameter_mm must lie in 2..80, got {self.diameter_mm}")
        if not -200.0 <= self.delta_hu <= 0.0:
            raise ValueError(f"lesion delta_hu must lie in -200..0, got {self.delta_hu}")


@dataclass(frozen=True, slots=True)
class PancreasSpec:
    centerline: tuple[Vec3, ...]  # control points from uncinate/head to tail tip, LPS mm
    radii_mm: tuple[float, float, float, float]  # head, neck, body, tail half-thickness
    z_flattening: float  # craniocaudal half-height over AP half-thickness
    shape: str
    lobulation: tuple[tuple[float, float, float, float, float], ...]  # kx, ky, kz, phase, amp
    head_body_x_mm: float  # the gland right of this x is head (left border of the SMV)
    body_tail_x_mm: float  # left of this x is tail (left border of the aorta)
    duct_radius_mm: float

    def __post_init__(self) -> None:
        if len(self.centerline) < 4:
            raise ValueError(f"a pancreas centreline needs >= 4 points, got {len(self.centerline)}")
        if self.shape not in PANCREAS_SHAPES:
            raise ValueError(f"pancreas shape must be one of {PANCREAS_SHAPES}, got {self.shape!r}")
        if min(self.radii_mm) <= 0:
            raise ValueError(f"pancreas radii must be positive, got {self.radii_mm}")
        if self.head_body_x_mm >= self.body_tail_x_mm:
            raise ValueError(
                f"head/body boundary {self.head_body_x_mm} must lie right of body/tail "
                f"boundary {self.body_tail_x_mm}"
            )


@dataclass(frozen=True, slots=True)
class Tube:
    """A tubular structure along a smooth curve through ``points`` (LPS mm)."""

    points: tuple[Vec3, ...]
    radius_mm: float
    wall_mm: float = 0.0  # 0: solid; else a wall of this thickness around a lumen
    content: int = 11  # organ code of the lumen

    def __post_init__(self) -> None:
        if len(self.points) < 2:
            raise ValueError(f"a tube needs >= 2 points, got {len(self.points)}")
        if self.radius_mm <= 0:
            raise ValueError(f"tube radius must be positive, got {self.radius_mm}")


@dataclass(frozen=True, slots=True)
class PhantomSpec:
    """Everything that varies between synthetic patients; ``render`` is a pure function of it."""

    body_semi_mm: tuple[float, float]  # lateral (x) and AP (y) half-size at the pancreas
    subcutaneous_fat_mm: float
    wall_muscle_mm: float
    spine_y_mm: float  # centre of the vertebral bodies
    vertebra_radius_mm: float
    aorta: tuple[float, float, float]  # x, y, radius
    ivc: tuple[float, float, float]
    sma: tuple[float, float, float]
    smv: tuple[float, float, float]
    liver: Ellipsoid
    liver_left_lobe: Ellipsoid
    gallbladder: Ellipsoid | None
    spleen: Ellipsoid
    kidney_right: Ellipsoid
    kidney_left: Ellipsoid
    stomach: Ellipsoid
    stomach_gas_fraction: float
    heart: Ellipsoid
    liver_dome_z_mm: float
    iliac_crest_z_mm: float
    pancreas: PancreasSpec
    veins: tuple[Tube, ...]  # splenic, portal
    duodenum: Tube
    bowel: tuple[Tube, ...]
    ribs: bool
    phase: Phase
    noise_sigma_hu: float
    noise_seed: int
    scan_center_z_mm: float  # default centre of the rendered z range
    lesion: LesionSpec | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.phase, Phase):
            object.__setattr__(self, "phase", Phase(self.phase))
        if self.noise_sigma_hu < 0:
            raise ValueError(f"noise_sigma_hu must be >= 0, got {self.noise_sigma_hu}")
        if min(self.body_semi_mm) <= 0:
            raise ValueError(f"body_semi_mm must be positive, got {self.body_semi_mm}")


@dataclass(frozen=True, slots=True, eq=False)
class Phantom:
    """A rendered phantom: HU, labels and organ map on one grid, with the lesion's truth."""

    hu: np.ndarray  # float32 [k, j, i]
    labels: np.ndarray  # uint8: 0 background, 1 pancreas, 2 lesion
    organs: np.ndarray  # uint8: ORGAN_LABELS codes
    spacing_kji: tuple[float, float, float]
    origin_lps: Vec3  # patient position of voxel (0, 0, 0)
    spec: PhantomSpec
    lesion_center_kji: tuple[float, float, float] | None
    lesion_diameter_mm: float | None
    lesion_location: Location | None

    def __post_init__(self) -> None:
        if self.hu.ndim != 3 or not self.hu.shape == self.labels.shape == self.organs.shape:
            raise ValueError(
                f"hu, labels and organs must share one 3-D shape, got {self.hu.shape}, "
                f"{self.labels.shape}, {self.organs.shape}"
            )

    @property
    def affine(self) -> np.ndarray:
        """Voxel (i, j, k, 1) to LPS mm, as ``screen.records.Volume.affine``."""
        matrix = np.eye(4)
        matrix[0, 0], matrix[1, 1], matrix[2, 2] = self.spacing_kji[::-1]
        matrix[:3, 3] = self.origin_lps
        return matrix

    @property
    def lesion_center_lps(self) -> Vec3 | None:
        if self.lesion_center_kji is None:
            return None
        k, j, i = self.lesion_center_kji
        sk, sj, si = self.spacing_kji
        ox, oy, oz = self.origin_lps
        return (ox + i * si, oy + j * sj, oz + k * sk)

    @property
    def pancreas_volume_ml(self) -> float:
        return float(np.count_nonzero(self.labels)) * float(np.prod(self.spacing_kji)) / 1000.0
