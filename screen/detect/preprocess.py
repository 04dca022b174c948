"""From a Volume to a network's input: pick the grid, resample onto it, window the HU.

A network sees the patient on a grid of its own (the card's spacing), laid over the volume's
voxels: network voxel ``n`` sits at volume voxel ``origin + n * step`` along each axis. The
grid is axis-aligned with the volume, so an oblique or flipped series keeps its geometry in
the volume's affine and nothing is lost. Resampling is separable: along each axis a tent
filter as wide as the step (plain linear interpolation when upsampling, an anti-aliasing
average when downsampling), done as three small matrix products so it stays fast on a CPU.

Inference, training and INT8 calibration all cut a network's input with :func:`sample` on a
grid from :func:`body_grid` or :func:`box_grid`, so all see identical inputs;
:func:`preprocess` does the same from a volume alone, for calibration data without a detector.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from screen.model.card import NetworkCard
from screen.records import Volume

logger = logging.getLogger(__name__)

AIR_HU = -1024.0
BODY_HU = -500.0  # tissue is denser than this; air and lung mostly are not
_BODY_STRIDE = 4  # voxels skipped in-plane when looking for the body: its box needs no more
# Where no gland was found, a window relative to the gland is placed as if the gland had this
# attenuation (between unenhanced and enhanced parenchyma); only calibration data need it.
STAND_IN_GLAND_HU = 80.0
_MIN_CORE_VOXELS = 8  # a gland thinner than this after erosion is measured whole


@dataclass(frozen=True, slots=True)
class Grid:
    """A network's sampling grid in volume voxel coordinates (k, j, i)."""

    origin: tuple[float, float, float]
    step: tuple[float, float, float]
    shape: tuple[int, int, int]

    def __post_init__(self) -> None:
        if any(s <= 0 for s in self.step):
            raise ValueError(f"grid steps must be positive, got {self.step}")
        if any(n < 1 for n in self.shape):
            raise ValueError(f"grid shape must be positive, got {self.shape}")

    def to_volume(self, kji: np.ndarray) -> np.ndarray:
        """Grid voxel coordinates (..., 3) to volume voxel coordinates."""
        return np.asarray(self.origin) + np.asarray(kji, dtype=np.float64) * np.asarray(self.step)

    def from_volume(self, kji: np.ndarray) -> np.ndarray:
        return (np.asarray(kji, dtype=np.float64) - np.asarray(self.origin)) / np.asarray(self.step)


def body_box(volume: Volume) -> tuple[np.ndarray, np.ndarray]:
    """Lowest and highest volume voxel (k, j, i) holding tissue; the whole volume if none."""
    hu = volume.hu
    sub = hu[:, ::_BODY_STRIDE, ::_BODY_STRIDE] > BODY_HU
    if not sub.any():
        return np.zeros(3), np.asarray(hu.shape, dtype=np.float64) - 1
    lo, hi = [], []
    for axis, stride in zip(range(3), (1, _BODY_STRIDE, _BODY_STRIDE)):
        other = tuple(a for a in range(3) if a != axis)
        hits = np.flatnonzero(sub.any(axis=other))
        # The tissue may begin anywhere between a miss and the first hit of the strided view.
        lo.append(max(0, (hits[0] - 1) * stride + 1))
        hi.append(min((hits[-1] + 1) * stride - 1, hu.shape[axis] - 1))
    return np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)


def grid_over(
    volume: Volume, lo: np.ndarray, hi: np.ndarray, network: NetworkCard
) -> Grid:
    """The network grid centred on the volume voxel box [lo, hi] (inclusive), grown to the
    card's minimum extent (cut to its maximum) and to a multiple of its shape multiple."""
    spacing = np.asarray(volume.spacing)
    step = np.asarray(network.spacing_kji) / spacing
    extent_mm = np.maximum((np.asarray(hi) - np.asarray(lo) + 1) * spacing, network.min_extent_mm)
    if network.max_extent_mm is not None:
        extent_mm = np.minimum(extent_mm, network.max_extent_mm)
    m = network.shape_multiple
    shape = np.maximum(m, np.ceil(extent_mm / np.asarray(network.spacing_kji) / m) * m).astype(int)
    centre = (np.asarray(lo) + np.asarray(hi)) / 2.0
    origin = centre - (shape - 1) / 2.0 * step
    return Grid(tuple(origin.tolist()), tuple(step.tolist()), tuple(int(s) for s in shape))


def body_grid(volume: Volume, network: NetworkCard) -> Grid:
    lo, hi = body_box(volume)
    return grid_over(volume, lo, hi, network)


def box_grid(volume: Volume, lo_kji: np.ndarray, hi_kji: np.ndarray, network: NetworkCard) -> Grid:
    """Grid over a box of volume voxels, grown by the card's margin on every side."""
    margin = network.margin_mm / np.asarray(volume.spacing)
    return grid_over(volume, np.asarray(lo_kji) - margin, np.asarray(hi_kji) + margin, network)


