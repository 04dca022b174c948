"""Read what a DICOM file's header says, without its pixels, as fast as pydicom allows.

Vendors put large private groups (Siemens CSA headers, GE and Philips private blocks) after the
tags we need, and a full header read spends most of its time there. We ask pydicom for just the
tags we use (it seeks over every other value) and stop at the first tag past group 0028. Only
multi-frame files are read further, for the per-frame positions in their functional groups.
"""

from __future__ import annotations

import logging
import math
import os
import struct
import warnings
from collections.abc import Callable, Iterable
from typing import Any

import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.tag import BaseTag
from pydicom.uid import DeflatedExplicitVRLittleEndian

from screen import header_scan
from screen.records import FileError, Instance, Stage

logger = logging.getLogger(__name__)

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

_TAG_OF = {k: pydicom.datadict.tag_for_keyword(k) for k in _KEYWORDS}
_UNSIGNED_SHORTS = frozenset({"Rows", "Columns"})  # binary US values, even in implicit VR
_TAGS = [BaseTag(_TAG_OF[k]) for k in _KEYWORDS]
_WANTED = frozenset(_TAG_OF.values())
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


def read_instance(path: str, *, lean: bool = True) -> Instance | FileError:
    """The header of one file as an Instance, or the reason it is not a readable DICOM image.

    Never raises for a bad file: every failure becomes a FileError that names what was wrong.
    ``lean=False`` skips the lean scan and reads every file with pydicom (for comparison).
    """
    try:
        size = os.stat(path).st_size
        if size == 0:
            return FileError(path, Stage.HEADER, "empty file (0 bytes)")
        fast = header_scan.scan(path, _WANTED) if lean else None
        if fast is not None:
            ds = Dataset({tag: RawDataElement(BaseTag(tag), vr, len(value), value, 0,
                                              fast.implicit, True)
                          for tag, (vr, value) in fast.elements.items()})
            if (_Header(ds).int("NumberOfFrames", 1) or 1) == 1:
                if fast.at_end:
                    return _truncated(path)
                return _instance(path, ds, size, fast.transfer_syntax_uid,
                                 fast.media_sop_class_uid)
        # Multi-frame files, and files the lean scan leaves alone, go through pydicom.
        ds, at_end = _read(path, _past_group_0028, _TAGS)
        if (_Header(ds).int("NumberOfFrames", 1) or 1) > 1:
            ds, at_end = _read(path, _at_pixels, _MULTIFRAME_TAGS)
        if at_end:
            return _truncated(path)
        meta = getattr(ds, "file_meta", None)
        return _instance(path, ds, size,
                         str(getattr(meta, "TransferSyntaxUID", "") or "") if meta else "",
                         str(getattr(meta, "MediaStorageSOPClassUID", "") or "") if meta else "")
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


def _truncated(path: str) -> FileError:
    # Every stored object has elements past group 0028 (pixel data, report content); a file
    # that ends before any of them was cut short, as by an interrupted transfer.
    return FileError(path, Stage.HEADER,
                     "truncated: the file ends inside its header, before any pixel data")


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


def _instance(path: str, ds: Dataset, size: int, transfer_syntax: str,
              media_sop_class: str) -> Instance:
    h = _Header(ds)
    sop_class = h.text("SOPClassUID") or media_sop_class
    position = h.floats("ImagePositionPatient", 3)
    orientation = h.floats("ImageOrientationPatient", 6)
    spacing = h.floats("PixelSpacing", 2)
    thickness = h.float("SliceThickness")
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
        sop_instance_uid=h.text("SOPInstanceUID"),
        sop_class_uid=sop_class,
        transfer_syntax_uid=transfer_syntax,
        modality=h.text("Modality").upper(),
        patient_id=h.text("PatientID"),
        patient_name=h.text("PatientName"),
        patient_birth_date=h.text("PatientBirthDate"),
        accession_number=h.text("AccessionNumber"),
        study_instance_uid=h.text("StudyInstanceUID"),
        study_date=h.text("StudyDate"),
        study_description=h.text("StudyDescription"),
        series_instance_uid=h.text("SeriesInstanceUID"),
        series_number=h.int("SeriesNumber"),
        series_description=h.text("SeriesDescription"),
        protocol_name=h.text("ProtocolName"),
        body_part_examined=h.text("BodyPartExamined"),
        frame_of_reference_uid=h.text("FrameOfReferenceUID"),
        acquisition_number=h.int("AcquisitionNumber"),
        instance_number=h.int("InstanceNumber"),
        manufacturer=h.text("Manufacturer"),
        image_type=h.texts("ImageType"),
        convolution_kernel="\\".join(h.texts("ConvolutionKernel")),
        contrast_agent=h.text("ContrastBolusAgent"),
        image_position=position,
        image_orientation=orientation,
        pixel_spacing=spacing,
        slice_thickness=thickness,
        gantry_tilt=h.float("GantryDetectorTilt"),
        rows=h.int("Rows"),
        columns=h.int("Columns"),
        number_of_frames=max(1, h.int("NumberOfFrames", 1) or 1),
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
                h = _Header(seq[0])
                value = h.floats(keyword, n) if n else h.float(keyword)
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


class _Header:
    """The values of one data set, decoded straight from the bytes pydicom read.

    pydicom's general value conversion costs more than reading the header itself; the few
    kinds of value we need (text, decimal and integer strings, unsigned shorts) are decoded
    here. A value that is malformed reads as absent, never as an error.
    """

    def __init__(self, ds: Dataset) -> None:
        self._ds = ds
        charset = self._raw("SpecificCharacterSet")
        self._encoding = "utf-8" if charset and b"192" in charset else "latin-1"

    def _element(self, keyword: str) -> Any:
        tag = _TAG_OF.get(keyword) or pydicom.datadict.tag_for_keyword(keyword)
        try:
            return self._ds.get_item(tag)
        except Exception:  # noqa: BLE001 - a malformed element reads as absent
            return None

    def _raw(self, keyword: str) -> bytes | None:
        element = self._element(keyword)
        value = getattr(element, "value", None)
        return value if isinstance(value, bytes) else None

    def text(self, keyword: str) -> str:
        element = self._element(keyword)
        if element is None:
            return ""
        value = element.value
        if isinstance(value, bytes):
            parts = value.decode(self._encoding, "replace").split("\\")
            return "\\".join(p.strip(" \x00") for p in parts).strip("\\")
        if value is None:
            return ""
        if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
            return "\\".join(str(v).strip() for v in value)
        return str(value).strip().replace("\x00", "")

    def texts(self, keyword: str) -> tuple[str, ...]:
        text = self.text(keyword)
        return tuple(part.strip().upper() for part in text.split("\\") if part.strip())

    def floats(self, keyword: str, n: int) -> Any:
        text = self.text(keyword)
        if not text:
            return None
        try:
            values = tuple(float(part) for part in text.split("\\"))
        except ValueError:
            return None
        if len(values) != n or not all(math.isfinite(v) for v in values):
            return None
        return values

    def float(self, keyword: str) -> float | None:
        values = self.floats(keyword, 1)
        return values[0] if values else None

    def int(self, keyword: str, default: int | None = None) -> int | None:
        element = self._element(keyword)
        if element is not None and isinstance(element.value, bytes) and (
            element.VR == "US" or (element.VR is None and keyword in _UNSIGNED_SHORTS)
        ):
            if len(element.value) != 2:
                return default
            return struct.unpack("<H" if element.is_little_endian else ">H", element.value)[0]
        value = self.float(keyword)
        if value is None or not value.is_integer():
            return default
        return int(value)
