"""Small CT series written with pydicom, and SimpleITK as the independent reader to compare to."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    generate_uid,
)

from screen.headers import read_instance
from screen.records import Instance, Series, Volume
from screen.series import assemble
from screen.volume.decode import PADDING_HU

WriteSeries = Callable[..., Path]


def write_ct_series(
    folder: Path,
    stored: Sequence[np.ndarray],
    positions: Sequence[Sequence[float]],
    *,
    orientation: Sequence[float] = (1, 0, 0, 0, 1, 0),
    pixel_spacing: tuple[float, float] = (1.0, 1.0),
    slope: float = 1.0,
    intercept: float = 0.0,
    signed: bool = True,
    padding: int | None = None,
    syntax: str = ExplicitVRLittleEndian,
    tilt: float | None = None,
    bits_stored: int = 16,
    padding_limit: int | None = None,
) -> Path:
    """One CT file per slice; ``stored`` holds the stored values of each slice (rows, cols).

    ``syntax`` is the transfer syntax: either uncompressed little endian, or one pydicom
    compresses to."""
    folder.mkdir(parents=True, exist_ok=True)
    series_uid, study_uid, frame_uid = generate_uid(), generate_uid(), generate_uid()
    for n, (pixels, position) in enumerate(zip(stored, positions), start=1):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = syntax if syntax == ImplicitVRLittleEndian else \
            ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
        ds.FrameOfReferenceUID = frame_uid
        ds.Modality = "CT"
        ds.PatientID = "TEST"
        ds.SeriesNumber = 2
        ds.InstanceNumber = n
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.ImagePositionPatient = [f"{v:.6f}" for v in position]
        ds.ImageOrientationPatient = [f"{v:.8f}" for v in orientation]
        ds.PixelSpacing = [f"{v:.6f}" for v in pixel_spacing]
        ds.SliceThickness = "1.0"
        if tilt is not None:
            ds.GantryDetectorTilt = f"{tilt:.2f}"
        ds.RescaleSlope = f"{slope:g}"
        ds.RescaleIntercept = f"{intercept:g}"
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = pixels.shape
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, bits_stored, bits_stored - 1
        ds.PixelRepresentation = 1 if signed else 0
        if padding is not None:
            ds.PixelPaddingValue = padding
        if padding_limit is not None:
            ds.PixelPaddingRangeLimit = padding_limit
        ds.PixelData = np.ascontiguousarray(pixels, dtype=np.int16 if signed else np.uint16
                                            ).tobytes()
        if syntax not in (ExplicitVRLittleEndian, ImplicitVRLittleEndian):
            ds.compress(syntax)
        ds.save_as(folder / f"IM{n:04d}.dcm", enforce_file_format=True)
    return folder


@pytest.fixture
def write_series() -> WriteSeries:
    return write_ct_series


def series_of(paths: Sequence[Path | str]) -> Series:
    instances = [read_instance(str(p)) for p in paths]
    assert all(isinstance(i, Instance) for i in instances), instances
    found, duplicates = assemble(instances)
    assert len(found) == 1 and not duplicates
    return found[0]


def series_in(folder: Path) -> Series:
    return series_of(sorted(p for p in folder.iterdir() if p.is_file()))


def sitk_image(paths: Sequence[Path | str]):
    """SimpleITK's reading of the files: one 3-D image, its own slice sorting."""
    sitk = pytest.importorskip("SimpleITK", reason="SimpleITK is the independent reader")
    if len(paths) == 1:
        return sitk.ReadImage(str(paths[0]))
    folder = str(Path(paths[0]).parent)
    # A folder can hold several series: ask for this one by its UID.
    uid = str(pydicom.dcmread(paths[0], stop_before_pixels=True).SeriesInstanceUID)
    names = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(folder, uid)
    assert len(names) == len(paths), (len(names), len(paths))
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(names)
    return reader.Execute()


def sitk_affine(image) -> np.ndarray:
    direction = np.asarray(image.GetDirection(), dtype=np.float64).reshape(3, 3)
    matrix = np.eye(4)
    matrix[:3, :3] = direction * np.asarray(image.GetSpacing())
    matrix[:3, 3] = image.GetOrigin()
    return matrix


def compare_with_sitk(volume: Volume, image, *, atol: float = 1e-3,
                      padding_hu: float | None = None) -> None:
    """Same voxels at the same LPS voxel centres, through both readers' own affines.

    SimpleITK leaves padding as the stored padding value rescaled (``padding_hu``); we set it
    to air, so there the two must differ in exactly that way.
    """
    sitk = pytest.importorskip("SimpleITK")
    reference = sitk.GetArrayFromImage(image).astype(np.float64)  # [z, y, x]
    k, j, i = np.meshgrid(*(np.arange(n) for n in volume.hu.shape), indexing="ij")
    kji = np.stack([k, j, i], axis=-1).reshape(-1, 3)
    lps = volume.to_lps(kji)
    inverse = np.linalg.inv(sitk_affine(image))
    xyz = lps @ inverse[:3, :3].T + inverse[:3, 3]
    index = np.rint(xyz).astype(int)
    # Every voxel centre of ours must land on one of SimpleITK's voxel centres.
    np.testing.assert_allclose(xyz, index, atol=1e-3)
    assert volume.hu.size == reference.size
    theirs = reference[index[:, 2], index[:, 1], index[:, 0]]
    ours = volume.hu.reshape(-1).astype(np.float64)
    keep = np.ones_like(ours, dtype=bool)
    if padding_hu is not None:
        padded = theirs == padding_hu
        assert padded.any(), "expected some padding in the reference"
        assert np.all(ours[padded] == PADDING_HU)
        keep = ~padded
    np.testing.assert_allclose(ours[keep], theirs[keep], atol=atol)
