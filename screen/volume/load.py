"""A series' pixels as one HU volume in canonical orientation with an exact LPS affine.

``load_volume`` reads in three steps, top to bottom:

1. ``plan_slices`` (headers only): the frames in the order, and with the shear correction,
   that the series' geometry decided when it was assembled, and the output slices; refuse
   what cannot be one volume;
2. ``canonical_turn``: which axis permutation and flips bring i, j, k nearest to L, P, S;
3. decode each source file in slice order and write its HU straight into the one
   preallocated output array, through a view in acquisition order.

Peak memory stays near one copy of the volume: besides the output there is one file's
dataset and at most two decoded source slices (the two an output slice is interpolated
from) at any time, in buffers reused from slice to slice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
from pydicom.dataset import Dataset
from scipy import ndimage

from screen.records import Series, Volume
from screen.series import without
from screen.volume import orient
from screen.volume.decode import (
    NATIVE_SYNTAXES,
    PADDING_HU,
    FrameDecoder,
    check_decodable,
    read_dataset,
)
from screen.volume.errors import DamagedPixels
from screen.volume.plan import SlicePlan, SourceSlice, plan_slices

logger = logging.getLogger(__name__)

# Damaged files left out of one series before it is judged unusable as a whole.
MAX_DAMAGED_SLICES = 2


# Where a series' instances come from: a path to its Dataset, pixels included. Files by
# default; a PACS sweep gives its WADO-RS retrieval (screen.dicomweb.retrieve).
Reader = Callable[[str], Dataset]


def load_volume(series: Series, *, max_gap_slices: int = 1,
                read: Reader = read_dataset) -> Volume:
    """The series as a Volume, or VolumeError saying in words why it cannot be one.

    One rule for every transfer syntax: a file whose pixels cannot be decoded (truncated
    copies are common in exports; so are corrupt JPEG 2000 streams) is left out and treated
    as a missing slice, with a warning and its path in ``Volume.left_out``, so long as the
    gap it leaves is within ``max_gap_slices``; more than ``MAX_DAMAGED_SLICES`` such files
    fail the series. A syntax that nothing installed decodes fails it at once.
    ``read`` opens each instance by its path.
    """
    if not isinstance(series, Series):
        raise TypeError(f"load_volume needs a Series, got {type(series).__name__}")
    notes: list[str] = []
    left_out: list[str] = []
    while True:
        try:
            return _load(series, max_gap_slices, tuple(notes), tuple(left_out), read)
        except DamagedPixels as exc:
            remaining = tuple(i for i in series.instances if i.path != exc.path)
            if len(left_out) >= MAX_DAMAGED_SLICES or len(remaining) < 2 or \
                    len(remaining) == len(series.instances):
                raise
            logger.info("%s; leaving it out of series %s", exc, series.key)
            notes.append(f"{exc}: left out and treated as a missing slice")
            left_out.append(exc.path)
            series = without(series, {exc.path})


def _load(series: Series, max_gap_slices: int, notes: tuple[str, ...],
          left_out: tuple[str, ...], read: Reader) -> Volume:
    plan = plan_slices(series, max_gap_slices=max_gap_slices)
    for syntax in plan.transfer_syntaxes:
        check_decodable(syntax, next(i.path for i in series.instances
                                     if i.transfer_syntax_uid == syntax))

    turn = orient.canonical_turn(plan.affine)
    acquired = (len(plan.outputs), plan.rows, plan.columns)
    hu = np.empty(orient.turned_shape(acquired, turn), dtype=np.float32)
    target = orient.acquisition_view(hu, turn)
    _fill(target, plan, read)

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
        left_out=left_out,
    )


def _fill(target: np.ndarray, plan: SlicePlan, read: Reader) -> None:
    """Write every output slice into ``target`` (indexed [k, j, i] in acquisition order)."""
    source = _SourceReader(plan, read)
    for k, out in enumerate(plan.outputs):
        if out.weight == 0.0 or out.upper == out.lower:
            source.write(out.lower, target[k])
        elif out.weight == 1.0:
            source.write(out.upper, target[k])
        else:
            lower, upper = source.slice(out.lower), source.slice(out.upper)
            # lower + weight * (upper - lower), in float32, written in place.
            np.subtract(upper, lower, out=target[k])
            target[k] *= np.float32(out.weight)
            target[k] += lower


class _SourceReader:
    """Source slices in HU, decoded once each, with the tilt shift applied.

    Output slices ask for sources in non-decreasing order, so keeping the last two decoded
    slices and the last opened file is enough to decode each frame once. A source copied
    whole into the output is decoded straight into it, and that output slice stands for it
    from then on; sources that are only interpolated from go into two buffers used again
    and again. Loading thus allocates nothing per slice beyond what a decoder plugin returns.

    Files on disk (the default reader) that hold one uncompressed frame are read straight
    into the slice, with no data set parsed; any other goes through pydicom.
    """

    def __init__(self, plan: SlicePlan, read: Reader) -> None:
        self._plan, self._read = plan, read
        self._from_files = read is read_dataset and \
            not NATIVE_SYNTAXES.isdisjoint(plan.transfer_syntaxes)
        self._decoder = FrameDecoder()
        self._slices: dict[int, np.ndarray] = {}
        self._buffers: list[np.ndarray] = []
        self._unshifted: np.ndarray | None = None
        self._file: tuple[str, Dataset] | None = None

    def write(self, index: int, out: np.ndarray) -> None:
        """Source ``index`` into ``out``, one slice of the output."""
        if index in self._slices:
            np.copyto(out, self._slices[index])
            return
        self._keep_neighbour_of(index)
        self._decode(self._plan.sources[index], out)
        self._slices[index] = out

    def slice(self, index: int) -> np.ndarray:
        if index not in self._slices:
            self._keep_neighbour_of(index)
            buffer = self._free_buffer()
            self._decode(self._plan.sources[index], buffer)
            self._slices[index] = buffer
        return self._slices[index]

    def _keep_neighbour_of(self, index: int) -> None:
        self._slices = {k: v for k, v in self._slices.items() if k == index - 1}

    def _free_buffer(self) -> np.ndarray:
        for buffer in self._buffers:
            if not any(kept is buffer for kept in self._slices.values()):
                return buffer
        self._buffers.append(self._new_slice())
        return self._buffers[-1]

    def _new_slice(self) -> np.ndarray:
        return np.empty((self._plan.rows, self._plan.columns), dtype=np.float32)

    def _decode(self, source: SourceSlice, out: np.ndarray) -> None:
        if source.shift_px == (0.0, 0.0):
            self._hu_into(source, out)
            return
        if self._unshifted is None:
            self._unshifted = self._new_slice()
        self._hu_into(source, self._unshifted)
        # Linear, as dcm2niix does; what comes in from outside the field of view is air.
        ndimage.shift(self._unshifted, source.shift_px, output=out, order=1, mode="constant",
                      cval=PADDING_HU, prefilter=False)

    def _hu_into(self, source: SourceSlice, out: np.ndarray) -> None:
        if self._from_files and source.frame == 0 and \
                self._decoder.file_hu_into(source.path, out):
            return
        self._decoder.hu_into(self._dataset(source.path), source.path, source.frame, out)

    def _dataset(self, path: str) -> Dataset:
        if self._file is None or self._file[0] != path:
            self._file = (path, self._read(path))
        return self._file[1]
