"""Synthetic abdominal CT phantoms with a known pancreas and, when asked, a known lesion.

A phantom is drawn in two steps. ``sample_spec`` draws everything that varies between
patients (body habitus, organ placement, the shape of the pancreas, contrast phase, noise, an
optional lesion) into a frozen ``PhantomSpec``; ``render`` turns a spec into voxels on any
grid. Anatomy is placed in patient millimetres (DICOM LPS: x towards the patient's left, y
towards posterior, z towards the head), so two grids of different spacing show the same
patient. The pancreas sits near z = 0; the liver dome lies 110-150 mm above it and the iliac
crest 130-190 mm below.

Arrays follow ``screen.records.Volume``: ``hu[k, j, i]`` with i towards patient left, j
towards posterior, k from feet to head.

Organ labels written to ``Phantom.organs`` (``ORGAN_LABELS`` holds the same table):

====  ===================  ====  ===================
code  structure            code  structure
====  ===================  ====  ===================
0     air outside          14    artery (aorta, SMA, iliacs)
1     subcutaneous fat     15    inferior vena cava
2     muscle               16    portal, splenic, SMV veins
3     visceral fat         17    cortical bone
4     liver                18    cancellous bone
5     gallbladder          19    spinal canal
6     spleen               20    lung
7     kidney cortex        21    pancreas head
8     kidney medulla       22    pancreas body
9     stomach wall         23    pancreas tail
10    bowel wall           24    main pancreatic duct
11    luminal fluid        25    pancreatic lesion
12    luminal gas          26    heart
13    oral contrast        27    intervertebral disc
====  ===================  ====  ===================
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from enum import Enum

import numpy as np
from scipy import ndimage
from scipy.interpolate import CubicSpline
from scipy.spatial import cKDTree

from screen.records import Location

logger = logging.getLogger(__name__)

Vec3 = tuple[float, float, float]

ORGAN_LABELS: dict[int, str] = {
    0: "air", 1: "subcutaneous_fat", 2: "muscle", 3: "visceral_fat", 4: "liver",
    5: "gallbladder", 6: "spleen", 7: "kidney_cortex", 8: "kidney_medulla", 9: "stomach_wall",
    10: "bowel_wall", 11: "luminal_fluid", 12: "luminal_gas", 13: "oral_contrast",
    14: "artery", 15: "ivc", 16: "portal_vein", 17: "cortical_bone", 18: "cancellous_bone",
    19: "spinal_canal", 20: "lung", 21: "pancreas_head", 22: "pancreas_body",
    23: "pancreas_tail", 24: "pancreatic_duct", 25: "lesion", 26: "heart", 27: "disc",
}
_CODE = {name: code for code, name in ORGAN_LABELS.items()}
PANCREAS_CODES = (21, 22, 23, 24, 25)
LESION_CODE = 25


class Phase(str, Enum):
    """Contrast phase of the acquisition: organs and vessels enhance differently."""

    NON_CONTRAST = "non_contrast"
    ARTERIAL = "arterial"
    PORTAL_VENOUS = "portal_venous"


# Mean attenuation (HU) per organ code in (non-contrast, arterial/pancreatic, portal venous)
# phase, from typical adult values. The pancreas peaks in the late arterial phase, which is why
# pancreas protocols scan then; the lesion's HU is the pancreas value plus the spec's delta.
_HU_TABLE: dict[int, tuple[float, float, float]] = {
    0: (-1000, -1000, -1000), 1: (-105, -105, -105), 2: (50, 58, 62), 3: (-95, -95, -95),
    4: (58, 75, 115), 5: (12, 12, 12), 6: (48, 115, 120), 7: (35, 190, 165),
    8: (30, 90, 150), 9: (45, 85, 90), 10: (45, 80, 95), 11: (12, 12, 12),
    12: (-950, -950, -950), 13: (280, 280, 280), 14: (42, 320, 170), 15: (40, 90, 150),
    16: (40, 110, 180), 17: (750, 750, 750), 18: (220, 220, 220), 19: (15, 15, 15),
    20: (-860, -860, -860), 21: (42, 115, 100), 22: (42, 115, 100), 23: (42, 115, 100),
    24: (15, 20, 25), 25: (42, 115, 100), 26: (42, 250, 150), 27: (85, 90, 95),
}
_PHASE_COLUMN = {Phase.NON_CONTRAST: 0, Phase.ARTERIAL: 1, Phase.PORTAL_VENOUS: 2}
# Without contrast a hypo-attenuating lesion shows only a fraction of its enhanced contrast.
_LESION_DELTA_FACTOR = {Phase.NON_CONTRAST: 0.35, Phase.ARTERIAL: 1.0, Phase.PORTAL_VENOUS: 0.85}

PANCREAS_SHAPES = ("normal", "atrophic", "bulky", "lobulated")
_SHAPE_SCALE = {"normal": 1.0, "atrophic": 0.62, "bulky": 1.3, "lobulated": 1.0}


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


# --------------------------------------------------------------------------------------------
# Sampling


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def _waves(rng: np.random.Generator, n: int, wavelength: tuple[float, float],
           amp: tuple[float, float]) -> tuple[tuple[float, float, float, float, float], ...]:
    """Random plane waves (kx, ky, kz, phase, amplitude): a cheap smooth 3-D perturbation."""
    out = []
    for _ in range(n):
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction)
        k = direction * (2 * math.pi / _u(rng, *wavelength))
        out.append((float(k[0]), float(k[1]), float(k[2]), _u(rng, 0, 2 * math.pi), _u(rng, *amp)))
    return tuple(out)


def _resample(points: tuple[Vec3, ...], step_mm: float) -> np.ndarray:
    """A smooth curve through ``points`` sampled every ``step_mm`` of arc length, (n, 3)."""
    p = np.asarray(points, dtype=np.float64)
    # A random walk clipped into a corner repeats a point; the curve is the same without it,
    # and the spline needs its arc length to grow at every point.
    p = p[np.concatenate([[True], np.linalg.norm(np.diff(p, axis=0), axis=1) > 1e-9])]
    if len(p) < 2:
        return p
    chord = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(p, axis=0), axis=1))])
    spline = CubicSpline(chord, p, bc_type="natural")
    dense = spline(np.linspace(0.0, chord[-1], max(8, int(chord[-1] / (step_mm / 4)))))
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(dense, axis=0), axis=1))])
    n = max(2, int(arc[-1] / step_mm) + 1)
    targets = np.linspace(0.0, arc[-1], n)
    return np.stack([np.interp(targets, arc, dense[:, a]) for a in range(3)], axis=1)


def pancreas_centerline(spec: PancreasSpec, step_mm: float = 0.5) -> np.ndarray:
    """The gland's centreline, head to tail, sampled every ``step_mm`` mm, shape (n, 3)."""
    return _resample(spec.centerline, step_mm)


