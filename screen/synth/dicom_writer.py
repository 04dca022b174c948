"""Write synthetic images as DICOM files that look like what scanners and PACS exports hold.

One ``SeriesPlan`` fixes everything common to a series (UIDs, vendor, kernel, pixel encoding,
transfer syntax, where its files go and how they are named); ``write_series`` turns a stack
of 2-D images with their positions into files. A dataset is built once per series and only
the per-slice tags change between files, which keeps a 20,000-file archive quick to write.

Vendor private groups are written the way vendors write them: a few small tags in groups
0009/0019 (before the image pixel module) and large blobs in groups 0029/0043/2005/7005
after it, so header readers meet both.
"""

from __future__ import annotations

import logging
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element
from pydicom.pixels.encoders import RLELosslessEncoder
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    RLELossless,
    generate_uid,
)

logger = logging.getLogger(__name__)

CT_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.2")
MR_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.4")
SECONDARY_CAPTURE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.7")
DOSE_SR_STORAGE = UID("1.2.840.10008.5.1.4.1.1.88.67")

SYNTAXES: dict[str, UID] = {
    "explicit": ExplicitVRLittleEndian,
    "implicit": ImplicitVRLittleEndian,
    "rle": RLELossless,
}
AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
CORONAL = (1.0, 0.0, 0.0, 0.0, 0.0, -1.0)
NAMINGS = ("im", "uid", "number", "img_dcm")
VENDORS = ("SIEMENS", "GE MEDICAL SYSTEMS", "TOSHIBA", "Philips")
MODELS = {
    "SIEMENS": ("SOMATOM Definition AS+", "SOMATOM Force", "SOMATOM go.Top"),
    "GE MEDICAL SYSTEMS": ("LightSpeed VCT", "Revolution CT", "Discovery CT750 HD"),
    "TOSHIBA": ("Aquilion ONE", "Aquilion PRIME"),
    "Philips": ("iCT 256", "Brilliance 64", "IQon - Spectral CT"),
}
SOFT_KERNELS = {
    "SIEMENS": ("B30f", "Br40", "I30f", "B31s"),
    "GE MEDICAL SYSTEMS": ("STANDARD", "SOFT"),
    "TOSHIBA": ("FC08", "FC18"),
    "Philips": ("B", "C"),
}
LUNG_KERNELS = {
    "SIEMENS": ("B70f", "Br64"),
    "GE MEDICAL SYSTEMS": ("LUNG", "BONEPLUS"),
    "TOSHIBA": ("FC51", "FC86"),
    "Philips": ("L", "YC"),
}


def uid(seed: int, *parts: object) -> str:
    """A UID fixed by the archive seed and the object it names, so archives reproduce."""
    return str(generate_uid(entropy_srcs=[f"screen-synth:{seed}", *map(str, parts)]))


@dataclass(frozen=True, slots=True)
class Study:
    patient_id: str
    patient_name: str
    patient_birth_date: str
    patient_sex: str
    accession_number: str
    study_instance_uid: str
    study_date: str
    study_time: str
    study_description: str
    institution: str

    def __post_init__(self) -> None:
        if not self.study_instance_uid:
            raise ValueError("a Study needs a StudyInstanceUID")
        if len(self.study_date) != 8 or not self.study_date.isdigit():
            raise ValueError(f"study_date must be YYYYMMDD, got {self.study_date!r}")


@dataclass(frozen=True, slots=True)
class PixelEncoding:
    """How HU become stored values: unsigned with intercept -1024, or signed with 0."""

    signed: bool
    slope: float = 1.0
    intercept: float = -1024.0
    bits_stored: int = 12
    rescaled: bool = True  # False for MR and captures: no Rescale tags at all

    def __post_init__(self) -> None:
        if self.slope <= 0 or not math.isfinite(self.slope):
            raise ValueError(f"rescale slope must be positive, got {self.slope}")
        if self.bits_stored not in (8, 12, 16):
            raise ValueError(f"bits_stored must be 8, 12 or 16, got {self.bits_stored}")

    def stored(self, image: np.ndarray) -> np.ndarray:
        values = np.rint((image - self.intercept) / self.slope) if self.rescaled else np.rint(image)
        if self.bits_stored == 8:
            return np.clip(values, 0, 255).astype(np.uint8)
        if self.signed:
            top = 2 ** (self.bits_stored - 1)
            return np.clip(values, -top, top - 1).astype(np.int16)
        return np.clip(values, 0, 2 ** self.bits_stored - 1).astype(np.uint16)


