"""nnU-Net's sliding-window prediction: tiles at a fraction of the patch apart, each weighted
by a Gaussian importance map (sigma = patch / 8), mirrored along the allowed axes and averaged,
and the folds' logits averaged.

Patches (and their mirror images) go through the network in batches, so a GPU backend sees
full batches. The arithmetic is nnU-Net's to the rounding: it accumulates the weighted logits
and the weights in float16, whose coarse steps near the patch corners (where the Gaussian
weight is tiny) move the logits at the image's edges by up to about 0.5. Accumulating in
float32 would be more precise there, but would no longer give the probabilities nnU-Net gives,
which is what a site that validated its model with nnU-Net relies on.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Iterator, Sequence
from functools import lru_cache

import numpy as np
from scipy import ndimage

from screen.backends import Runner

logger = logging.getLogger(__name__)

SIGMA_FRACTION = 1.0 / 8
_GAUSSIAN_PEAK = 10.0  # nnU-Net scales the map to this peak


def steps(image: Sequence[int], patch: Sequence[int], step: float) -> list[list[int]]:
    """Tile start positions along each axis, as nnU-Net places them."""
    if not 0 < step <= 1:
        raise ValueError(f"tile step must be in (0, 1], got {step}")
    out = []
    for size, tile in zip(image, patch):
        if size < tile:
            raise ValueError(f"image size {tuple(image)} is smaller than the patch {tuple(patch)}")
        n = int(math.ceil((size - tile) / (tile * step))) + 1
        stride = (size - tile) / (n - 1) if n > 1 else 0.0
        out.append([int(np.round(stride * i)) for i in range(n)])
    return out


@lru_cache(maxsize=4)
def gaussian(patch: tuple[int, ...]) -> np.ndarray:
    """The importance map: a Gaussian at the patch centre, sigma patch/8, no zeros."""
    impulse = np.zeros(patch)
    impulse[tuple(p // 2 for p in patch)] = 1
    g = ndimage.gaussian_filter(impulse, [p * SIGMA_FRACTION for p in patch], 0, mode="constant", cval=0)
    g /= g.max() / _GAUSSIAN_PEAK
    # nnU-Net holds the map in float16; rounding it the same way keeps its weights exactly.
    g = g.astype(np.float16)
    g[g == 0] = g[g != 0].min()
    g.setflags(write=False)
    return g.astype(np.float32)


def pad_to_patch(data: np.ndarray, patch: Sequence[int]) -> tuple[np.ndarray, tuple[slice, ...]]:
    """Pad with 0 (the normalised image's mean) to at least the patch, centred; and the way back."""
    pads = [(max(p - s, 0) // 2, max(p - s, 0) - max(p - s, 0) // 2) for s, p in zip(data.shape, patch)]
    if not any(a or b for a, b in pads):
        return data, tuple(slice(None) for _ in data.shape)
    padded = np.pad(data, pads, mode="constant", constant_values=0)
    return padded, tuple(slice(a, a + s) for (a, _), s in zip(pads, data.shape))


def mirror_sets(axes: Sequence[int] | None) -> list[tuple[int, ...]]:
    """Every combination of the allowed axes, the unmirrored view first (nnU-Net's order)."""
    axes = tuple(axes or ())
    return [(), *(c for n in range(1, len(axes) + 1) for c in itertools.combinations(axes, n))]


def _batches(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def predict_logits(
    data: np.ndarray, runners: Sequence[Runner], patch: Sequence[int], n_classes: int,
    step: float = 0.5, mirror_axes: Sequence[int] | None = None, batch_size: int = 4,
) -> np.ndarray:
    """(K, J, I) normalised input → (C, K, J, I) float16 logits averaged over folds and mirrors."""
    if not runners:
        raise ValueError("no network to predict with")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    patch = tuple(int(p) for p in patch)
    padded, unpad = pad_to_patch(np.asarray(data, dtype=np.float32), patch)
    starts = steps(padded.shape, patch, step)
    tiles = [tuple(slice(s, s + p) for s, p in zip(corner, patch))
             for corner in itertools.product(*starts)]
    views = mirror_sets(mirror_axes)
    weight = gaussian(patch)
    weight_half = weight.astype(np.float16)
    coverage = np.zeros(padded.shape, dtype=np.float16)
    for tile in tiles:
        coverage[tile] += weight_half
    total = None
    # Each batch entry is one view of one tile; a tile's views are averaged before weighting.
    work = [(t, v) for t in range(len(tiles)) for v in range(len(views))]
    for runner in runners:
        logits = np.zeros((n_classes, *padded.shape), dtype=np.float16)
        pending: dict[int, np.ndarray] = {}
        for batch in _batches(work, batch_size):
            x = np.stack([
                np.flip(padded[tiles[t]], views[v]) if views[v] else padded[tiles[t]]
                for t, v in batch
            ])[:, None]
            out = runner.run(np.ascontiguousarray(x))
            if out.shape[:2] != (len(batch), n_classes):
                raise ValueError(f"network returned shape {out.shape} for {len(batch)} patches "
                                 f"of {n_classes} classes")
            for (t, v), y in zip(batch, out):
                y = np.flip(y, tuple(a + 1 for a in views[v])) if views[v] else y
                pending[t] = y if t not in pending else pending[t] + y
                if v == len(views) - 1:
                    mean = pending.pop(t) / np.float32(len(views))
                    logits[(slice(None), *tiles[t])] += mean * weight
        np.divide(logits, coverage, out=logits)
        if total is None:
            total = logits
        else:
            total += logits
    if len(runners) > 1:
        total /= np.float16(len(runners))
    return total[(slice(None), *unpad)]
