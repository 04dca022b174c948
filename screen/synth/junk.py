"""Files that turn up in real PACS exports but are not usable images.

Each writer makes one such file and says what it is; the archive lists every one in its
manifest so a scan's errors can be checked against them.
"""

from __future__ import annotations

import io
import logging
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian

logger = logging.getLogger(__name__)

MEDIA_DIRECTORY_STORAGE = "1.2.840.10008.1.3.10"


@dataclass(frozen=True, slots=True)
class JunkFile:
    path: Path
    what: str  # truncated_dicom, text, empty, jpeg, dicomdir

    def __post_init__(self) -> None:
        if not self.what:
            raise ValueError(f"junk file {self.path} needs a description")


def truncated_copy(source: Path, target: Path) -> JunkFile:
    """A copy of a good DICOM file cut off early in its data set, as an interrupted transfer
    leaves it: the preamble and file meta survive, the identifying tags do not."""
    data = source.read_bytes()
    if data[128:132] != b"DICM":
        raise ValueError(f"{source} is not a DICOM file with a preamble")
    # (0002,0000) group length sits at byte 132; its value is at 140..144.
    meta_end = 144 + struct.unpack("<I", data[140:144])[0]
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data[: meta_end + 150])
    return JunkFile(target, "truncated_dicom")


def text_file(target: Path, lines: list[str]) -> JunkFile:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return JunkFile(target, "text")


def empty_file(target: Path) -> JunkFile:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(b"")
    return JunkFile(target, "empty")


def jpeg_file(target: Path, image: np.ndarray) -> JunkFile:
    """A real JPEG preview of a slice (as viewers export), windowed to soft tissue."""
    pixels = (np.clip((image + 160.0) / 400.0, 0.0, 1.0) * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=80)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(buffer.getvalue())
    return JunkFile(target, "jpeg")


def dicomdir_file(target: Path, fileset_uid: str) -> JunkFile:
    """A media directory with no records: valid DICOM, but not an image."""
    ds = Dataset()
    ds.FileSetID = "SCREEN"
    ds.OffsetOfTheFirstDirectoryRecordOfTheRootDirectoryEntity = 0
    ds.OffsetOfTheLastDirectoryRecordOfTheRootDirectoryEntity = 0
    ds.FileSetConsistencyFlag = 0
    ds.DirectoryRecordSequence = DicomSequence([])
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MEDIA_DIRECTORY_STORAGE
    meta.MediaStorageSOPInstanceUID = fileset_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.file_meta = meta
    target.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(target, enforce_file_format=True)
    return JunkFile(target, "dicomdir")