@dataclass(frozen=True, slots=True)
class SeriesPlan:
    """Everything common to the files of one series."""

    kind: str
    series_instance_uid: str | None  # None: the tag is left out; "": written empty
    series_number: int
    series_description: str
    modality: str
    sop_class_uid: str
    image_type: tuple[str, ...]
    manufacturer: str
    model: str
    frame_of_reference_uid: str
    syntax: str
    encoding: PixelEncoding
    folders: tuple[str, ...]  # relative to the archive; a second folder splits the series
    naming: str
    kernel: str = ""
    body_part: str = ""
    protocol_name: str = ""
    slice_thickness: float | None = None
    contrast_agent: str = ""
    reverse_instance_numbers: bool = False  # instance 1 at the head end, as many CTs do
    extra: tuple[tuple[str, object], ...] = field(default=())  # further keyword -> value

    def __post_init__(self) -> None:
        if self.syntax not in SYNTAXES:
            raise ValueError(f"syntax must be one of {tuple(SYNTAXES)}, got {self.syntax!r}")
        if self.naming not in NAMINGS:
            raise ValueError(f"naming must be one of {NAMINGS}, got {self.naming!r}")
        if not 1 <= len(self.folders) <= 2:
            raise ValueError(f"a series lies in one or two folders, got {self.folders!r}")
        if self.manufacturer not in VENDORS:
            raise ValueError(f"manufacturer must be one of {VENDORS}, got {self.manufacturer!r}")


def _ds_string(values: Sequence[float]) -> list[str]:
    # DS values are at most 16 characters.
    return [f"{v:.6f}"[:16].rstrip("0").rstrip(".") if abs(v) < 1e9 else f"{v:.6e}" for v in values]


