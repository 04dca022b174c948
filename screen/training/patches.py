"""Training data: phantoms cut into each network's input and labels, and random patches of them."""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from multiprocessing.pool import Pool
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

from screen.detect.postprocess import position_along
from screen.detect.preprocess import (
    body_grid,
    box_grid,
    gland_hu,
    resample,
    resample_labels,
    sample,
)
from screen.synth.cases import TRAIN_SETTINGS, draw_case
from screen.synth.phantom import ORGAN_LABELS
from screen.training.recipe import ARRIVAL_SHARE, BOX_JITTER_MM, LOCATE, SEGMENT

logger = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Item:
    """One phantom cut for training: network inputs and labels on each network's grid."""

    coarse_x: np.ndarray
    coarse_y: np.ndarray
    fine_x: np.ndarray
    fine_y: np.ndarray
    positions: np.ndarray  # position along the gland of sampled pancreas voxels
    parts: np.ndarray  # their part: 0 head, 1 body, 2 tail


# Organ codes of the gland's parts in the phantom's organ map, and their index here.
_PARTS = {code: index for index, name in enumerate(("head", "body", "tail"))
          for code, organ in ORGAN_LABELS.items() if organ == f"pancreas_{name}"}


# Cached cuts are only reused by the same way of cutting: the networks' grids and windows, the
# scan settings and the box jitter all shape them.
_CUT_VERSION = hashlib.sha256(json.dumps(
    [LOCATE.to_dict(), SEGMENT.to_dict(), asdict(TRAIN_SETTINGS), BOX_JITTER_MM], sort_keys=True,
).encode()).hexdigest()[:12]


def prepare(seed: int, cache: Path | None = None, coarse: bool = True) -> Item:
    """Cut one phantom for training; with ``cache``, reuse or keep the cut as a .npz there.
    Without ``coarse`` (the locate network is kept, not trained) its coarse arrays are left
    empty, which halves what a large training set holds in memory."""
    stored = cache / f"item-{_CUT_VERSION}-{seed}.npz" if cache is not None else None
    if stored is not None and stored.is_file():
        with np.load(stored) as data:
            item = Item(**{name: data[name] for name in Item.__slots__})
    else:
        item = cut(seed)
        if stored is not None:
            stored.parent.mkdir(parents=True, exist_ok=True)
            partial = stored.with_suffix(".tmp.npz")
            np.savez(partial, **{name: getattr(item, name) for name in Item.__slots__})
            partial.replace(stored)
    if not coarse:
        item = replace(item, coarse_x=np.empty(0, np.float32), coarse_y=np.empty(0, np.uint8))
    return item


def cut(seed: int) -> Item:
    volume, phantom = draw_case(seed, TRAIN_SETTINGS)
    rng = np.random.default_rng(seed + 7)
    coarse = body_grid(volume, LOCATE)
    coarse_hu = resample(volume.hu, coarse)
    coarse_x = LOCATE.normalise(coarse_hu)
    coarse_y = resample_labels(phantom.labels, coarse)
    # The gland's HU as the detector measures it, on the true gland rather than the locate
    # network's; the intensity shift in batch_of stands for the difference between the two.
    gland = gland_hu(coarse_hu, coarse_y > 0)
    voxels = np.argwhere(phantom.labels > 0)
    lo, hi = voxels.min(axis=0).astype(float), voxels.max(axis=0).astype(float)
    jitter = rng.normal(0.0, BOX_JITTER_MM, size=(2, 3)) / np.asarray(volume.spacing)
    fine = box_grid(volume, lo + jitter[0], hi + jitter[1], SEGMENT)
    fine_x = sample(volume, fine, SEGMENT, gland)[0, 0]
    fine_y = resample_labels(phantom.labels, fine)
    # Where head, body and tail lie along the gland, to set the location fractions.
    gland_lps = volume.to_lps(voxels)
    pick = rng.choice(len(voxels), size=min(400, len(voxels)), replace=False)
    codes = phantom.organs[tuple(voxels[pick].T)]
    keep = np.isin(codes, list(_PARTS))
    positions = position_along(gland_lps, gland_lps[pick][keep])
    parts = np.asarray([_PARTS[int(c)] for c in codes[keep]], dtype=np.int8)
    return Item(coarse_x, coarse_y, fine_x, fine_y, positions.astype(np.float32), parts)


