"""What SR and SEG share: the source datasets, stable UIDs and output file names."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset

from screen import __version__
from screen.atomic import write_atomic
from screen.dicom_out.codes import PRIVATE_SCHEME
from screen.file_names import page_key
from screen.records import Series

logger = logging.getLogger(__name__)

MANUFACTURER = "screen"
SOFTWARE_VERSION = __version__
SR_SERIES_NUMBER = 9901
SEG_SERIES_NUMBER = 9902


def read_sources(series: Series, headers: list[Dataset] | None = None) -> list[Dataset]:
    """Each instance's header (no pixels): what the new objects reference and copy the
    patient and study from. ``headers`` gives them when they were read some other way (a
    PACS sweep has them from WADO-RS metadata); by default each file is read."""
    if headers is not None:
        if len(headers) != len(series.instances):
            raise ValueError(f"{len(headers)} headers for the {len(series.instances)} "
                             f"instances of series {series.key!r}")
        return list(headers)
    datasets = []
    for instance in series.instances:
        try:
            datasets.append(pydicom.dcmread(instance.path, stop_before_pixels=True))
        except (OSError, pydicom.errors.InvalidDicomError) as exc:
            raise ValueError(f"cannot read source instance {instance.path}: {exc}") from exc
    return datasets


def stable_uid(*parts: str) -> str:
    """A UID that is the same each time the same series is reported by the same model, so a
    rerun replaces the object in the PACS instead of adding a copy."""
    digest = hashlib.sha256("\x00".join([MANUFACTURER, *parts]).encode()).digest()
    # A UUID-derived UID (PS3.5 B.2): the 2.25 root, then a 128-bit number as decimal.
    return f"2.25.{int.from_bytes(digest[:16], 'big')}"


def declare_private_codes(dataset: Dataset) -> None:
    """Name the private coding scheme the object uses, as PS3.3 C.12.1 asks."""
    item = Dataset()
    item.CodingSchemeDesignator = PRIVATE_SCHEME
    item.CodingSchemeName = "screen local codes"
    item.CodingSchemeResponsibleOrganization = MANUFACTURER
    dataset.CodingSchemeIdentificationSequence = [item]


def save(dataset: Dataset, path: Path) -> Path:
    """Save atomically, so a PACS push never meets half a file."""
    return write_atomic(Path(path), lambda sink: dataset.save_as(sink, enforce_file_format=True))


def output_path(out_dir: Path, series: Series, kind: str) -> Path:
    return Path(out_dir) / f"{page_key(series.key)}.{kind}.dcm"