def _private_blocks(ds: Dataset, vendor: str, rng: np.random.Generator) -> None:
    """Vendor private tags: small ones before group 0028, big blobs after it."""
    if vendor == "SIEMENS":
        ds.add_new(0x00190010, "LO", "SIEMENS CT VA0  COAD")
        ds.add_new(0x00191090, "DS", "100.0")
        ds.add_new(0x00191092, "DS", "120.0")
        ds.add_new(0x00290010, "LO", "SIEMENS CSA HEADER")
        ds.add_new(0x00290011, "LO", "SIEMENS MEDCOM HEADER")
        size = int(rng.integers(8_000, 20_000))
        # The CSA2 layout starts "SV10" then four bytes; the rest stands in for its items.
        ds.add_new(0x00291010, "OB", b"SV10\x04\x03\x02\x01" + rng.bytes(size - 8))
        ds.add_new(0x00291020, "OB", b"SV10\x04\x03\x02\x01" + rng.bytes(size // 2))
    elif vendor == "GE MEDICAL SYSTEMS":
        ds.add_new(0x00090010, "LO", "GEMS_IDEN_01")
        ds.add_new(0x00091001, "LO", "CT_LIGHTSPEED")
        ds.add_new(0x00190010, "LO", "GEMS_ACQU_01")
        ds.add_new(0x00191002, "SL", int(rng.integers(800, 900)))
        ds.add_new(0x00191018, "LO", "0")
        ds.add_new(0x00430010, "LO", "GEMS_PARM_01")
        ds.add_new(0x00431012, "SS", [14, 1, 3])
        ds.add_new(0x00431027, "SH", "/1.0:1")
        ds.add_new(0x0043102B, "SS", [4, 4, 0, 0])
        ds.add_new(0x00431039, "IS", ["0", "0", "0", "0"])
        ds.add_new(0x0043104E, "FL", float(rng.uniform(1.0, 3.0)))
        ds.add_new(0x004310FF, "OB", rng.bytes(int(rng.integers(4_000, 10_000))))
    elif vendor == "Philips":
        ds.add_new(0x01F10010, "LO", "ELSCINT1")
        ds.add_new(0x01F11001, "CS", "SPIRAL")
        ds.add_new(0x01F11027, "DS", "0.5")
        ds.add_new(0x20050010, "LO", "Philips MR Imaging DD 001")
        ds.add_new(0x200510FE, "OB", rng.bytes(int(rng.integers(6_000, 14_000))))
        ds.add_new(0x2005100E, "FL", 1.0)
    else:
        ds.add_new(0x70050010, "LO", "TOSHIBA_MEC_CT3")
        ds.add_new(0x70051008, "DS", "0.5")
        ds.add_new(0x700510FE, "OB", rng.bytes(int(rng.integers(3_000, 8_000))))


def _patient_and_descriptions(ds: Dataset, study: Study, plan: SeriesPlan) -> None:
    """The patient, the study's and series' descriptions and the manufacturer, as every file
    of a study carries them (pydicom writes tags in tag order, whatever order they are set in)."""
    ds.Manufacturer = plan.manufacturer
    ds.StudyDescription = study.study_description
    ds.SeriesDescription = plan.series_description
    ds.PatientName = study.patient_name
    ds.PatientID = study.patient_id
    ds.PatientBirthDate = study.patient_birth_date
    ds.PatientSex = study.patient_sex


def base_dataset(study: Study, plan: SeriesPlan, rng: np.random.Generator) -> Dataset:
    """The tags every file of the series shares."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = list(plan.image_type)
    ds.SOPClassUID = plan.sop_class_uid
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = study.study_date
    ds.StudyTime = ds.SeriesTime = study.study_time
    ds.AccessionNumber = study.accession_number
    ds.Modality = plan.modality
    _patient_and_descriptions(ds, study, plan)
    ds.InstitutionName = study.institution
    ds.ReferringPhysicianName = ""
    ds.ManufacturerModelName = plan.model
    if plan.contrast_agent:
        ds.ContrastBolusAgent = plan.contrast_agent
    ds.BodyPartExamined = plan.body_part
    if plan.slice_thickness is not None:
        ds.SliceThickness = _ds_string([plan.slice_thickness])[0]
    if plan.modality == "CT":
        ds.KVP = "120"
        ds.GantryDetectorTilt = "0"
        ds.PatientPosition = "FFS" if plan.kind != "head_ct" else "HFS"
        if plan.kernel:
            ds.ConvolutionKernel = plan.kernel
    if plan.protocol_name:
        ds.ProtocolName = plan.protocol_name
    ds.StudyInstanceUID = study.study_instance_uid
    if plan.series_instance_uid is not None:
        ds.SeriesInstanceUID = plan.series_instance_uid
    ds.StudyID = study.accession_number[-6:]
    ds.SeriesNumber = plan.series_number
    ds.AcquisitionNumber = 1
    if plan.frame_of_reference_uid:
        ds.FrameOfReferenceUID = plan.frame_of_reference_uid
        ds.PositionReferenceIndicator = ""
    for keyword, value in plan.extra:
        setattr(ds, keyword, value)
    enc = plan.encoding
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 8 if enc.bits_stored == 8 else 16
    ds.BitsStored = enc.bits_stored
    ds.HighBit = enc.bits_stored - 1
    ds.PixelRepresentation = 1 if enc.signed else 0
    if enc.rescaled:
        ds.RescaleIntercept = _ds_string([enc.intercept])[0]
        ds.RescaleSlope = _ds_string([enc.slope])[0]
        ds.RescaleType = "HU"
        ds.WindowCenter, ds.WindowWidth = "40", "400"
    _private_blocks(ds, plan.manufacturer, rng)
    return ds


def file_name(plan: SeriesPlan, index: int, sop_uid: str) -> str:
    if plan.naming == "im":
        return f"IM{index + 1:05d}"
    if plan.naming == "uid":
        return f"{sop_uid}.dcm"
    if plan.naming == "number":
        return f"{plan.series_number:03d}{index + 1:05d}"
    return f"IMG{index + 1:04d}.dcm"


def write_series(root: Path, study: Study, plan: SeriesPlan, images: Sequence[np.ndarray],
                 positions: Sequence[tuple[float, float, float]] | None,
                 orientation: tuple[float, float, float, float, float, float] | None,
                 pixel_spacing: tuple[float, float] | None, *, seed: int,
                 rng: np.random.Generator) -> list[Path]:
    """Write one file per image under ``root``; returns the paths written.

    ``images`` hold HU (or plain intensities when the encoding is not rescaled), ``positions``
    each image's ImagePositionPatient, ``pixel_spacing`` DICOM's (row, column) spacing. A
    secondary capture has no place in patient space: pass None for all three.
    """
    if not images or (positions is not None and len(images) != len(positions)):
        raise ValueError(f"{len(images)} images for {len(positions or ())} positions")
    ds = base_dataset(study, plan, rng)
    if orientation is not None and pixel_spacing is not None:
        ds.ImageOrientationPatient = _ds_string(orientation)
        ds.PixelSpacing = _ds_string(pixel_spacing)
    ds.Rows, ds.Columns = int(images[0].shape[0]), int(images[0].shape[1])
    implicit = plan.syntax == "implicit"
    # The tags shared by every file are encoded once; pydicom's writer per file would spend
    # most of its time re-encoding the same private blobs.
    shared = {int(elem.tag): _encode(elem, implicit) for elem in ds}
    n = len(images)
    written: list[Path] = []
    for index, image in enumerate(images):
        if image.shape != images[0].shape:
            raise ValueError(f"image {index} has shape {image.shape}, not {images[0].shape}")
        sop_uid = uid(seed, study.study_instance_uid, plan.series_number, plan.kind, index)
        own = [DataElement(0x00080018, "UI", sop_uid),
               DataElement(0x00200013, "IS", str(n - index if plan.reverse_instance_numbers
                                                 else index + 1))]
        if positions is not None:
            own.append(DataElement(0x00200032, "DS", _ds_string(positions[index])))
            if orientation == AXIAL:
                own.append(DataElement(0x00201041, "DS", _ds_string([positions[index][2]])[0]))
        chunks = dict(shared)
        chunks.update({int(elem.tag): _encode(elem, implicit) for elem in own})
        chunks[0x7FE00010] = _pixel_data(plan, ds, image, implicit)
        folder = plan.folders[0] if len(plan.folders) == 1 or index < n // 2 else plan.folders[1]
        path = root / folder / file_name(plan, index, sop_uid)
        if path.exists():  # two series sharing a flat folder must never overwrite each other
            raise ValueError(f"{path} was already written by another series")
        path.parent.mkdir(parents=True, exist_ok=True)
        body = b"".join(chunks[tag] for tag in sorted(chunks))
        path.write_bytes(b"\0" * 128 + b"DICM" + _file_meta(plan, sop_uid) + body)
        written.append(path)
    return written


def _encode(elem: DataElement, implicit: bool) -> bytes:
    fp = DicomBytesIO()
    fp.is_little_endian = True
    fp.is_implicit_VR = implicit
    write_data_element(fp, elem)
    return fp.getvalue()


def _file_meta(plan: SeriesPlan, sop_uid: str) -> bytes:
    """Group 0002, always explicit VR little endian, with its group length first."""
    meta = Dataset()
    meta.FileMetaInformationVersion = b"\x00\x01"
    meta.MediaStorageSOPClassUID = plan.sop_class_uid
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = SYNTAXES[plan.syntax]
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = "SCREEN_SYNTH"
    body = b"".join(_encode(elem, False) for elem in meta)
    return _encode(DataElement(0x00020000, "UL", len(body)), False) + body


_SEQUENCE_DELIMITER = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"


def _pixel_data(plan: SeriesPlan, ds: Dataset, image: np.ndarray, implicit: bool) -> bytes:
    arr = np.ascontiguousarray(plan.encoding.stored(image))
    if plan.syntax != "rle":
        return _encode(DataElement(0x7FE00010, "OB" if arr.dtype == np.uint8 else "OW",
                                   arr.tobytes()), implicit)
    frame = RLELosslessEncoder.encode(
        arr, rows=int(ds.Rows), columns=int(ds.Columns), samples_per_pixel=1,
        bits_allocated=int(ds.BitsAllocated), bits_stored=int(ds.BitsStored),
        pixel_representation=int(ds.PixelRepresentation),
        photometric_interpretation="MONOCHROME2", number_of_frames=1)
    # Encapsulated pixel data: OB with undefined length, items, then a sequence delimiter.
    header = struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OB", 0, 0xFFFFFFFF)
    return header + encapsulate([frame]) + _SEQUENCE_DELIMITER


def write_dose_sr(path: Path, study: Study, plan: SeriesPlan, *, seed: int,
                  ctdi_vol: float, dlp: float) -> Path:
    """A small X-Ray Radiation Dose SR: a report, not an image, that PACS exports carry."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = DOSE_SR_STORAGE
    sop_uid = uid(seed, study.study_instance_uid, plan.series_number, "sr")
    ds.SOPInstanceUID = sop_uid
    ds.StudyDate = ds.ContentDate = study.study_date
    ds.StudyTime = ds.ContentTime = study.study_time
    ds.AccessionNumber = study.accession_number
    ds.Modality = "SR"
    _patient_and_descriptions(ds, study, plan)
    ds.StudyInstanceUID = study.study_instance_uid
    if plan.series_instance_uid is not None:
        ds.SeriesInstanceUID = plan.series_instance_uid
    ds.SeriesNumber = plan.series_number
    ds.InstanceNumber = 1
    ds.ValueType = "CONTAINER"
    ds.ContinuityOfContent = "SEPARATE"
    ds.CompletionFlag = "COMPLETE"
    ds.VerificationFlag = "UNVERIFIED"
    ds.ConceptNameCodeSequence = DicomSequence([_code("113701", "DCM", "X-Ray Radiation Dose Report")])
    items = []
    for code, meaning, value, unit in (("113830", "Mean CTDIvol", ctdi_vol, "mGy"),
                                       ("113838", "DLP", dlp, "mGy.cm")):
        measured = Dataset()
        measured.NumericValue = _ds_string([value])[0]
        measured.MeasurementUnitsCodeSequence = DicomSequence([_code(unit, "UCUM", unit)])
        item = Dataset()
        item.RelationshipType = "CONTAINS"
        item.ValueType = "NUM"
        item.ConceptNameCodeSequence = DicomSequence([_code(code, "DCM", meaning)])
        item.MeasuredValueSequence = DicomSequence([measured])
        items.append(item)
    ds.ContentSequence = DicomSequence(items)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DOSE_SR_STORAGE
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = SYNTAXES[plan.syntax] if plan.syntax != "rle" else ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.file_meta = meta
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item
