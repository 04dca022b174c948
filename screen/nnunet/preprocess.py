"""nnU-Net's preprocessing and its way back, reproduced with scipy.

In order, as nnU-Net's DefaultPreprocessor does it: crop to the box of nonzero voxels (holes
filled), CT normalisation (clip to the plans' 0.5/99.5 percentiles, z-score with their mean
and standard deviation) before resampling, then spline resampling to the plans' spacing: in
plane at ``order`` and along the slice axis apart at ``order_z`` (nearest for order 0) when the
spacing is anisotropic (largest over smallest above 3). Logits go back the same way at the
plans' probability order (1), then softmax, with background filled in outside the crop.

Resizing follows scikit-image's ``resize(mode="edge", anti_aliasing=False)``, which nnU-Net
calls: ``scipy.ndimage.zoom`` on the voxel grid (``grid_mode``) with edge values repeated, the
result clipped to the input's range.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from screen.nnunet.folder import Intensity, Resampling

logger = logging.getLogger(__name__)

ANISOTROPY = 3.0  # nnU-Net resamples the slice axis apart above this spacing ratio

Box = tuple[tuple[int, int], tuple[int, int], tuple[int, int]]


@dataclass(frozen=True, slots=True, eq=False)
class Preprocessed:
    """A series as the network sees it, and what it takes to map logits back."""

    data: np.ndarray  # float32 (K, J, I) on the plans' grid
    box: Box  # the nonzero crop, half-open, in the input's voxels
    input_shape: tuple[int, int, int]
    cropped_shape: tuple[int, int, int]
    spacing: tuple[float, float, float]  # the input's, in the model's axis order
    target_spacing: tuple[float, float, float]


def nonzero_box(image: np.ndarray) -> Box:
    """The box of the nonzero voxels with their holes filled (the whole image if none)."""
    mask = ndimage.binary_fill_holes(image != 0)
    if not mask.any():
        return tuple((0, s) for s in image.shape)  # type: ignore[return-value]
    box = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        hits = np.flatnonzero(mask.any(axis=other))
        box.append((int(hits[0]), int(hits[-1]) + 1))
    return tuple(box)  # type: ignore[return-value]


def normalise(image: np.ndarray, intensity: Intensity) -> np.ndarray:
    """CT normalisation in float32, as nnU-Net computes it."""
    out = image.astype(np.float32)
    np.clip(out, intensity.lower, intensity.upper, out=out)
    out -= np.float32(intensity.mean)
    out /= np.float32(max(intensity.std, 1e-8))
    return out


def new_shape(shape: Sequence[int], spacing: Sequence[float], target: Sequence[float]) -> tuple[int, ...]:
    return tuple(int(round(s / t * n)) for s, t, n in zip(spacing, target, shape))


def _separate_axis(resampling: Resampling, spacing: Sequence[float], target: Sequence[float]) -> int | None:
    """The slice axis to resample apart, or None, as nnU-Net decides."""
    def lowres(values: Sequence[float]) -> int | None:
        axes = np.flatnonzero(max(values) / np.asarray(values, dtype=float) == 1)
        return int(axes[0]) if len(axes) == 1 else None

    if resampling.force_separate_z is not None:
        return lowres(spacing) if resampling.force_separate_z else None
    for values in (spacing, target):
        if max(values) / min(values) > ANISOTROPY:
            return lowres(values)
    return None


def _resize(image: np.ndarray, shape: Sequence[int], order: int, dtype=np.float64) -> np.ndarray:
    """scikit-image's resize(mode='edge', anti_aliasing=False) in float64, cast to ``dtype``.

    scipy interpolates in float64 whatever it writes, so a float32 result is written straight
    into a float32 array: the same values as casting a float64 result, without that copy.
    Clipping to the input's range before or after the cast is the same, because the bounds are
    the input's own values and rounding keeps order."""
    zoom = [n / s for n, s in zip(shape, image.shape)]
    direct = np.dtype(dtype) in (np.dtype(np.float32), np.dtype(np.float64))
    out = ndimage.zoom(image, zoom, order=order, mode="nearest", grid_mode=True,
                       output=np.dtype(dtype) if direct else np.float64)
    if order > 0:
        np.clip(out, image.min(), image.max(), out=out)
    return out if direct else out.astype(dtype)


_ROWS = 16  # output rows per map_coordinates call: its coordinate grids are 24 bytes a voxel


