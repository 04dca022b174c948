"""Painters: each organ system of a ``PhantomSpec`` drawn into the organ-code volume."""

from __future__ import annotations

import numpy as np

from screen.synth.anatomy import CODE, LESION_CODE
from screen.synth.drawing import (
    Grid,
    ellipsoid_mask,
    paint_column,
    paint_ellipsoid,
    paint_mask,
    paint_tube,
    tube_query,
    waves_field,
)
from screen.synth.sampling import pancreas_centerline, pancreas_radius
from screen.synth.spec import Ellipsoid, LesionSpec, PancreasSpec, PhantomSpec, Tube


def paint_body(organs: np.ndarray, grid: Grid, spec: PhantomSpec) -> np.ndarray:
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
    organs[inside(0, 0)] = CODE["subcutaneous_fat"]
    organs[inside(fat, fat)] = CODE["muscle"]
    # The cavity stops at the spine in the midline but reaches back around the kidneys.
    behind = (y < spec.spine_y_mm + 15) | (np.abs(x) > spec.vertebra_radius_mm + 40)
    cavity = inside(fat + wall, fat + wall) & behind
    cavity = np.broadcast_to(cavity, organs.shape)
    organs[cavity] = CODE["visceral_fat"]
    return np.array(cavity)


def paint_lungs(organs: np.ndarray, grid: Grid, spec: PhantomSpec, cavity: np.ndarray) -> None:
    # Lungs fill the cavity above the diaphragm, which dips lowest posteriorly.
    b = spec.body_semi_mm[1]
    y, z = grid.y[None, :, None], grid.z[:, None, None]
    diaphragm = spec.liver_dome_z_mm - 10 - 55 * np.clip((y + b) / (2 * b), 0, 1) ** 2
    lung = np.broadcast_to(z > diaphragm, organs.shape) & cavity
    organs[lung] = CODE["lung"]
    paint_ellipsoid(organs, grid, spec.heart, CODE["heart"], cavity)


