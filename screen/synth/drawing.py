"""Drawing primitives: a grid of voxel centres in patient mm, and ellipsoids, columns and tubes
painted into an organ-code volume."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from screen.synth.anatomy import Vec3
from screen.synth.sampling import resample_curve
from screen.synth.spec import Ellipsoid, Tube


@dataclass(frozen=True, slots=True)
class Grid:
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


def paint_mask(organs: np.ndarray, sl: tuple[slice, slice, slice], mask: np.ndarray, code: int,
                allowed: np.ndarray | None) -> None:
    view = organs[sl]
    if allowed is not None:
        mask = mask & allowed[sl]
    view[mask] = code


def ellipsoid_mask(grid: Grid, e: Ellipsoid, scale: float = 1.0
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


def paint_ellipsoid(organs: np.ndarray, grid: Grid, e: Ellipsoid, code: int,
                     allowed: np.ndarray | None = None, scale: float = 1.0) -> None:
    found = ellipsoid_mask(grid, e, scale)
    if found is not None:
        paint_mask(organs, found[0], found[1], code, allowed)


def paint_column(organs: np.ndarray, grid: Grid, x: float, y: float, r: float, z0: float,
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
    paint_mask(organs, sl, mask, code, allowed)


def tube_query(grid: Grid, line: np.ndarray, radius: np.ndarray, z_scale: float = 1.0
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


def waves_field(pts: np.ndarray, waves: tuple[tuple[float, float, float, float, float], ...]
                 ) -> np.ndarray:
    field = np.zeros(pts.shape[:-1])
    for kx, ky, kz, phase, amp in waves:
        field += amp * np.sin(pts[..., 0] * kx + pts[..., 1] * ky + pts[..., 2] * kz + phase)
    return field


def paint_tube(organs: np.ndarray, grid: Grid, tube: Tube, code: int,
                allowed: np.ndarray | None = None) -> None:
    line = resample_curve(tube.points, 1.0)
    found = tube_query(grid, line, np.full(len(line), tube.radius_mm))
    if found is None:
        return
    sl, dist, _, _ = found
    inside = dist <= tube.radius_mm
    if tube.wall_mm > 0:
        paint_mask(organs, sl, inside, code, allowed)
        paint_mask(organs, sl, dist <= tube.radius_mm - tube.wall_mm, tube.content, allowed)
    else:
        paint_mask(organs, sl, inside, code, allowed)


def make_grid(shape_kji: tuple[int, int, int], spacing_kji: tuple[float, float, float],
          z_center: float) -> Grid:
    nk, nj, ni = shape_kji
    sk, sj, si = spacing_kji
    return Grid(x=(np.arange(ni) - (ni - 1) / 2) * si, y=(np.arange(nj) - (nj - 1) / 2) * sj,
                 z=z_center + (np.arange(nk) - (nk - 1) / 2) * sk)


def check_grid(shape_kji: tuple[int, int, int], spacing_kji: tuple[float, float, float]) -> None:
    if len(shape_kji) != 3 or any(int(n) != n or n < 1 for n in shape_kji):
        raise ValueError(f"shape_kji must be three positive integers, got {shape_kji!r}")
    if len(spacing_kji) != 3 or not all(math.isfinite(s) and 0.1 <= s <= 20 for s in spacing_kji):
        raise ValueError(f"spacing_kji must be three spacings in 0.1..20 mm, got {spacing_kji!r}")
