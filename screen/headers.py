"""Read what a DICOM file's header says, without its pixels, as fast as pydicom allows.

Vendors put large private groups (Siemens CSA headers, GE and Philips private blocks) after the
tags we need, and a full header read spends most of its time there. We ask pydicom for just the
tags we use (it seeks over every other value) and stop at the first tag past group 0028. Only
multi-frame files are read further, for the per-frame positions in their functional groups.

Every read is bounded, so that no file can hold a worker for long: a header ends within
``HEADER_LIMIT_BYTES`` and is read within ``TIME_LIMIT_S``, and a run of zero bytes longer than
``ZERO_RUN_LIMIT`` (what a sparse or zero-filled file holds, never a real header) stops at
once. A file past a limit goes to the errors with the limit it passed.
"""

from __future__ import annotations

import logging
import math
import os
import struct
import time
import warnings
from collections.abc import Callable, Iterable
from typing import Any, BinaryIO

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
    "Modality", "Manufacturer", "ManufacturerModelName", "StudyDescription", "SeriesDescription", "PatientName",
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

# The largest header (all before the pixel data) read; Enhanced CT files with thousands of
# frames keep well under it.
HEADER_LIMIT_BYTES = 8 * 1024 * 1024
# The longest one file's header may take: a real one takes milliseconds.
TIME_LIMIT_S = 5.0
ZERO_RUN_LIMIT = 64 * 1024
# Slices larger than this are never read to be compared with a copy (a CT slice is ~0.5 MB).
PIXEL_DIGEST_LIMIT_BYTES = 64 * 1024 * 1024
_CLOCK_EVERY = 64  # reads between looks at the clock: a read costs microseconds


class LimitExceeded(Exception):
    """Reading a header went past one of the limits; the message says which."""


class _Bounded:
    """A binary file that refuses to be read past the header limits.

    pydicom reads a header through ``read``, ``seek`` and ``tell`` alone; each read or seek
    checks the byte limit (and every ``_CLOCK_EVERY`` reads the deadline), so a parser walking
    a huge or pathological file stops soon after passing either. A position past the end of
    a small file is no header too long: the file is merely cut short, as the caller finds.
    """

    def __init__(self, fp: BinaryIO, deadline: float) -> None:
        self._fp = fp
        self._deadline = deadline
        self._size = os.fstat(fp.fileno()).st_size
        self._pos = fp.tell()
        self._reads = 0
        self._zeros = 0
        self.name = getattr(fp, "name", "")

    def _past_limit(self, position: int) -> None:
        if HEADER_LIMIT_BYTES < position <= self._size:
            raise LimitExceeded(f"no end of the header within its first "
                                f"{HEADER_LIMIT_BYTES // (1024 * 1024)} MiB (limit)")

    def read(self, size: int | None = -1) -> bytes:
        room = HEADER_LIMIT_BYTES + 1 - self._pos
        data = self._fp.read(room if size is None or size < 0 or size > room else size)
        self._pos += len(data)
        self._past_limit(self._pos)
        self._reads += 1
        if self._reads % _CLOCK_EVERY == 0 and time.monotonic() > self._deadline:
            raise LimitExceeded(f"reading the header took over {TIME_LIMIT_S:g} s "
                                "(time limit per file)")
        if data and data.count(0) == len(data):
            self._zeros += len(data)
            if self._zeros > ZERO_RUN_LIMIT:
                raise LimitExceeded(f"over {ZERO_RUN_LIMIT // 1024} KiB of zero bytes in the "
                                    "header: a sparse or zero-filled file, not DICOM")
        else:
            self._zeros = 0
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        if whence in (0, 1):
            self._past_limit(offset if whence == 0 else self._pos + offset)
        self._pos = self._fp.seek(offset, whence)
        return self._pos

    def tell(self) -> int:
        return self._pos


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
        deadline = time.monotonic() + TIME_LIMIT_S
        ds, at_end = _read(path, _past_group_0028, _TAGS, deadline)
        if (_Header(ds).int("NumberOfFrames", 1) or 1) > 1:
            ds, at_end = _read(path, _at_pixels, _MULTIFRAME_TAGS, deadline)
        if at_end:
            return _truncated(path)
        meta = getattr(ds, "file_meta", None)
        return _instance(path, ds, size,
                         str(getattr(meta, "TransferSyntaxUID", "") or "") if meta else "",
                         str(getattr(meta, "MediaStorageSOPClassUID", "") or "") if meta else "")
    except LimitExceeded as exc:
        return FileError(path, Stage.HEADER, f"header not read: {exc}")
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


def pixel_digest(path: str) -> bytes | None:
    """A digest of the pixel data of ``path`` as stored (no decoding), to tell whether two
    slices are copies of one another; None when there is none to read."""
    import hashlib

    try:
        if os.stat(path).st_size > PIXEL_DIGEST_LIMIT_BYTES:
            return None  # not a slice anyone copies: too big to read for a comparison
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, specific_tags=["PixelData"], force=True)
        data = ds.get("PixelData")
    except Exception:  # noqa: BLE001 - an unreadable slice is simply not a known copy
        return None
    return hashlib.sha256(data).digest() if isinstance(data, bytes) and data else None


def _truncated(path: str) -> FileError:
    # Every stored object has elements past group 0028 (pixel data, report content); a file
    # that ends before any of them was cut short, as by an interrupted transfer.
    return FileError(path, Stage.HEADER,
                     "truncated: the file ends inside its header, before any pixel data")


def read_instances(paths: Iterable[str]) -> list[Instance | FileError]:
    return [read_instance(p) for p in paths]


def _read(path: str, stop_when: Callable[[BaseTag, str | None, int], bool],
          tags: list[BaseTag], deadline: float) -> tuple[Dataset, bool]:
    """The data set, and whether reading ran to the end of the file without stopping."""
    # pydicom warns about every oddity it reads past; what matters is recorded per field.
    with warnings.catch_warnings(), open(path, "rb") as raw:
        warnings.simplefilter("ignore")
        fp = _Bounded(raw, deadline)
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
        at_end = not deflated and fp.tell() >= os.fstat(raw.fileno()).st_size
    if len(ds) == 0:
        meta = getattr(ds, "file_meta", None)
        if meta is not None and meta.get("MediaStorageSOPClassUID") == _MEDIA_DIRECTORY:
            raise NotAnImage("a DICOM media directory (DICOMDIR): an index of other files")
        raise NotAnImage("a DICOM file meta header with no image data set after it")
    return ds, at_end


def instance_from_dataset(path: str, ds: Dataset, *, size: int = 0,
                          transfer_syntax_uid: str = "") -> Instance:
    """The Instance a header read gives, from a data set read some other way (DICOMweb
    metadata, say); ``path`` is where its pixels are found."""
    return _instance(path, ds, size, transfer_syntax_uid, "")


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
        manufacturer_model_name=h.text("ManufacturerModelName"),
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