def pancreas_radius(spec: PancreasSpec, centerline: np.ndarray) -> np.ndarray:
    """Half-thickness at each centreline point: full in the head, thin at the neck."""
    x = centerline[:, 0]
    head, neck, body, tail = spec.radii_mm
    knots_x = [x.min(), spec.head_body_x_mm - 8, spec.head_body_x_mm + 6,
               0.5 * (spec.head_body_x_mm + spec.body_tail_x_mm), spec.body_tail_x_mm + 20, x.max()]
    knots_r = [head * 0.85, head, neck, body, tail, tail * 0.7]
    order = np.argsort(knots_x)
    return np.interp(x, np.asarray(knots_x)[order], np.asarray(knots_r)[order])


def location_of(spec: PancreasSpec, x_mm: float) -> Location:
    """Head, body or tail from the position along the gland, by the SMV/aorta convention."""
    if x_mm < spec.head_body_x_mm:
        return Location.HEAD
    if x_mm < spec.body_tail_x_mm:
        return Location.BODY
    return Location.TAIL


def sample_spec(rng: np.random.Generator, *, lesion: bool | None = None) -> PhantomSpec:
    """Draw one synthetic patient. ``lesion=None`` gives a lesion half of the time."""
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy Generator, got {type(rng).__name__}")
    if lesion is None:
        lesion = bool(rng.random() < 0.5)
    fat = _u(rng, 6, 35)
    a = _u(rng, 125, 165) + 0.5 * fat
    b = _u(rng, 90, 120) + 0.5 * fat
    wall = _u(rng, 8, 15)
    A, B = a - fat - wall, b - fat - wall  # the abdominal cavity
    vr = _u(rng, 17, 23)
    spine_y = B - 45 - vr + _u(rng, -5, 5)
    aorta = (_u(rng, 5, 18), spine_y - vr - _u(rng, 9, 14), _u(rng, 9, 13))
    ivc = (_u(rng, -32, -22), spine_y - vr - _u(rng, 5, 12), _u(rng, 9, 13))
    sma = (aorta[0] - _u(rng, 0, 6), aorta[1] - _u(rng, 18, 26), _u(rng, 3.5, 5))
    smv = (sma[0] - _u(rng, 12, 18), sma[1] + _u(rng, -3, 3), _u(rng, 5, 7))

    liver_dome = _u(rng, 110, 150)
    liver = Ellipsoid((-0.5 * A + _u(rng, -10, 5), _u(rng, -0.15, 0.05) * B, liver_dome - 85),
                      (0.5 * A + _u(rng, 0, 15), 0.75 * B, 90 + _u(rng, -10, 15)),
                      (_u(rng, 0.25, 0.45), 0.0))
    left_lobe = Ellipsoid((_u(rng, -5, 25), -0.45 * B, liver_dome - 45),
                          (_u(rng, 40, 70), _u(rng, 25, 40), _u(rng, 30, 45)))
    gallbladder = None if rng.random() < 0.15 else Ellipsoid(
        (-0.3 * A + _u(rng, -10, 10), -0.55 * B, _u(rng, 5, 25)),
        (_u(rng, 12, 18), _u(rng, 12, 18), _u(rng, 25, 40)), (0.0, 0.2))
    spleen = Ellipsoid((0.62 * A + _u(rng, -8, 5), 0.3 * B + _u(rng, -10, 10), _u(rng, 40, 60)),
                       (_u(rng, 20, 30), _u(rng, 35, 55), _u(rng, 45, 65)), (-0.15, 0.0))
    kidney_y = spine_y + _u(rng, -5, 5)
    kidney_right = Ellipsoid((-vr - _u(rng, 45, 55), kidney_y, _u(rng, -50, -25)),
                             (_u(rng, 25, 32), _u(rng, 22, 28), _u(rng, 48, 60)), (0.12, -0.1))
    kidney_left = Ellipsoid((vr + _u(rng, 45, 55), kidney_y, _u(rng, -35, -10)),
                            (_u(rng, 25, 32), _u(rng, 22, 28), _u(rng, 48, 60)), (-0.12, -0.1))
    stomach = Ellipsoid((0.3 * A + _u(rng, -10, 10), -0.35 * B, _u(rng, 35, 60)),
                        (_u(rng, 35, 55), _u(rng, 25, 38), _u(rng, 40, 60)), (0.3, 0.1))
    heart = Ellipsoid((_u(rng, 10, 30), -0.25 * B, liver_dome + _u(rng, 40, 60)),
                      (_u(rng, 55, 70), _u(rng, 40, 55), _u(rng, 45, 60)))

    # Pancreas: a curve from the uncinate process (behind the SMV) through the head (by the
    # duodenum), the neck (in front of the SMV), the body (in front of the SMA and aorta) to
    # the tail at the splenic hilum.
    shape = str(rng.choice(PANCREAS_SHAPES, p=[0.5, 0.15, 0.15, 0.2]))
    scale = _SHAPE_SCALE[shape]
    front = sma[1] - _u(rng, 12, 18)  # the gland's centre lies this far anterior to the SMA
    tail_tip = (spleen.center[0] - spleen.semi[0] - _u(rng, 0, 8),
                spleen.center[1] - _u(rng, 15, 30), spleen.center[2] - _u(rng, 25, 45))
    points = (
        (smv[0] - _u(rng, 5, 12), smv[1] + _u(rng, 8, 14), _u(rng, -40, -28)),
        (smv[0] - _u(rng, 22, 32), front + _u(rng, 2, 10), _u(rng, -18, -8)),
        (smv[0] + _u(rng, -2, 4), front, _u(rng, -4, 4)),
        (aorta[0] + _u(rng, 15, 30), front + _u(rng, -4, 4), _u(rng, 2, 10)),
        (0.5 * (aorta[0] + tail_tip[0]) + 10, 0.5 * (front + tail_tip[1]) + _u(rng, 0, 10),
         _u(rng, 8, 20)),
        tail_tip,
    )
    pancreas = PancreasSpec(
        centerline=points,
        radii_mm=(_u(rng, 13, 18) * scale, _u(rng, 6, 9) * scale, _u(rng, 8, 12) * scale,
                  _u(rng, 7, 11) * scale),
        z_flattening=_u(rng, 1.0, 1.3),
        shape=shape,
        lobulation=_waves(rng, 6, (8, 20), (0.12, 0.25) if shape == "lobulated" else (0.0, 0.05)),
        head_body_x_mm=smv[0] + smv[2],
        body_tail_x_mm=aorta[0] + aorta[2],
        duct_radius_mm=_u(rng, 0.8, 1.6),
    )
    line = pancreas_centerline(pancreas)

    confluence = (smv[0], smv[1] + 4, _u(rng, 2, 8))
    splenic = line[(line[:, 0] > smv[0]) & (line[:, 0] < tail_tip[0] - 5)]
    radius = pancreas_radius(pancreas, splenic)
    vein_r = _u(rng, 3.5, 5)
    splenic_points = [confluence] + [
        (float(p[0]), float(p[1] + r * 0.85 + vein_r * 0.6), float(p[2] + 2)) for p, r in
        zip(splenic[:: max(1, len(splenic) // 5)], radius[:: max(1, len(splenic) // 5)])
    ] + [(spleen.center[0] - spleen.semi[0] * 0.6, spleen.center[1], spleen.center[2] - 10)]
    veins = (
        Tube(tuple(splenic_points[1:]), vein_r),
        Tube((confluence, (confluence[0] - 15, confluence[1] - 5, 30),
              (liver.center[0] * 0.6, liver.center[1] + 10, 55)), _u(rng, 6, 8)),
    )
    duo_r = _u(rng, 10, 14)
    head = points[1]
    duodenum = Tube(
        ((head[0] + 10, front - 30, 30), (head[0] - 20, front - 10, 15),
         (head[0] - 30, head[1] + 10, -10), (head[0] - 25, head[1] + 15, -45),
         (smv[0], aorta[1] - 2, -60), (aorta[0] + 30, aorta[1] - 5, -55)),
        duo_r, wall_mm=3.0, content=int(rng.choice([11, 12, 13], p=[0.6, 0.25, 0.15])))

    crest = -_u(rng, 130, 190)
    bowel = []
    colon_r = _u(rng, 18, 25)
    colon_content = int(rng.choice([11, 12, 13], p=[0.3, 0.55, 0.15]))
    bowel.append(Tube(((-0.75 * A, -0.1 * B, crest - 20), (-0.78 * A, -0.1 * B, -40),
                       (-0.6 * A, -0.5 * B, -15), (0.0, -0.7 * B, -35 + _u(rng, -25, 10)),
                       (0.6 * A, -0.5 * B, 5), (0.78 * A, 0.0, -30),
                       (0.72 * A, 0.1 * B, crest - 20)), colon_r, 3.0, colon_content))
    for _ in range(int(rng.integers(6, 12))):
        n = int(rng.integers(4, 7))
        start = np.array([_u(rng, -0.5, 0.5) * A, _u(rng, -0.7, 0.1) * B,
                          _u(rng, crest - 10, -55)])
        pts = [start]
        for _ in range(n - 1):
            step = rng.normal(size=3)
            step *= 30.0 / np.linalg.norm(step)
            nxt = pts[-1] + step
            nxt[0] = np.clip(nxt[0], -0.55 * A, 0.55 * A)
            nxt[1] = np.clip(nxt[1], -0.75 * B, 0.15 * B)
            nxt[2] = np.clip(nxt[2], crest - 30, -50)
            pts.append(nxt)
        bowel.append(Tube(tuple(tuple(float(v) for v in p) for p in pts), _u(rng, 9, 14), 2.5,
                          int(rng.choice([11, 12, 13], p=[0.6, 0.2, 0.2]))))

    lesion_spec = None
    if lesion:
        location = Location(str(rng.choice(["head", "body", "tail"], p=[0.6, 0.25, 0.15])))
        x = line[:, 0]
        part = {Location.HEAD: x < pancreas.head_body_x_mm - 3,
                Location.BODY: (x > pancreas.head_body_x_mm + 3)
                & (x < pancreas.body_tail_x_mm - 3),
                Location.TAIL: (x > pancreas.body_tail_x_mm + 3) & (x < x.max() - 8)}[location]
        candidates = np.flatnonzero(part)
        if candidates.size == 0:  # a very short body: fall back to the head
            location, candidates = Location.HEAD, np.flatnonzero(x < pancreas.head_body_x_mm)
        centre = line[int(rng.choice(candidates))]
        diameter = float(np.clip(rng.lognormal(math.log(18), 0.5), 5.0, 40.0))
        lesion_spec = LesionSpec(
            center_mm=tuple(float(v) for v in centre),  # type: ignore[arg-type]
            diameter_mm=diameter, location=location, delta_hu=_u(rng, -80, -10),
            irregularity=_waves(rng, 5, (0.6 * diameter, 1.5 * diameter), (0.02, 0.05)),
        )

    return PhantomSpec(
        body_semi_mm=(a, b), subcutaneous_fat_mm=fat, wall_muscle_mm=wall, spine_y_mm=spine_y,
        vertebra_radius_mm=vr, aorta=aorta, ivc=ivc, sma=sma, smv=smv, liver=liver,
        liver_left_lobe=left_lobe, gallbladder=gallbladder, spleen=spleen,
        kidney_right=kidney_right, kidney_left=kidney_left, stomach=stomach,
        stomach_gas_fraction=_u(rng, 0.0, 0.4), heart=heart, liver_dome_z_mm=liver_dome,
        iliac_crest_z_mm=crest, pancreas=pancreas, veins=veins, duodenum=duodenum,
        bowel=tuple(bowel), ribs=bool(rng.random() < 0.8),
        phase=Phase(str(rng.choice([p.value for p in Phase], p=[0.2, 0.3, 0.5]))),
        noise_sigma_hu=_u(rng, 6, 22), noise_seed=int(rng.integers(0, 2**31 - 1)),
        scan_center_z_mm=_u(rng, -35, -5), lesion=lesion_spec,
    )


# --------------------------------------------------------------------------------------------
# Rendering


@dataclass(frozen=True, slots=True)
class _Grid:
    x: np.ndarray  # voxel centres along i (mm)
    y: np.ndarray  # along j
    z: np.ndarray  # along k

    def box(self, lo: Vec3, hi: Vec3) -> tuple[slice, slice, slice] | None:
        """Index slices (k, j, i) of the voxels whose centres lie in the mm box, or None."""
        out = []
        for axis, a, b in ((self.z, lo[2], hi[2]), (self.y, lo[1], hi[1]), (self.x, lo[0], hi[0])):
            start, stop = np.searchsorted(axis, a, "left"), np.searchsorted(axis, b, "right")
            if stop <= start:
                return None
            out.append(slice(int(start), int(stop)))
        return out[0], out[1], out[2]

    def open(self, sl: tuple[slice, slice, slice]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Broadcastable x, y, z coordinates of a box."""
        return (self.x[sl[2]][None, None, :], self.y[sl[1]][None, :, None],
                self.z[sl[0]][:, None, None])


def _paint_mask(organs: np.ndarray, sl: tuple[slice, slice, slice], mask: np.ndarray, code: int,
                allowed: np.ndarray | None) -> None:
    view = organs[sl]
    if allowed is not None:
        mask = mask & allowed[sl]
    view[mask] = code


def _ellipsoid_mask(grid: _Grid, e: Ellipsoid, scale: float = 1.0
                    ) -> tuple[tuple[slice, slice, slice], np.ndarray] | None:
    (cx, cy, cz), (ax, ay, az) = e.center, tuple(s * scale for s in e.semi)
    drift_x, drift_y = abs(e.shear[0]) * az, abs(e.shear[1]) * az
    sl = grid.box((cx - ax - drift_x, cy - ay - drift_y, cz - az),
                  (cx + ax + drift_x, cy + ay + drift_y, cz + az))
    if sl is None:
        return None
    x, y, z = grid.open(sl)
    dz = z - cz
    mask = (((x - cx - e.shear[0] * dz) / ax) ** 2 + ((y - cy - e.shear[1] * dz) / ay) ** 2
            + (dz / az) ** 2) <= 1.0
    return sl, mask


def _paint_ellipsoid(organs: np.ndarray, grid: _Grid, e: Ellipsoid, code: int,
                     allowed: np.ndarray | None = None, scale: float = 1.0) -> None:
    found = _ellipsoid_mask(grid, e, scale)
    if found is not None:
        _paint_mask(organs, found[0], found[1], code, allowed)


def _paint_column(organs: np.ndarray, grid: _Grid, x: float, y: float, r: float, z0: float,
                  z1: float, code: int, allowed: np.ndarray | None = None,
                  semi_y: float | None = None) -> None:
    """A vertical elliptic cylinder from z0 to z1."""
    ry = semi_y or r
    sl = grid.box((x - r, y - ry, z0), (x + r, y + ry, z1))
    if sl is None:
        return
    gx, gy, _ = grid.open(sl)
    mask = ((gx - x) / r) ** 2 + ((gy - y) / ry) ** 2 <= 1.0
    mask = np.broadcast_to(mask, organs[sl].shape)
    _paint_mask(organs, sl, mask, code, allowed)


def _tube_query(grid: _Grid, line: np.ndarray, radius: np.ndarray, z_scale: float = 1.0
                ) -> tuple[tuple[slice, slice, slice], np.ndarray, np.ndarray, np.ndarray] | None:
    """Distance of each box voxel to a sampled curve, with the nearest sample's index.

    Returns the box, the distance (inf beyond the largest radius), the nearest index and
    the query coordinates (n, 3) so callers can add perturbations.
    """
    r_max = float(radius.max())
    lo = line.min(axis=0) - r_max * np.array([1, 1, z_scale]) - 1
    hi = line.max(axis=0) + r_max * np.array([1, 1, z_scale]) + 1
    sl = grid.box(tuple(lo), tuple(hi))
    if sl is None:
        return None
    x, y, z = grid.open(sl)
    shape = (z.shape[0], y.shape[1], x.shape[2])
    pts = np.empty(shape + (3,), dtype=np.float64)
    pts[..., 0], pts[..., 1], pts[..., 2] = x, y, z / z_scale
    scaled = line / np.array([1.0, 1.0, z_scale])
    dist, index = cKDTree(scaled).query(pts.reshape(-1, 3), distance_upper_bound=r_max + 1.0)
    index = np.minimum(index, len(line) - 1)
    return sl, dist.reshape(shape), index.reshape(shape), pts


def _waves_field(pts: np.ndarray, waves: tuple[tuple[float, float, float, float, float], ...]
                 ) -> np.ndarray:
    field = np.zeros(pts.shape[:-1])
    for kx, ky, kz, phase, amp in waves:
        field += amp * np.sin(pts[..., 0] * kx + pts[..., 1] * ky + pts[..., 2] * kz + phase)
    return field


def _paint_tube(organs: np.ndarray, grid: _Grid, tube: Tube, code: int,
                allowed: np.ndarray | None = None) -> None:
    line = _resample(tube.points, 1.0)
    found = _tube_query(grid, line, np.full(len(line), tube.radius_mm))
    if found is None:
        return
    sl, dist, _, _ = found
    inside = dist <= tube.radius_mm
    if tube.wall_mm > 0:
        _paint_mask(organs, sl, inside, code, allowed)
        _paint_mask(organs, sl, dist <= tube.radius_mm - tube.wall_mm, tube.content, allowed)
    else:
        _paint_mask(organs, sl, inside, code, allowed)


def _grid(shape_kji: tuple[int, int, int], spacing_kji: tuple[float, float, float],
          z_center: float) -> _Grid:
    nk, nj, ni = shape_kji
    sk, sj, si = spacing_kji
    return _Grid(x=(np.arange(ni) - (ni - 1) / 2) * si, y=(np.arange(nj) - (nj - 1) / 2) * sj,
                 z=z_center + (np.arange(nk) - (nk - 1) / 2) * sk)


def _check_grid(shape_kji: tuple[int, int, int], spacing_kji: tuple[float, float, float]) -> None:
    if len(shape_kji) != 3 or any(int(n) != n or n < 1 for n in shape_kji):
        raise ValueError(f"shape_kji must be three positive integers, got {shape_kji!r}")
    if len(spacing_kji) != 3 or not all(math.isfinite(s) and 0.1 <= s <= 20 for s in spacing_kji):
        raise ValueError(f"spacing_kji must be three spacings in 0.1..20 mm, got {spacing_kji!r}")


def _body(organs: np.ndarray, grid: _Grid, spec: PhantomSpec) -> np.ndarray:
    """Skin, fat, muscle wall and the cavity; returns the cavity mask."""
    a0, b0 = spec.body_semi_mm
    x, y, z = grid.x[None, None, :], grid.y[None, :, None], grid.z[:, None, None]
    # Wider towards the pelvis, narrower towards the chest; the back is flatter (power 3).
    widen = 1.0 - 0.0004 * z
    a = a0 * widen
    yy_power = np.where(y > 0, 3.0, 2.0)

    def inside(da: float, db: float) -> np.ndarray:
        return (np.abs(x / (a - da)) ** 2 + np.abs(y / (b0 - db)) ** yy_power) <= 1.0

    fat, wall = spec.subcutaneous_fat_mm, spec.wall_muscle_mm
    organs[inside(0, 0)] = _CODE["subcutaneous_fat"]
    organs[inside(fat, fat)] = _CODE["muscle"]
    # The cavity stops at the spine in the midline but reaches back around the kidneys.
    behind = (y < spec.spine_y_mm + 15) | (np.abs(x) > spec.vertebra_radius_mm + 40)
    cavity = inside(fat + wall, fat + wall) & behind
    cavity = np.broadcast_to(cavity, organs.shape)
    organs[cavity] = _CODE["visceral_fat"]
    return np.array(cavity)


def _lungs(organs: np.ndarray, grid: _Grid, spec: PhantomSpec, cavity: np.ndarray) -> None:
    # Lungs fill the cavity above the diaphragm, which dips lowest posteriorly.
    b = spec.body_semi_mm[1]
    y, z = grid.y[None, :, None], grid.z[:, None, None]
    diaphragm = spec.liver_dome_z_mm - 10 - 55 * np.clip((y + b) / (2 * b), 0, 1) ** 2
    lung = np.broadcast_to(z > diaphragm, organs.shape) & cavity
    organs[lung] = _CODE["lung"]
    _paint_ellipsoid(organs, grid, spec.heart, _CODE["heart"], cavity)


def _spine(organs: np.ndarray, grid: _Grid, spec: PhantomSpec) -> None:
    vr, vy = spec.vertebra_radius_mm, spec.spine_y_mm
    z0, z1 = float(grid.z[0]) - 5, float(grid.z[-1]) + 5
    # Paraspinal and psoas muscles first, bone over them.
    fat_wall = spec.subcutaneous_fat_mm
    back = spec.body_semi_mm[1] - fat_wall
    for side in (-1, 1):
        _paint_column(organs, grid, side * (vr + 18), vy + vr + 25, 26, z0, z1, _CODE["muscle"],
                      semi_y=min(30.0, back - vy - vr - 28))
    psoas_top = -30.0
    sl = grid.box((-vr - 60, vy - 40, z0), (vr + 60, vy + 30, psoas_top))
    if sl is not None:
        x, y, z = grid.open(sl)
        grow = np.clip((psoas_top - z) / 150.0, 0, 1)
        rx = 6 + 18 * grow
        for side in (-1, 1):
            cx = side * (vr + rx + 2)
            mask = ((x - cx) / rx) ** 2 + ((y - vy + 5) / (rx * 0.9)) ** 2 <= 1.0
            _paint_mask(organs, sl, mask, _CODE["muscle"], None)
    # Vertebral bodies with discs every ~32 mm, a cortical shell and marrow inside.
    sl = grid.box((-vr - 30, vy - vr, z0), (vr + 30, vy + vr + 45, z1))
    if sl is None:
        return
    x, y, z = grid.open(sl)
    is_disc = ((z - 7.0) % 32.0) < 6.0
    r = np.sqrt(x ** 2 + (y - vy) ** 2)
    body = r <= vr
    view = organs[sl]
    view[body & ~is_disc] = _CODE["cortical_bone"]
    view[(r <= vr - 2.5) & ~is_disc] = _CODE["cancellous_bone"]
    view[body & is_disc] = _CODE["disc"]
    # Posterior arch: pedicles/laminae and the spinous process, then the canal.
    arch = (((x / (vr * 0.9)) ** 2 + ((y - vy - vr - 10) / 12) ** 2) <= 1.0)
    spinous = (np.abs(x) <= 4.5) & (y > vy + vr) & (y < vy + vr + 42)
    view[(arch | spinous) & ~is_disc] = _CODE["cortical_bone"]
    canal = (x ** 2 + (y - vy - vr - 9) ** 2) <= 8.5 ** 2
    view[np.broadcast_to(canal, view.shape)] = _CODE["spinal_canal"]


def _ribs_and_pelvis(organs: np.ndarray, grid: _Grid, spec: PhantomSpec) -> None:
    a0, b0 = spec.body_semi_mm
    inner = spec.subcutaneous_fat_mm + spec.wall_muscle_mm * 0.5
    x, y, z = grid.x[None, None, :], grid.y[None, :, None], grid.z[:, None, None]
    rho = np.sqrt((x / (a0 * (1 - 0.0004 * z) - inner)) ** 2 + (y / (b0 - inner)) ** 2)
    if spec.ribs:
        # Ribs run obliquely, falling towards the front, so an axial slice cuts short arcs.
        band = (((z - 3.0 + 45.0 * y / b0) % 28.0) < 8.0) & (z > -70)
        rib = (np.abs(rho - 1.0) < 0.035) & band & (y > -0.35 * b0)
        organs[np.broadcast_to(rib, organs.shape)] = _CODE["cortical_bone"]
    # Iliac wings: curved plates posterolaterally below the crest.
    crest = spec.iliac_crest_z_mm
    wing = (np.abs(rho - 0.82) < 0.05) & (z < crest) & (y > -0.2 * b0) & (np.abs(x) > 0.35 * a0)
    organs[np.broadcast_to(wing, organs.shape)] = _CODE["cortical_bone"]


def _vessels(organs: np.ndarray, grid: _Grid, spec: PhantomSpec) -> None:
    _z0, z1 = float(grid.z[0]) - 5, float(grid.z[-1]) + 5
    ax, ay, ar = spec.aorta
    bifurcation = spec.iliac_crest_z_mm + 30
    _paint_column(organs, grid, ax, ay, ar, bifurcation, min(z1, spec.liver_dome_z_mm + 20),
                  _CODE["artery"])
    for side in (-1, 1):
        _paint_tube(organs, grid, Tube(((ax, ay, bifurcation + 5),
                                        (ax + side * 40, ay + 10, bifurcation - 60),
                                        (ax + side * 70, ay + 5, bifurcation - 140)), ar * 0.6),
                    _CODE["artery"])
    ix, iy, ir = spec.ivc
    _paint_column(organs, grid, ix, iy, ir, bifurcation - 10, spec.liver_dome_z_mm,
                  _CODE["ivc"], semi_y=ir * 0.8)
    sx, sy, sr = spec.sma
    _paint_tube(organs, grid, Tube(((ax, ay - ar + 2, 20), (sx, sy, 5), (sx, sy, -40),
                                    (sx - 10, sy - 15, -120)), sr), _CODE["artery"])
    vx, vy, vr = spec.smv
    _paint_tube(organs, grid, Tube(((vx, vy + 4, 6), (vx, vy, -20), (vx - 5, vy, -60),
                                    (vx - 15, vy - 15, -120)), vr), _CODE["portal_vein"])
    for vein in spec.veins:
        _paint_tube(organs, grid, vein, _CODE["portal_vein"])


def _pancreas(organs: np.ndarray, grid: _Grid, p: PancreasSpec) -> None:
    line = pancreas_centerline(p)
    radius = pancreas_radius(p, line)
    found = _tube_query(grid, line, radius * 1.3, p.z_flattening)
    if found is None:
        return
    sl, dist, index, pts = found
    if p.lobulation:
        bumps = _waves_field(pts, p.lobulation)
    else:
        bumps = 0.0
    inside = dist <= radius[index] * (1.0 + bumps)
    nearest_x = line[index, 0]
    part = np.where(nearest_x < p.head_body_x_mm, _CODE["pancreas_head"],
                    np.where(nearest_x < p.body_tail_x_mm, _CODE["pancreas_body"],
                             _CODE["pancreas_tail"])).astype(np.uint8)
    view = organs[sl]
    view[inside] = part[inside]
    view[inside & (dist <= p.duct_radius_mm)] = _CODE["pancreatic_duct"]


def _step(axis: np.ndarray) -> float:
    return float(axis[1] - axis[0]) if axis.size > 1 else 1.0


def _lesion(organs: np.ndarray, grid: _Grid, lesion: LesionSpec) -> None:
    r = lesion.diameter_mm / 2.0
    c = np.asarray(lesion.center_mm)
    # At least one voxel either side, so even a sub-voxel lesion finds its nearest voxels.
    steps = np.array([_step(grid.x), _step(grid.y), _step(grid.z)])
    half = np.maximum(1.3 * r, steps)
    sl = grid.box(tuple(c - half), tuple(c + half))
    if sl is None:
        return
    x, y, z = grid.open(sl)
    shape = organs[sl].shape
    pts = np.empty(shape + (3,))
    pts[..., 0], pts[..., 1], pts[..., 2] = x - c[0], y - c[1], z - c[2]
    rho = np.sqrt((pts ** 2).sum(axis=-1)) / r
    inside = rho <= 1.0 + _waves_field(pts, lesion.irregularity)
    within = all(axis[0] - step / 2 <= v <= axis[-1] + step / 2
                 for axis, step, v in zip((grid.x, grid.y, grid.z), steps, c))
    if not inside.any() and within:
        # A lesion smaller than a voxel still marks the voxel holding its centre, so truth
        # and labels never disagree on coarse grids.
        inside = rho == rho.min()
    organs[sl][inside] = LESION_CODE


def render(spec: PhantomSpec, *, shape_kji: tuple[int, int, int],
           spacing_kji: tuple[float, float, float], z_center_mm: float | None = None) -> Phantom:
    """Voxelise ``spec`` on a grid centred in-plane on the body and in z on ``z_center_mm``
    (default ``spec.scan_center_z_mm``), with CT-like noise and partial-volume blur."""
    if not isinstance(spec, PhantomSpec):
        raise TypeError(f"spec must be a PhantomSpec, got {type(spec).__name__}")
    shape_kji = tuple(int(n) for n in shape_kji)  # type: ignore[assignment]
    spacing_kji = tuple(float(s) for s in spacing_kji)  # type: ignore[assignment]
    _check_grid(shape_kji, spacing_kji)
    z_center = spec.scan_center_z_mm if z_center_mm is None else float(z_center_mm)
    grid = _grid(shape_kji, spacing_kji, z_center)
    organs = np.zeros(shape_kji, dtype=np.uint8)

    cavity = _body(organs, grid, spec)
    _lungs(organs, grid, spec, cavity)
    for e, code in ((spec.liver, "liver"), (spec.liver_left_lobe, "liver"),
                    (spec.spleen, "spleen")):
        _paint_ellipsoid(organs, grid, e, _CODE[code], cavity)
    if spec.gallbladder is not None:
        _paint_ellipsoid(organs, grid, spec.gallbladder, _CODE["gallbladder"], cavity)
    _stomach(organs, grid, spec, cavity)
    for tube in spec.bowel:
        _paint_tube(organs, grid, tube, _CODE["bowel_wall"], cavity)
    for kidney in (spec.kidney_right, spec.kidney_left):
        _paint_ellipsoid(organs, grid, kidney, _CODE["kidney_cortex"])
        _paint_ellipsoid(organs, grid, kidney, _CODE["kidney_medulla"], scale=0.62)
    _paint_tube(organs, grid, spec.duodenum, _CODE["bowel_wall"], cavity)
    _spine(organs, grid, spec)
    _ribs_and_pelvis(organs, grid, spec)
    _vessels(organs, grid, spec)
    _pancreas(organs, grid, spec.pancreas)
    if spec.lesion is not None:
        _lesion(organs, grid, spec.lesion)

    hu = _attenuation(organs, spec, spacing_kji)
    labels = np.zeros(shape_kji, dtype=np.uint8)
    labels[np.isin(organs, PANCREAS_CODES)] = 1
    labels[organs == LESION_CODE] = 2

    origin = (float(grid.x[0]), float(grid.y[0]), float(grid.z[0]))
    centre_kji = diameter = location = None
    if spec.lesion is not None and np.any(labels == 2):
        cx, cy, cz = spec.lesion.center_mm
        centre_kji = ((cz - origin[2]) / spacing_kji[0], (cy - origin[1]) / spacing_kji[1],
                      (cx - origin[0]) / spacing_kji[2])
        diameter, location = spec.lesion.diameter_mm, spec.lesion.location
    elif spec.lesion is not None:
        logger.debug("lesion at %s lies outside the rendered range", spec.lesion.center_mm)
    return Phantom(hu=hu, labels=labels, organs=organs, spacing_kji=spacing_kji,  # type: ignore[arg-type]
                   origin_lps=origin, spec=spec, lesion_center_kji=centre_kji,
                   lesion_diameter_mm=diameter, lesion_location=location)


def _stomach(organs: np.ndarray, grid: _Grid, spec: PhantomSpec, cavity: np.ndarray) -> None:
    found = _ellipsoid_mask(grid, spec.stomach)
    if found is None:
        return
    sl, outer = found
    inner_found = _ellipsoid_mask(grid, Ellipsoid(
        spec.stomach.center, tuple(s - 5 for s in spec.stomach.semi), spec.stomach.shear))
    _paint_mask(organs, sl, outer, _CODE["stomach_wall"], cavity)
    if inner_found is None:
        return
    isl, inner = inner_found
    _paint_mask(organs, isl, inner, _CODE["luminal_fluid"], cavity)
    # Gas rises to the anterior (non-dependent) part of a supine patient's stomach.
    _, y, _ = grid.open(isl)
    level = spec.stomach.center[1] - spec.stomach.semi[1] * (1 - 2 * spec.stomach_gas_fraction)
    _paint_mask(organs, isl, inner & (y < level), _CODE["luminal_gas"], cavity)


def _attenuation(organs: np.ndarray, spec: PhantomSpec,
                 spacing_kji: tuple[float, float, float]) -> np.ndarray:
    column = _PHASE_COLUMN[spec.phase]
    lut = np.zeros(256, dtype=np.float32)
    for code, values in _HU_TABLE.items():
        lut[code] = values[column]
    if spec.lesion is not None:
        lut[LESION_CODE] = lut[_CODE["pancreas_body"]] + spec.lesion.delta_hu * (
            _LESION_DELTA_FACTOR[spec.phase])
    hu = lut[organs]
    rng = np.random.default_rng(spec.noise_seed)
    # Partial volume: a voxel averages the anatomy over its extent, so blur by about half a
    # voxel along each axis (in voxels, since the voxel is the averaging kernel).
    hu = ndimage.gaussian_filter(hu, sigma=(0.45, 0.45, 0.45), mode="nearest")
    # Organ texture: low-amplitude, smooth (a few mm) variation inside soft tissue.
    texture = ndimage.gaussian_filter(rng.standard_normal(organs.shape, dtype=np.float32),
                                      sigma=tuple(min(3.0, 2.0 / s) for s in spacing_kji))
    texture *= 4.0 / max(float(texture.std()), 1e-6)
    soft = (organs > 1) & (organs != _CODE["lung"]) & (organs != _CODE["luminal_gas"])
    hu += np.where(soft, texture, 0.0).astype(np.float32)
    # Quantum noise: correlated in-plane by the reconstruction kernel, and lower in thicker
    # slices (more photons per voxel), relative to a 2.5 mm reference slice.
    sigma = spec.noise_sigma_hu * math.sqrt(2.5 / spacing_kji[0])
    noise = ndimage.gaussian_filter(rng.standard_normal(organs.shape, dtype=np.float32),
                                    sigma=(0.0, 0.6, 0.6))
    noise *= sigma / max(float(noise.std()), 1e-6)
    body = organs > 0
    hu += np.where(body, noise, noise * 0.2)
    np.clip(hu, -1024.0, 3071.0, out=hu)
    return hu.astype(np.float32, copy=False)


# --------------------------------------------------------------------------------------------
# Other body regions, for the archive's distractor series


REGIONS = ("head", "chest", "pelvis")


def render_region(rng: np.random.Generator, region: str, *, shape_kji: tuple[int, int, int],
                  spacing_kji: tuple[float, float, float]) -> np.ndarray:
    """A plain but plausible HU volume [k, j, i] of the head, chest or pelvis."""
    if region not in REGIONS:
        raise ValueError(f"region must be one of {REGIONS}, got {region!r}")
    shape_kji = tuple(int(n) for n in shape_kji)  # type: ignore[assignment]
    spacing_kji = tuple(float(s) for s in spacing_kji)  # type: ignore[assignment]
    _check_grid(shape_kji, spacing_kji)
    grid = _grid(shape_kji, spacing_kji, 0.0)
    x, y, z = grid.x[None, None, :], grid.y[None, :, None], grid.z[:, None, None]
    hu = np.full(shape_kji, -1000.0, dtype=np.float32)

    def put(mask: np.ndarray, value: float) -> None:
        hu[np.broadcast_to(mask, shape_kji)] = value

    if region == "head":
        a, b, c = _u(rng, 70, 80), _u(rng, 90, 100), _u(rng, 80, 95)
        rho = np.sqrt((x / a) ** 2 + (y / b) ** 2 + (z / c) ** 2)
        put(rho <= 1.0, 40)  # scalp
        put(rho <= 0.96, 1100)  # skull
        put(rho <= 0.9, 8)  # CSF rim
        put(rho <= 0.87, 36)  # brain
        put((np.abs(x) < 12) & (np.abs(y + 5) < 25) & (np.abs(z - 10) < 15) & (np.abs(x) > 2), 6)
    elif region == "chest":
        a, b = _u(rng, 150, 190), _u(rng, 100, 130)
        body = (x / a) ** 2 + (y / b) ** 2 <= 1.0
        put(body, -100)
        put((x / (a - 15)) ** 2 + (y / (b - 15)) ** 2 <= 1.0, 50)
        for side in (-1, 1):
            put(((x - side * a * 0.45) / (a * 0.4)) ** 2 + (y / (b * 0.75)) ** 2
                + (z / 200.0) ** 2 <= 1.0, -850)
        put(((x - 20) / 55) ** 2 + ((y + 20) / 45) ** 2 + ((z + 20) / 55) ** 2 <= 1.0, 45)
        put((x - 10) ** 2 + (y - 25) ** 2 <= 13 ** 2, 45 + _u(rng, 0, 250))  # aorta
        put(x ** 2 + (y - b + 45) ** 2 <= 18 ** 2, 300)  # vertebra
        rho = np.sqrt((x / (a - 20)) ** 2 + (y / (b - 20)) ** 2)
        put((np.abs(rho - 1.0) < 0.04) & (((z + 5) % 26) < 9), 700)  # ribs
    else:
        a, b = _u(rng, 160, 200), _u(rng, 100, 130)
        put((x / a) ** 2 + (y / b) ** 2 <= 1.0, -100)
        put((x / (a - 25)) ** 2 + (y / (b - 25)) ** 2 <= 1.0, 50)
        rho = np.sqrt((x / (a - 40)) ** 2 + (y / (b - 35)) ** 2)
        put((np.abs(rho - 0.8) < 0.07) & (y > -0.3 * b), 700)  # pelvic ring
        for side in (-1, 1):
            put((x - side * (a - 75)) ** 2 + (y + 5) ** 2 + (z + 30) ** 2 <= 24 ** 2, 400)
        put((x / 45) ** 2 + ((y + 35) / 35) ** 2 + (z / 40) ** 2 <= 1.0, 8)  # bladder
        put(x ** 2 + (y - 35) ** 2 <= 14 ** 2, -800)  # rectal gas
    hu = ndimage.gaussian_filter(hu, sigma=0.5, mode="nearest")
    hu += rng.normal(0.0, _u(rng, 8, 20), size=shape_kji).astype(np.float32)
    return np.clip(hu, -1024.0, 3071.0).astype(np.float32)