def in_order(pool: Pool, work: Callable[[int], T], seeds: Sequence[int], ahead: int) -> Iterator[T]:
    """``work`` of each seed, done in ``pool`` and handed back in seed order, with at most
    ``ahead`` of them submitted and not yet taken. The first ``ahead`` are submitted at once,
    so work asked for now starts as soon as the pool is free of what was queued before it."""
    pending = deque(pool.apply_async(work, (s,)) for s in seeds[:ahead])

    def results() -> Iterator[T]:
        for s in seeds[ahead:]:
            result = pending.popleft().get()
            pending.append(pool.apply_async(work, (s,)))
            yield result
        while pending:
            yield pending.popleft().get()

    return results()


def cut_patch(x: np.ndarray, y: np.ndarray, shape: tuple[int, int, int], centre: np.ndarray | None,
           rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A patch of ``shape`` around ``centre`` (jittered), or anywhere; padded where too small."""
    pads = [(0, max(0, s - n)) for s, n in zip(shape, x.shape)]
    if any(p[1] for p in pads):
        x = np.pad(x, pads, constant_values=-1.0)
        y = np.pad(y, pads)
    start = []
    for axis, size in enumerate(shape):
        room = x.shape[axis] - size
        if centre is None:
            s = rng.integers(0, room + 1)
        else:
            s = round(centre[axis] - size / 2 + rng.normal(0, size / 6))
        start.append(int(np.clip(s, 0, room)))
    window = tuple(slice(s, s + n) for s, n in zip(start, shape))
    return x[window], y[window]


class TrainingSet:
    """The items patches are drawn from, joining on a schedule: the first ``first`` at once, the
    rest evenly until ``ARRIVAL_SHARE`` of the ``steps`` have run. ``arrive`` waits for the
    renderers when an item is due and not yet cut, so the schedule, not the speed of the
    machine, decides what each step sees."""

    def __init__(self, items: Iterator[Item], total: int, first: int, steps: int,
                 pair: Callable[[Item], tuple[np.ndarray, np.ndarray]]):
        self.items: list[Item] = []
        self._source, self._total, self._first, self._steps = items, total, min(first, total), steps
        self._pair = pair
        self._inputs: list[tuple[np.ndarray, np.ndarray]] = []
        self._lesion_at: list[np.ndarray] = []  # found once rather than on every step
        self._gland_at: list[np.ndarray] = []

    def arrive(self, step: int) -> None:
        spread = max(1.0, ARRIVAL_SHARE * self._steps)
        due = min(self._total, self._first + math.ceil((self._total - self._first) * step / spread))
        while len(self.items) < due:
            item = next(self._source)
            x, y = self._pair(item)
            self.items.append(item)
            self._inputs.append((x, y))
            self._lesion_at.append(np.argwhere(y == 2))
            self._gland_at.append(np.argwhere(y > 0))

    def draw(self, patch: tuple[int, int, int], lesion_bias: float,
             rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """A patch around a lesion (``lesion_bias`` of the time, where there is one), around the
        gland (up to 85 %), or anywhere."""
        index = int(rng.integers(len(self._inputs)))
        x, y = self._inputs[index]
        centre = None
        r = rng.random()
        if r < lesion_bias and len(self._lesion_at[index]):
            centre = self._lesion_at[index][rng.integers(len(self._lesion_at[index]))]
        elif r < 0.85 and len(self._gland_at[index]):
            centre = self._gland_at[index][rng.integers(len(self._gland_at[index]))]
        return cut_patch(x, y, patch, centre, rng)


def batch_of(patches: Sequence[tuple[np.ndarray, np.ndarray]], rng: np.random.Generator,
           noise: torch.Generator, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Patches as a batch on ``device``, with intensity and noise variety beyond the phantoms'
    own: contrast, offset (up to 10 HU, about how far the gland's HU measured on the locate
    network's mask strays from the true gland's) and grain, drawn on the device."""
    def moved(a: np.ndarray) -> torch.Tensor:
        # From pinned memory the copy does not wait for the GPU, so the next batch is drawn
        # while this step still runs.
        t = torch.from_numpy(a)
        return t.pin_memory().to(device, non_blocking=True) if device.type == "cuda" else t

    x = moved(np.stack([p[0] for p in patches]).astype(np.float32)[:, None])
    y = moved(np.stack([p[1] for p in patches]).astype(np.int64))
    n = len(patches)

    def each(low: float, high: float) -> torch.Tensor:
        return moved(rng.uniform(low, high, n).astype(np.float32)).view(n, 1, 1, 1, 1)

    scale, offset, grain = each(0.9, 1.1), each(-0.05, 0.05), each(0.0, 0.05)
    x = x * scale + offset + grain * torch.randn(x.shape, generator=noise, device=device)
    return x, y