def _along_axis(stacked: np.ndarray, shape: tuple[int, ...], order_z: int, dtype) -> np.ndarray:
    """Sample ``stacked`` at the voxel centres of ``shape`` (only the slice axis changes size),
    nearest for ``order_z`` 0 or at spline ``order_z``, with edge values repeated."""
    centres = [(stacked.shape[a] / shape[a]) * (np.arange(shape[a]) + 0.5) - 0.5 for a in range(3)]
    if order_z > 1:  # the spline prefilter spans the whole input: one call
        grids = np.meshgrid(*centres, indexing="ij")
        return ndimage.map_coordinates(stacked, np.array(grids), order=order_z,
                                       mode="nearest").astype(dtype, copy=False)
    # Each voxel depends on its own coordinates only, so a few rows at a time give the same
    # values without the full grid's coordinates (three float64 arrays, and their stack).
    direct = np.dtype(dtype) in (np.dtype(np.float32), np.dtype(np.float64))
    out = np.empty(shape, dtype if direct else np.float64)
    for start in range(0, shape[0], _ROWS):
        rows = slice(start, min(start + _ROWS, shape[0]))
        grids = np.array(np.meshgrid(centres[0][rows], centres[1], centres[2], indexing="ij"))
        ndimage.map_coordinates(stacked, grids, order=order_z, mode="nearest", output=out[rows])
    return out if direct else out.astype(dtype)


def resample(
    image: np.ndarray, shape: Sequence[int], spacing: Sequence[float], target: Sequence[float],
    order: int, order_z: int, resampling: Resampling, dtype=None,
) -> np.ndarray:
    """One channel (K, J, I) resampled to ``shape`` as nnU-Net's resample_data_or_seg does."""
    shape = tuple(int(s) for s in shape)
    dtype = dtype or image.dtype
    if tuple(image.shape) == shape:
        return image.astype(dtype, copy=False)
    axis = _separate_axis(resampling, spacing, target)
    if axis is None:
        # scipy reads its input as float64 whatever it is stored in, so float32 (float16 made
        # float32, exactly) gives float64's result without a float64 copy of the channel.
        exact = image.dtype in (np.float16, np.float32)
        return _resize(image.astype(np.float32 if exact else np.float64, copy=False), shape,
                       order, dtype)
    data = image.astype(np.float64, copy=False)
    plane = tuple(s for a, s in enumerate(shape) if a != axis)
    slices = [_resize(np.take(data, n, axis=axis), plane, order) for n in range(data.shape[axis])]
    stacked = np.stack(slices, axis=axis)
    del slices
    if stacked.shape[axis] == shape[axis]:
        return stacked.astype(dtype, copy=False)
    return _along_axis(stacked, shape, order_z, dtype)


def preprocess(
    image: np.ndarray, spacing: Sequence[float], target: Sequence[float], intensity: Intensity,
    resampling: Resampling,
) -> Preprocessed:
    """HU (K, J, I) in the model's axis order and spacing → the network's input grid."""
    if image.ndim != 3:
        raise ValueError(f"an image to preprocess is 3-D, got shape {image.shape}")
    box = nonzero_box(image)
    cropped = image[tuple(slice(a, b) for a, b in box)]
    normalised = normalise(cropped, intensity)
    shape = new_shape(cropped.shape, spacing, target)
    data = resample(normalised, shape, spacing, target, resampling.order, resampling.order_z,
                    resampling, dtype=np.float32)
    return Preprocessed(data=data, box=box, input_shape=tuple(image.shape),
                        cropped_shape=tuple(cropped.shape), spacing=tuple(spacing),
                        target_spacing=tuple(target))


def softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over the first axis, in place: a series' class maps are gigabytes, and a second
    copy of them is what would set the peak memory."""
    logits -= logits.max(axis=0, keepdims=True)
    np.exp(logits, out=logits)
    logits /= logits.sum(axis=0, keepdims=True)
    return logits


def probabilities_back(logits: np.ndarray, pre: Preprocessed, resampling: Resampling) -> np.ndarray:
    """(C, K, J, I) logits on the network's grid → float32 probabilities on the input's grid."""
    out = np.zeros((logits.shape[0], *pre.input_shape), dtype=np.float32)
    out[0] = 1.0  # background outside the crop, as nnU-Net fills it
    crop = out[(slice(None), *(slice(a, b) for a, b in pre.box))]
    # One class at a time straight into the output, so no stack of all classes is ever held
    # twice. float16 logits stay float16 through resampling, as in nnU-Net; softmax runs in
    # float32.
    for c, channel in enumerate(logits):
        crop[c] = resample(channel, pre.cropped_shape, pre.target_spacing, pre.spacing,
                           resampling.order, resampling.order_z, resampling, dtype=logits.dtype)
    softmax(crop)
    return out
