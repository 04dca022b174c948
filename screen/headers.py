"""Read what a DICOM file's header says, without its pixels, as fast as pydicom allows.

Vendors put large private groups (Siemens CSA headers, GE and Philips private blocks) after the
tags we need, and a full header read spends most of its time there. We ask pydicom for just the
tags we use (it seeks over every other value) and stop at the first tag past group 0028. Only
multi-frame files are read further, for the per-frame positions in their functional groups.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable, Iterable
from typing import Any

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.tag import BaseTag
from pydicom.uid import DeflatedExplicitVRLittleEndian

from screen.records import FileError, Instance, Stage

log = logging.getLogger(__name__)

# pydicom warns (or raises) on malformed values; we judge values ourselves, field by field.
pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE

_KEYWORDS = (
    "SpecificCharacterSet", "ImageType", "SOPClassUID", "SOPInstanceUID", "StudyDate",
    "Modality", "Manufacturer", "StudyDescription", "SeriesDescription", "PatientName",
    "PatientID", "PatientBirthDate",
    "AccessionNumber", "BodyPartExamined", "SliceThickness", "ConvolutionKernel",
    "ProtocolName", "GantryDetectorTilt", "ContrastBolusAgent", "StudyInstanceUID",
    "SeriesInstanceUID", "SeriesNumber", "AcquisitionNumber", "InstanceNumber",
    "ImagePositionPatient", "ImageOrientationPatient", "FrameOfReferenceUID",
    "NumberOfFrames", "Rows", "Columns", "PixelSpacing",
)
_MULTIFRAME_KEYWORDS = ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence")

_TAGS = [BaseTag(pydicom.datadict.tag_for_keyword(k)) for k in _KEYWORDS]
_MULTIFRAME_TAGS = _TAGS + [
    BaseTag(pydicom.datadict.tag_for_keyword(k)) for k in _MULTIFRAME_KEYWORDS
]
_LAST_SINGLE_FRAME_TAG = 0x0028FFFF
_PIXEL_DATA_GROUP = 0x7FE0

_MEDIA_DIRECTORY = "1.2.840.10008.1.3.10"


class NotAnImage(InvalidDicomError):
    """A valid DICOM file that holds no image data set."""


# A file that starts with a data set but no preamble: group 0008 or 0002, little endian.
_RAW_DATASET_STARTS = (b"\x08\x00", b"\x02\x00")


def _past_group_0028(tag: BaseTag, vr: str | None, length: int) -> bool:
    return tag > _LAST_SINGLE_FRAME_TAG


def _at_pixels(tag: BaseTag, vr: str | None, length: int) -> bool:
    return tag >> 16 >= _PIXEL_DATA_GROUP


def read_instance(path: str) -> Instance | FileError:
    """The header of one file as an Instance, or the reason it is not a readable DICOM image.

    Never raises for a bad file: every failure becomes a FileError that names what was wrong.
    """
    try:
        size = os.stat(path).st_size
        if size == 0:
            return FileError(path, Stage.HEADER, "empty file (0 bytes)")
        ds, at_end = _read(path, _past_group_0028, _TAGS)
        if _int(ds, "NumberOfFrames", 1) > 1:
            ds, at_end = _read(path, _at_pixels, _MULTIFRAME_TAGS)
        if at_end:
            # Every stored object has elements past group 0028 (pixel data, report content);
            # a file that ends before any of them was cut short, as by an interrupted transfer.
            return FileError(path, Stage.HEADER,
                             "truncated: the file ends inside its header, before any pixel data")
        return _instance(path, ds, size)
    except NotAnImage as exc:
        return FileError(path, Stage.HEADER, f"DICOM but not an image: {exc}")
    except InvalidDicomError as exc:
        return FileError(path, Stage.HEADER, f"not DICOM: {exc}")
    except PermissionError as exc:
        return FileError(path, Stage.HEADER, f"cannot be read: permission denied ({exc.strerror})")
    except OSError as exc:
        return FileError(path, Stage.HEADER, f"cannot be read: {exc.strerror or exc}")
    except Exception as exc:  # noqa: BLE001 - a corrupt header can fail anywhere in the parser
        return FileError(path, Stage.HEADER, f"unreadable DICOM header: {type(exc).__name__}: {exc}")


def read_instances(paths: Iterable[str]) -> list[Instance | FileError]:
    return [read_instance(p) for p in paths]


def _read(path: str, stop_when: Callable[[BaseTag, str | None, int], bool],
          tags: list[BaseTag]) -> tuple[Dataset, bool]:
    """The data set, and whether reading ran to the end of the file without stopping."""
    # pydicom warns about every oddity it reads past; what matters is recorded per field.
    with warnings.catch_warnings(), open(path, "rb") as fp:
        warnings.simplefilter("ignore")
        try:
            ds = pydicom.filereader.read_partial(fp, stop_when=stop_when, specific_tags=tags)
        except InvalidDicomError:
            # Some exports drop the preamble and file meta; accept a bare data set only when
            # the file plainly starts with one, so that text and images are not misread.
            fp.seek(0)
            if fp.read(2) not in _RAW_DATASET_STARTS:
                raise InvalidDicomError(
                    "no 'DICM' marker at byte 128 and no DICOM data set at the start of the file"
                ) from None
            fp.seek(0)
            ds = pydicom.filereader.read_partial(
                fp, stop_when=stop_when, specific_tags=tags, force=True
            )
        # A deflated data set is read from an inflated copy, so the file's position says
        # nothing about where reading stopped; such files are not checked for truncation.
        meta = getattr(ds, "file_meta", None)
        deflated = meta is not None and meta.get("TransferSyntaxUID") == DeflatedExplicitVRLittleEndian
        at_end = not deflated and fp.tell() >= os.fstat(fp.fileno()).st_size
    if len(ds) == 0:
        meta = getattr(ds, "file_meta", None)
        if meta is not None and meta.get("MediaStorageSOPClassUID") == _MEDIA_DIRECTORY:
            raise NotAnImage("a DICOM media directory (DICOMDIR): an index of other files")
        raise NotAnImage("a DICOM file meta header with no image data set after it")
    return ds, at_end


def _instance(path: str, ds: Dataset, size: int) -> Instance:
    meta = getattr(ds, "file_meta", None)
    transfer_syntax = str(getattr(meta, "TransferSyntaxUID", "") or "") if meta else ""
    sop_class = _text(ds, "SOPClassUID") or (
        str(getattr(meta, "MediaStorageSOPClassUID", "") or "") if meta else ""
    )
    position = _floats(ds, "ImagePositionPatient", 3)
    orientation = _floats(ds, "ImageOrientationPatient", 6)
    spacing = _floats(ds, "PixelSpacing", 2)
    thickness = _float(ds, "SliceThickness")
    frame_positions: tuple[tuple[float, float, float], ...] = ()
    if "PerFrameFunctionalGroupsSequence" in ds:
        frames = _multiframe_geometry(ds)
        frame_positions = frames.positions
        orientation = orientation or frames.orientation
        spacing = spacing or frames.spacing
        thickness = thickness if thickness is not None else frames.thickness
        position = position or (frame_positions[0] if frame_positions else None)
    return Instance(
        path=path,
        sop_instance_uid=_text(ds, "SOPInstanceUID"),
        sop_class_uid=sop_class,
        transfer_syntax_uid=transfer_syntax,
        modality=_text(ds, "Modality").upper(),
        patient_id=_text(ds, "PatientID"),
        patient_name=_text(ds, "PatientName"),
        patient_birth_date=_text(ds, "PatientBirthDate"),
        accession_number=_text(ds, "AccessionNumber"),
        study_instance_uid=_text(ds, "StudyInstanceUID"),
        study_date=_text(ds, "StudyDate"),
        study_description=_text(ds, "StudyDescription"),
        series_instance_uid=_text(ds, "SeriesInstanceUID"),
        series_number=_int(ds, "SeriesNumber"),
        series_description=_text(ds, "SeriesDescription"),
        protocol_name=_text(ds, "ProtocolName"),
        body_part_examined=_text(ds, "BodyPartExamined"),
        frame_of_reference_uid=_text(ds, "FrameOfReferenceUID"),
        acquisition_number=_int(ds, "AcquisitionNumber"),
        instance_number=_int(ds, "InstanceNumber"),
        manufacturer=_text(ds, "Manufacturer"),
        image_type=_texts(ds, "ImageType"),
        convolution_kernel="\\".join(_texts(ds, "ConvolutionKernel")),
        contrast_agent=_text(ds, "ContrastBolusAgent"),
        image_position=position,
        image_orientation=orientation,
        pixel_spacing=spacing,
        slice_thickness=thickness,
        gantry_tilt=_float(ds, "GantryDetectorTilt"),
        rows=_int(ds, "Rows"),
        columns=_int(ds, "Columns"),
        number_of_frames=max(1, _int(ds, "NumberOfFrames", 1) or 1),
        frame_positions=frame_positions,
        file_size=size,
    )


class _Frames:
    __slots__ = ("orientation", "positions", "spacing", "thickness")

    def __init__(self) -> None:
        self.positions: tuple[tuple[float, float, float], ...] = ()
        self.orientation: Any = None
        self.spacing: Any = None
        self.thickness: float | None = None


def _multiframe_geometry(ds: Dataset) -> _Frames:
    """Per-frame positions and the shared orientation and spacing of an Enhanced CT file."""
    frames = _Frames()
    shared = ds.get("SharedFunctionalGroupsSequence") or [Dataset()]
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []

    def first(item: Dataset, sequence: str, keyword: str, n: int) -> Any:
        for group in (item, shared[0]):
            seq = group.get(sequence)
            if seq:
                value = _floats(seq[0], keyword, n) if n else _float(seq[0], keyword)
                if value is not None:
                    return value
        return None

    probe = per_frame[0] if per_frame else Dataset()
    frames.orientation = first(probe, "PlaneOrientationSequence", "ImageOrientationPatient", 6)
    frames.spacing = first(probe, "PixelMeasuresSequence", "PixelSpacing", 2)
    frames.thickness = first(probe, "PixelMeasuresSequence", "SliceThickness", 0)
    positions = [first(item, "PlanePositionSequence", "ImagePositionPatient", 3)
                 for item in per_frame]
    if positions and all(p is not None for p in positions):
        frames.positions = tuple(positions)
    return frames


def _text(ds: Dataset, keyword: str) -> str:
    try:
        value = ds.get(keyword)
    except Exception:  # noqa: BLE001 - a malformed value reads as absent
        return ""
    if value is None:
        return ""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v).strip() for v in value)
    return str(value).strip().replace("\x00", "")


def _texts(ds: Dataset, keyword: str) -> tuple[str, ...]:
    text = _text(ds, keyword)
    return tuple(part.strip().upper() for part in text.split("\\") if part.strip())


def _float(ds: Dataset, keyword: str) -> float | None:
    values = _floats(ds, keyword, 1)
    return values[0] if values else None


def _floats(ds: Dataset, keyword: str, n: int) -> Any:
    text = _text(ds, keyword)
    if not text:
        return None
    try:
        values = tuple(float(part) for part in text.split("\\"))
    except ValueError:
        return None
    if len(values) != n or any(v != v or v in (float("inf"), float("-inf")) for v in values):
        return None
    return values


def _int(ds: Dataset, keyword: str, default: int | None = None) -> int | None:
    value = _float(ds, keyword)
    if value is None or not value.is_integer():
        return default
    return int(value)
