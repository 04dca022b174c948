"""A series' pixels as one HU volume in canonical orientation with an exact LPS affine.

``load_volume`` reads in three steps, top to bottom:

1. ``plan_slices`` (headers only): sort the frames along the normal, decide the shear
   correction and the output slices, refuse what cannot be one volume;
2. ``canonical_turn``: which axis permutation and flips bring i, j, k nearest to L, P, S;
3. decode each source file in slice order and write its HU straight into the one
   preallocated output array, through a view in acquisition order.

Peak memory stays near one copy of the volume: besides the output there is one file's
dataset and at most two decoded source slices (the two an output slice is interpolated
from) at any time.
"""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np
from pydicom.dataset import Dataset
from scipy import ndimage

from screen.records import Series, Volume
from screen.volume import orient
from screen.volume.decode import PADDING_HU, check_decodable, hu_frames, read_dataset
from screen.volume.errors import DamagedPixels, VolumeError
from screen.volume.plan import SlicePlan, SourceSlice, plan_slices

logger = logging.getLogger(__name__)

# Damaged files left out of one series before it is judged unusable as a whole.
MAX_DAMAGED_SLICES = 2


def load_volume(series: Series, *, max_gap_slices: int = 1) -> Volume:
    """The series as a Volume, or VolumeError saying in words why it cannot be one.

    A slice whose pixel data is damaged (truncated copies are common in exports) is left
    out and treated as a missing slice, with a warning, so long as the gap it leaves is
    within ``max_gap_slices``; more than ``MAX_DAMAGED_SLICES`` such files fail the series.
    """
    if not isinstance(series, Series):
        raise TypeError(f"load_volume needs a Series, got {type(series).__name__}")
    left_out: list[str] = []
    while True:
        try:
            return _load(series, max_gap_slices, tuple(left_out))
        except DamagedPixels as exc:
            remaining = tuple(i for i in series.instances if i.path != exc.path)
            if len(left_out) >= MAX_DAMAGED_SLICES or len(remaining) < 2 or \
                    len(remaining) == len(series.instances):
                raise
            logger.warning("%s; leaving it out of series %s", exc, series.key)
            left_out.append(f"{exc}: left out and treated as a missing slice")
            series = replace(series, instances=remaining)


def _load(series: Series, max_gap_slices: int, notes: tuple[str, ...]) -> Volume:
    plan = plan_slices(series, max_gap_slices=max_gap_slices)
    for syntax in plan.transfer_syntaxes:
        check_decodable(syntax, next(i.path for i in series.instances
                                     if i.transfer_syntax_uid == syntax))

    turn = orient.canonical_turn(plan.affine)
    acquired = (len(plan.outputs), plan.rows, plan.columns)
    hu = np.empty(orient.turned_shape(acquired, turn), dtype=np.float32)
    target = orient.acquisition_view(hu, turn)
    _fill(target, plan)

    uids = tuple(plan.sources[o.nearest].sop_instance_uid for o in plan.outputs)
    if turn.flip[2]:
        uids = uids[::-1]
    logger.debug("loaded series %s: %s voxels, turn %s", series.key, hu.shape, turn)
    return Volume(
        hu=hu,
        affine=orient.turned_affine(plan.affine, acquired, turn),
        slice_uids=uids,
        warnings=notes + plan.warnings,
        slice_axis=orient.slice_axis(turn),
    )


def _fill(target: np.ndarray, plan: SlicePlan) -> None:
    """Write every output slice into ``target`` (indexed [k, j, i] in acquisition order)."""
    source = _SourceReader(plan)
    for k, out in enumerate(plan.outputs):
        lower = source.slice(out.lower)
        if out.weight == 0.0 or out.upper == out.lower:
            target[k] = lower
            continue
        upper = source.slice(out.upper)
        if out.weight == 1.0:
            target[k] = upper
            continue
        weight = np.float32(out.weight)
        target[k] = lower + weight * (upper - lower)


class _SourceReader:
    """Source slices in HU, decoded once each, with the tilt shift applied.

    Output slices ask for sources in non-decreasing order, so keeping the last two decoded
    slices and the last opened file is enough to decode each frame once.
    """

    def __init__(self, plan: SlicePlan) -> None:
        self._plan = plan
        self._slices: dict[int, np.ndarray] = {}
        self._file: tuple[str, Dataset] | None = None

    def slice(self, index: int) -> np.ndarray:
        if index not in self._slices:
            self._slices = {k: v for k, v in self._slices.items() if k == index - 1}
            self._slices[index] = self._decode(self._plan.sources[index])
        return self._slices[index]

    def _decode(self, source: SourceSlice) -> np.ndarray:
        ds = self._dataset(source.path)
        (_, hu), = hu_frames(ds, source.path, [source.frame])
        if hu.shape != (self._plan.rows, self._plan.columns):
            raise VolumeError(
                f"{source.path}: pixels are {hu.shape[0]}x{hu.shape[1]} but the header says "
                f"{self._plan.rows}x{self._plan.columns}"
            )
        if source.shift_px != (0.0, 0.0):
            # Linear, as dcm2niix does; what comes in from outside the field of view is air.
            hu = ndimage.shift(hu, source.shift_px, order=1, mode="constant", cval=PADDING_HU,
                               prefilter=False)
        return hu

    def _dataset(self, path: str) -> Dataset:
        if self._file is None or self._file[0] != path:
            self._file = (path, read_dataset(path))
        return self._file[1]

