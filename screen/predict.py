"""``screen predict``: one series (a DICOM series folder or a NIfTI file) through one imported
model package, with the label map and class probabilities written in the input's own grid.

A NIfTI image is turned, without resampling, so that its axes run towards patient left,
posterior and superior as a DICOM series loaded by screen does (its obliquity stays in the
affine); the maps are turned back before they are written, under the input's own affine. A
DICOM series' maps are written on the grid screen loads it on, under that grid's affine.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from enum import Enum
from pathlib import Path

import numpy as np

from screen.records import Detection, Volume
from screen.volume.orient import (
    Turn,
    acquisition_view,
    canonical_turn,
    slice_axis,
    turned_affine,
    turned_shape,
)

logger = logging.getLogger(__name__)

_LPS_FROM_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
NIFTI_SUFFIXES = (".nii", ".nii.gz")


class PredictError(ValueError):
    """The input cannot be predicted on; the message says why in one line."""


@dataclass(frozen=True, slots=True, eq=False)
class Loaded:
    """A volume and how to write maps back in its input's grid."""

    volume: Volume
    turn: Turn  # input voxel axes → the volume's; identity for DICOM
    affine_ras: np.ndarray  # the NIfTI affine of the input grid (i, j, k) → RAS mm


def is_nifti(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(NIFTI_SUFFIXES)


def load_nifti(path: Path) -> Loaded:
    import nibabel as nib

    try:
        image = nib.load(str(path))
        data = np.asanyarray(image.dataobj)
    except Exception as exc:  # nibabel raises many kinds for a damaged file
        raise PredictError(f"{path}: not a readable NIfTI image ({exc})") from None
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise PredictError(f"{path}: a {data.ndim}-D image; give one 3-D CT volume")
    affine_ras = np.asarray(image.affine, dtype=np.float64)
    lps = _LPS_FROM_RAS @ affine_ras
    acquired = np.ascontiguousarray(data.transpose(2, 1, 0), dtype=np.float32)  # (k, j, i)
    turn = canonical_turn(lps)
    turned = np.empty(turned_shape(acquired.shape, turn), dtype=np.float32)
    acquisition_view(turned, turn)[...] = acquired
    axis = slice_axis(turn)
    volume = Volume(hu=turned, affine=turned_affine(lps, acquired.shape, turn),
                    slice_uids=("",) * turned.shape[axis], slice_axis=axis)
    return Loaded(volume, turn, affine_ras)


def load_dicom(folder: Path) -> Loaded:
    from screen.index import read_headers
    from screen.records import FileError
    from screen.series import assemble
    from screen.volume.errors import VolumeError
    from screen.volume.load import load_volume

    instances = [o for o in read_headers([folder], workers=1) if not isinstance(o, FileError)]
    series, _ = assemble(instances)
    if not series:
        raise PredictError(f"{folder}: no DICOM image series here")
    if len(series) > 1:
        raise PredictError(f"{folder}: holds {len(series)} series; give the folder of one series")
    try:
        volume = load_volume(series[0])
    except VolumeError as exc:
        raise PredictError(f"{folder}: {exc}") from None
    identity = Turn((0, 1, 2), (False, False, False))
    return Loaded(volume, identity, _LPS_FROM_RAS @ volume.affine)


def load_input(path: Path) -> Loaded:
    path = Path(path)
    if is_nifti(path):
        return load_nifti(path)
    if path.is_dir():
        return load_dicom(path)
    raise PredictError(f"{path}: neither a DICOM series folder nor a NIfTI file (.nii, .nii.gz)")


def to_input_grid(loaded: Loaded, array: np.ndarray) -> np.ndarray:
    """A (K, J, I) map on the volume's grid → (i, j, k) on the input's grid, as NIfTI stores it."""
    return np.ascontiguousarray(acquisition_view(array, loaded.turn).transpose(2, 1, 0))


def write_maps(loaded: Loaded, probabilities: np.ndarray, labels_out: Path,
               probabilities_out: Path | None = None) -> None:
    """The label map (uint8) and, if asked, a 4-D float32 map with one volume per class."""
    import nibabel as nib

    from screen.nnunet.findings import class_labels

    labels = to_input_grid(loaded, class_labels(probabilities))
    image = nib.Nifti1Image(labels, loaded.affine_ras)
    image.header.set_xyzt_units("mm")
    _save(image, labels_out)
    del image, labels
    if probabilities_out is not None:
        # Filled one class at a time: a stack of per-class copies would hold the maps twice.
        first = to_input_grid(loaded, probabilities[0])
        stacked = np.empty((*first.shape, len(probabilities)), np.float32)
        stacked[..., 0] = first
        del first
        for c in range(1, len(probabilities)):
            stacked[..., c] = to_input_grid(loaded, probabilities[c])
        image = nib.Nifti1Image(stacked, loaded.affine_ras)
        image.header.set_xyzt_units("mm")
        _save(image, probabilities_out)


def _save(image, path: Path) -> None:
    import gzip

    from screen.atomic import write_bytes_atomic

    data = image.to_bytes()
    write_bytes_atomic(Path(path), gzip.compress(data, 6) if str(path).endswith(".gz") else data)


def detection_json(detection: Detection, extra: dict[str, object]) -> str:
    def plain(value):
        if isinstance(value, Enum):
            return value.value
        if isinstance(value, tuple):
            return [plain(v) for v in value]
        return value

    return json.dumps({**{k: plain(v) for k, v in asdict(detection).items()}, **extra}, indent=2)