def _axis_weights(n_in: int, origin: float, step: float, n_out: int) -> tuple[np.ndarray, int, np.ndarray]:
    """Tent-filter weights (n_out x span) over the input samples [first, first + span),
    and which outputs fall outside the volume."""
    pos = origin + step * np.arange(n_out)
    half = max(1.0, step)
    first = int(max(0, math.floor(pos.min() - half)))
    last = int(min(n_in - 1, math.ceil(pos.max() + half)))
    outside = (pos < -0.5) | (pos > n_in - 0.5)
    if last < first:
        return np.zeros((n_out, 1), np.float32), 0, np.ones(n_out, bool)
    taps = np.arange(first, last + 1)
    w = np.maximum(0.0, 1.0 - np.abs(taps[None, :] - pos[:, None]) / half)
    total = w.sum(axis=1, keepdims=True)
    w = np.divide(w, total, out=np.zeros_like(w), where=total > 0)
    outside |= total[:, 0] <= 0
    return w.astype(np.float32), first, outside


def resample(hu: np.ndarray, grid: Grid, fill: float = AIR_HU) -> np.ndarray:
    """Values of ``hu`` (k, j, i) on ``grid``; samples outside the volume get ``fill``."""
    parts = [_axis_weights(hu.shape[a], grid.origin[a], grid.step[a], grid.shape[a]) for a in range(3)]
    (wk, fk, ok), (wj, fj, oj), (wi, fi, oi) = parts
    block = hu[fk:fk + wk.shape[1], fj:fj + wj.shape[1], fi:fi + wi.shape[1]]
    block = block.astype(np.float32, copy=False)
    # Reduce the axis that shrinks most first: the later products then touch less data.
    out = block @ wi.T  # (k, j, I)
    out = np.matmul(wj[None], out)  # (k, J, I)
    out = np.tensordot(wk, out, axes=(1, 0))  # (K, J, I)
    out[ok] = fill
    out[:, oj] = fill
    out[:, :, oi] = fill
    return np.ascontiguousarray(out, dtype=np.float32)


def resample_labels(labels: np.ndarray, grid: Grid) -> np.ndarray:
    """Nearest-neighbour labels on ``grid``; 0 outside the volume."""
    idx = []
    for a in range(3):
        pos = np.rint(grid.origin[a] + grid.step[a] * np.arange(grid.shape[a])).astype(int)
        idx.append(pos)
    valid = [(p >= 0) & (p < labels.shape[a]) for a, p in enumerate(idx)]
    clipped = [np.clip(p, 0, labels.shape[a] - 1) for a, p in enumerate(idx)]
    out = labels[np.ix_(*clipped)].copy()
    out[~valid[0]] = 0
    out[:, ~valid[1]] = 0
    out[:, :, ~valid[2]] = 0
    return out


def to_volume_labels(mask: np.ndarray, grid: Grid, shape: tuple[int, int, int]) -> np.ndarray:
    """A mask on ``grid`` back onto the volume's voxels (nearest neighbour)."""
    idx = []
    for a in range(3):
        pos = np.rint((np.arange(shape[a]) - grid.origin[a]) / grid.step[a]).astype(int)
        idx.append(pos)
    valid = [(p >= 0) & (p < grid.shape[a]) for a, p in enumerate(idx)]
    clipped = [np.clip(p, 0, grid.shape[a] - 1) for a, p in enumerate(idx)]
    out = mask[np.ix_(*clipped)].copy()
    out[~valid[0]] = 0
    out[:, ~valid[1]] = 0
    out[:, :, ~valid[2]] = 0
    return out


def gland_hu(hu: np.ndarray, gland: np.ndarray) -> float | None:
    """Median HU inside a gland mask on the same grid, leaving out its outer layer of voxels
    (on a coarse grid they average the gland with the fat around it); None without a gland."""
    core = ndimage.binary_erosion(gland)
    if core.sum() < _MIN_CORE_VOXELS:
        core = gland
    return float(np.median(hu[core])) if core.any() else None


def sample(volume: Volume, grid: Grid, network: NetworkCard, gland: float | None = None) -> np.ndarray:
    """The network input (1, 1, K, J, I) float32 for ``grid``; ``gland`` is the gland's HU,
    for a network whose window is relative to it."""
    return network.normalise(resample(volume.hu, grid), gland)[None, None]


def preprocess(
    volume: Volume, network: NetworkCard, box_kji: tuple[np.ndarray, np.ndarray] | None = None,
    gland: float | None = None,
) -> np.ndarray:
    """The input a network sees for ``volume``: (1, 1, K, J, I) float32.

    A ``body`` network sees the whole body. A ``pancreas`` network sees the box
    ``box_kji`` (lowest and highest volume voxel, as found by the body network) grown by the
    card's margin; without a box it sees the middle of the body, which is a fair stand-in for
    calibration data but not what inference does. So is :data:`STAND_IN_GLAND_HU` for the
    gland's HU (``gland``) when a network's window is relative to it and none is given.
    """
    if network.crop == "body":
        return sample(volume, body_grid(volume, network), network)
    if box_kji is None:
        lo, hi = body_box(volume)
        centre = (lo + hi) / 2.0
        box_kji = (centre, centre)
    if gland is None and network.window_relative_to == "gland":
        gland = STAND_IN_GLAND_HU
    return sample(volume, box_grid(volume, box_kji[0], box_kji[1], network), network, gland)
