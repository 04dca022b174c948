"""Drawing a synthetic patient: ``sample_spec`` turns a random generator into a ``PhantomSpec``,
and the pancreas's centreline, thickness and regions follow from its spec."""

from __future__ import annotations

import math

import numpy as np
from scipy.interpolate import CubicSpline

from screen.records import Location
from screen.synth.anatomy import PANCREAS_SHAPES, Phase, Vec3
from screen.synth.spec import Ellipsoid, LesionSpec, PancreasSpec, PhantomSpec, Tube

_SHAPE_SCALE = {"normal": 1.0, "atrophic": 0.62, "bulky": 1.3, "lobulated": 1.0}


def uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def plane_waves(rng: np.random.Generator, n: int, wavelength: tuple[float, float],
           amp: tuple[float, float]) -> tuple[tuple[float, float, float, float, float], ...]:
    """Random plane waves (kx, ky, kz, phase, amplitude): a cheap smooth 3-D perturbation."""
    out = []
    for _ in range(n):
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction)
        k = direction * (2 * math.pi / uniform(rng, *wavelength))
        out.append((float(k[0]), float(k[1]), float(k[2]), uniform(rng, 0, 2 * math.pi), uniform(rng, *amp)))
    return tuple(out)


def resample_curve(points: tuple[Vec3, ...], step_mm: float) -> np.ndarray:
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
    return resample_curve(spec.centerline, step_mm)


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
    fat = uniform(rng, 6, 35)
    a = uniform(rng, 125, 165) + 0.5 * fat
    b = uniform(rng, 90, 120) + 0.5 * fat
    wall = uniform(rng, 8, 15)
    A, B = a - fat - wall, b - fat - wall  # the abdominal cavity
    vr = uniform(rng, 17, 23)
    spine_y = B - 45 - vr + uniform(rng, -5, 5)
    aorta = (uniform(rng, 5, 18), spine_y - vr - uniform(rng, 9, 14), uniform(rng, 9, 13))
    ivc = (uniform(rng, -32, -22), spine_y - vr - uniform(rng, 5, 12), uniform(rng, 9, 13))
    sma = (aorta[0] - uniform(rng, 0, 6), aorta[1] - uniform(rng, 18, 26), uniform(rng, 3.5, 5))
    smv = (sma[0] - uniform(rng, 12, 18), sma[1] + uniform(rng, -3, 3), uniform(rng, 5, 7))

    liver_dome = uniform(rng, 110, 150)
    liver = Ellipsoid((-0.5 * A + uniform(rng, -10, 5), uniform(rng, -0.15, 0.05) * B, liver_dome - 85),
                      (0.5 * A + uniform(rng, 0, 15), 0.75 * B, 90 + uniform(rng, -10, 15)),
                      (uniform(rng, 0.25, 0.45), 0.0))
    left_lobe = Ellipsoid((uniform(rng, -5, 25), -0.45 * B, liver_dome - 45),
                          (uniform(rng, 40, 70), uniform(rng, 25, 40), uniform(rng, 30, 45)))
    gallbladder = None if rng.random() < 0.15 else Ellipsoid(
        (-0.3 * A + uniform(rng, -10, 10), -0.55 * B, uniform(rng, 5, 25)),
        (uniform(rng, 12, 18), uniform(rng, 12, 18), uniform(rng, 25, 40)), (0.0, 0.2))
    spleen = Ellipsoid((0.62 * A + uniform(rng, -8, 5), 0.3 * B + uniform(rng, -10, 10), uniform(rng, 40, 60)),
                       (uniform(rng, 20, 30), uniform(rng, 35, 55), uniform(rng, 45, 65)), (-0.15, 0.0))
    kidney_y = spine_y + uniform(rng, -5, 5)
    kidney_right = Ellipsoid((-vr - uniform(rng, 45, 55), kidney_y, uniform(rng, -50, -25)),
                             (uniform(rng, 25, 32), uniform(rng, 22, 28), uniform(rng, 48, 60)), (0.12, -0.1))
    kidney_left = Ellipsoid((vr + uniform(rng, 45, 55), kidney_y, uniform(rng, -35, -10)),
                            (uniform(rng, 25, 32), uniform(rng, 22, 28), uniform(rng, 48, 60)), (-0.12, -0.1))
    stomach = Ellipsoid((0.3 * A + uniform(rng, -10, 10), -0.35 * B, uniform(rng, 35, 60)),
                        (uniform(rng, 35, 55), uniform(rng, 25, 38), uniform(rng, 40, 60)), (0.3, 0.1))
    heart = Ellipsoid((uniform(rng, 10, 30), -0.25 * B, liver_dome + uniform(rng, 40, 60)),
                      (uniform(rng, 55, 70), uniform(rng, 40, 55), uniform(rng, 45, 60)))

    # Pancreas: a curve from the uncinate process (behind the SMV) through the head (by the
    # duodenum), the neck (in front of the SMV), the body (in front of the SMA and aorta) to
    # the tail at the splenic hilum.
    shape = str(rng.choice(PANCREAS_SHAPES, p=[0.5, 0.15, 0.15, 0.2]))
    scale = _SHAPE_SCALE[shape]
    front = sma[1] - uniform(rng, 12, 18)  # the gland's centre lies this far anterior to the SMA
    tail_tip = (spleen.center[0] - spleen.semi[0] - uniform(rng, 0, 8),
                spleen.center[1] - uniform(rng, 15, 30), spleen.center[2] - uniform(rng, 25, 45))
    points = (
        (smv[0] - uniform(rng, 5, 12), smv[1] + uniform(rng, 8, 14), uniform(rng, -40, -28)),
        (smv[0] - uniform(rng, 22, 32), front + uniform(rng, 2, 10), uniform(rng, -18, -8)),
        (smv[0] + uniform(rng, -2, 4), front, uniform(rng, -4, 4)),
        (aorta[0] + uniform(rng, 15, 30), front + uniform(rng, -4, 4), uniform(rng, 2, 10)),
        (0.5 * (aorta[0] + tail_tip[0]) + 10, 0.5 * (front + tail_tip[1]) + uniform(rng, 0, 10),
         uniform(rng, 8, 20)),
        tail_tip,
    )
    pancreas = PancreasSpec(
        centerline=points,
        radii_mm=(uniform(rng, 13, 18) * scale, uniform(rng, 6, 9) * scale, uniform(rng, 8, 12) * scale,
                  uniform(rng, 7, 11) * scale),
        z_flattening=uniform(rng, 1.0, 1.3),
        shape=shape,
        lobulation=plane_waves(rng, 6, (8, 20), (0.12, 0.25) if shape == "lobulated" else (0.0, 0.05)),
        head_body_x_mm=smv[0] + smv[2],
        body_tail_x_mm=aorta[0] + aorta[2],
        duct_radius_mm=uniform(rng, 0.8, 1.6),
    )
    line = pancreas_centerline(pancreas)

    confluence = (smv[0], smv[1] + 4, uniform(rng, 2, 8))
    splenic = line[(line[:, 0] > smv[0]) & (line[:, 0] < tail_tip[0] - 5)]
    radius = pancreas_radius(pancreas, splenic)
    vein_r = uniform(rng, 3.5, 5)
    splenic_points = [confluence] + [
        (float(p[0]), float(p[1] + r * 0.85 + vein_r * 0.6), float(p[2] + 2)) for p, r in
        zip(splenic[:: max(1, len(splenic) // 5)], radius[:: max(1, len(splenic) // 5)])
    ] + [(spleen.center[0] - spleen.semi[0] * 0.6, spleen.center[1], spleen.center[2] - 10)]
    veins = (
        Tube(tuple(splenic_points[1:]), vein_r),
        Tube((confluence, (confluence[0] - 15, confluence[1] - 5, 30),
              (liver.center[0] * 0.6, liver.center[1] + 10, 55)), uniform(rng, 6, 8)),
    )
    duo_r = uniform(rng, 10, 14)
    head = points[1]
    duodenum = Tube(
        ((head[0] + 10, front - 30, 30), (head[0] - 20, front - 10, 15),
         (head[0] - 30, head[1] + 10, -10), (head[0] - 25, head[1] + 15, -45),
         (smv[0], aorta[1] - 2, -60), (aorta[0] + 30, aorta[1] - 5, -55)),
        duo_r, wall_mm=3.0, content=int(rng.choice([11, 12, 13], p=[0.6, 0.25, 0.15])))

    crest = -uniform(rng, 130, 190)
    bowel = []
    colon_r = uniform(rng, 18, 25)
    colon_content = int(rng.choice([11, 12, 13], p=[0.3, 0.55, 0.15]))
    bowel.append(Tube(((-0.75 * A, -0.1 * B, crest - 20), (-0.78 * A, -0.1 * B, -40),
                       (-0.6 * A, -0.5 * B, -15), (0.0, -0.7 * B, -35 + uniform(rng, -25, 10)),
                       (0.6 * A, -0.5 * B, 5), (0.78 * A, 0.0, -30),
                       (0.72 * A, 0.1 * B, crest - 20)), colon_r, 3.0, colon_content))
    for _ in range(int(rng.integers(6, 12))):
        n = int(rng.integers(4, 7))
        start = np.array([uniform(rng, -0.5, 0.5) * A, uniform(rng, -0.7, 0.1) * B,
                          uniform(rng, crest - 10, -55)])
        pts = [start]
        for _ in range(n - 1):
            step = rng.normal(size=3)
            step *= 30.0 / np.linalg.norm(step)
            nxt = pts[-1] + step
            nxt[0] = np.clip(nxt[0], -0.55 * A, 0.55 * A)
            nxt[1] = np.clip(nxt[1], -0.75 * B, 0.15 * B)
            nxt[2] = np.clip(nxt[2], crest - 30, -50)
            pts.append(nxt)
        bowel.append(Tube(tuple(tuple(float(v) for v in p) for p in pts), uniform(rng, 9, 14), 2.5,
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
            diameter_mm=diameter, location=location, delta_hu=uniform(rng, -80, -10),
            irregularity=plane_waves(rng, 5, (0.6 * diameter, 1.5 * diameter), (0.02, 0.05)),
        )

    return PhantomSpec(
        body_semi_mm=(a, b), subcutaneous_fat_mm=fat, wall_muscle_mm=wall, spine_y_mm=spine_y,
        vertebra_radius_mm=vr, aorta=aorta, ivc=ivc, sma=sma, smv=smv, liver=liver,
        liver_left_lobe=left_lobe, gallbladder=gallbladder, spleen=spleen,
        kidney_right=kidney_right, kidney_left=kidney_left, stomach=stomach,
        stomach_gas_fraction=uniform(rng, 0.0, 0.4), heart=heart, liver_dome_z_mm=liver_dome,
        iliac_crest_z_mm=crest, pancreas=pancreas, veins=veins, duodenum=duodenum,
        bowel=tuple(bowel), ribs=bool(rng.random() < 0.8),
        phase=Phase(str(rng.choice([p.value for p in Phase], p=[0.2, 0.3, 0.5]))),
        noise_sigma_hu=uniform(rng, 6, 22), noise_seed=int(rng.integers(0, 2**31 - 1)),
        scan_center_z_mm=uniform(rng, -35, -5), lesion=lesion_spec,
    )