def paint_spine(organs: np.ndarray, grid: Grid, spec: PhantomSpec) -> None:
    vr, vy = spec.vertebra_radius_mm, spec.spine_y_mm
    z0, z1 = float(grid.z[0]) - 5, float(grid.z[-1]) + 5
    # Paraspinal and psoas muscles first, bone over them.
    fat_wall = spec.subcutaneous_fat_mm
    back = spec.body_semi_mm[1] - fat_wall
    for side in (-1, 1):
        paint_column(organs, grid, side * (vr + 18), vy + vr + 25, 26, z0, z1, CODE["muscle"],
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
            paint_mask(organs, sl, mask, CODE["muscle"], None)
    # Vertebral bodies with discs every ~32 mm, a cortical shell and marrow inside.
    sl = grid.box((-vr - 30, vy - vr, z0), (vr + 30, vy + vr + 45, z1))
    if sl is None:
        return
    x, y, z = grid.open(sl)
    is_disc = ((z - 7.0) % 32.0) < 6.0
    r = np.sqrt(x ** 2 + (y - vy) ** 2)
    body = r <= vr
    view = organs[sl]
    view[body & ~is_disc] = CODE["cortical_bone"]
    view[(r <= vr - 2.5) & ~is_disc] = CODE["cancellous_bone"]
    view[body & is_disc] = CODE["disc"]
    # Posterior arch: pedicles/laminae and the spinous process, then the canal.
    arch = (((x / (vr * 0.9)) ** 2 + ((y - vy - vr - 10) / 12) ** 2) <= 1.0)
    spinous = (np.abs(x) <= 4.5) & (y > vy + vr) & (y < vy + vr + 42)
    view[(arch | spinous) & ~is_disc] = CODE["cortical_bone"]
    canal = (x ** 2 + (y - vy - vr - 9) ** 2) <= 8.5 ** 2
    view[np.broadcast_to(canal, view.shape)] = CODE["spinal_canal"]


def paint_ribs_and_pelvis(organs: np.ndarray, grid: Grid, spec: PhantomSpec) -> None:
    a0, b0 = spec.body_semi_mm
    inner = spec.subcutaneous_fat_mm + spec.wall_muscle_mm * 0.5
    x, y, z = grid.x[None, None, :], grid.y[None, :, None], grid.z[:, None, None]
    rho = np.sqrt((x / (a0 * (1 - 0.0004 * z) - inner)) ** 2 + (y / (b0 - inner)) ** 2)
    if spec.ribs:
        # Ribs run obliquely, falling towards the front, so an axial slice cuts short arcs.
        band = (((z - 3.0 + 45.0 * y / b0) % 28.0) < 8.0) & (z > -70)
        rib = (np.abs(rho - 1.0) < 0.035) & band & (y > -0.35 * b0)
        organs[np.broadcast_to(rib, organs.shape)] = CODE["cortical_bone"]
    # Iliac wings: curved plates posterolaterally below the crest.
    crest = spec.iliac_crest_z_mm
    wing = (np.abs(rho - 0.82) < 0.05) & (z < crest) & (y > -0.2 * b0) & (np.abs(x) > 0.35 * a0)
    organs[np.broadcast_to(wing, organs.shape)] = CODE["cortical_bone"]


def paint_vessels(organs: np.ndarray, grid: Grid, spec: PhantomSpec) -> None:
    _z0, z1 = float(grid.z[0]) - 5, float(grid.z[-1]) + 5
    ax, ay, ar = spec.aorta
    bifurcation = spec.iliac_crest_z_mm + 30
    paint_column(organs, grid, ax, ay, ar, bifurcation, min(z1, spec.liver_dome_z_mm + 20),
                  CODE["artery"])
    for side in (-1, 1):
        paint_tube(organs, grid, Tube(((ax, ay, bifurcation + 5),
                                        (ax + side * 40, ay + 10, bifurcation - 60),
                                        (ax + side * 70, ay + 5, bifurcation - 140)), ar * 0.6),
                    CODE["artery"])
    ix, iy, ir = spec.ivc
    paint_column(organs, grid, ix, iy, ir, bifurcation - 10, spec.liver_dome_z_mm,
                  CODE["ivc"], semi_y=ir * 0.8)
    sx, sy, sr = spec.sma
    paint_tube(organs, grid, Tube(((ax, ay - ar + 2, 20), (sx, sy, 5), (sx, sy, -40),
                                    (sx - 10, sy - 15, -120)), sr), CODE["artery"])
    vx, vy, vr = spec.smv
    paint_tube(organs, grid, Tube(((vx, vy + 4, 6), (vx, vy, -20), (vx - 5, vy, -60),
                                    (vx - 15, vy - 15, -120)), vr), CODE["portal_vein"])
    for vein in spec.veins:
        paint_tube(organs, grid, vein, CODE["portal_vein"])


def paint_pancreas(organs: np.ndarray, grid: Grid, p: PancreasSpec) -> None:
    line = pancreas_centerline(p)
    radius = pancreas_radius(p, line)
    found = tube_query(grid, line, radius * 1.3, p.z_flattening)
    if found is None:
        return
    sl, dist, index, pts = found
    if p.lobulation:
        bumps = waves_field(pts, p.lobulation)
    else:
        bumps = 0.0
    inside = dist <= radius[index] * (1.0 + bumps)
    nearest_x = line[index, 0]
    part = np.where(nearest_x < p.head_body_x_mm, CODE["pancreas_head"],
                    np.where(nearest_x < p.body_tail_x_mm, CODE["pancreas_body"],
                             CODE["pancreas_tail"])).astype(np.uint8)
    view = organs[sl]
    view[inside] = part[inside]
    view[inside & (dist <= p.duct_radius_mm)] = CODE["pancreatic_duct"]


def _step(axis: np.ndarray) -> float:
    return float(axis[1] - axis[0]) if axis.size > 1 else 1.0


def paint_lesion(organs: np.ndarray, grid: Grid, lesion: LesionSpec) -> None:
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
    inside = rho <= 1.0 + waves_field(pts, lesion.irregularity)
    within = all(axis[0] - step / 2 <= v <= axis[-1] + step / 2
                 for axis, step, v in zip((grid.x, grid.y, grid.z), steps, c))
    if not inside.any() and within:
        # A lesion smaller than a voxel still marks the voxel holding its centre, so truth
        # and labels never disagree on coarse grids.
        inside = rho == rho.min()
    organs[sl][inside] = LESION_CODE


def paint_stomach(organs: np.ndarray, grid: Grid, spec: PhantomSpec, cavity: np.ndarray) -> None:
    found = ellipsoid_mask(grid, spec.stomach)
    if found is None:
        return
    sl, outer = found
    inner_found = ellipsoid_mask(grid, Ellipsoid(
        spec.stomach.center, tuple(s - 5 for s in spec.stomach.semi), spec.stomach.shear))
    paint_mask(organs, sl, outer, CODE["stomach_wall"], cavity)
    if inner_found is None:
        return
    isl, inner = inner_found
    paint_mask(organs, isl, inner, CODE["luminal_fluid"], cavity)
    # Gas rises to the anterior (non-dependent) part of a supine patient's stomach.
    _, y, _ = grid.open(isl)
    level = spec.stomach.center[1] - spec.stomach.semi[1] * (1 - 2 * spec.stomach_gas_fraction)
    paint_mask(organs, isl, inner & (y < level), CODE["luminal_gas"], cavity)
