"""WADO-RS series metadata (DICOM JSON, no pixels) as the instance records a header read gives.

Each item becomes a pydicom Dataset and goes through the same conversion as a file's header
(``screen.headers.instance_from_dataset``), so nothing about a series depends on whether it
came from a folder or a PACS.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from pydicom.dataset import Dataset

from screen.dicomweb.address import PacsAddress
from screen.headers import instance_from_dataset
from screen.records import FileError, Instance, Stage

logger = logging.getLogger(__name__)

STUDY_UID, SERIES_UID, SOP_UID = "0020000D", "0020000E", "00080018"


def dataset_of(item: dict) -> Dataset:
    """One DICOM JSON object as a Dataset, leaving out bulk data (it is not fetched here)."""
    kept = {tag: value for tag, value in item.items()
            if isinstance(value, dict) and "BulkDataURI" not in value}
    return Dataset.from_json(kept)


def first_value(item: dict, tag: str) -> str:
    values = (item.get(tag) or {}).get("Value") or [""]
    return str(values[0])


def instances_of(address: PacsAddress, items: Iterable[dict]) -> list[Instance | FileError]:
    """Each metadata item as an Instance named by its WADO-RS URL, or why it cannot be one."""
    outcomes: list[Instance | FileError] = []
    for item in items:
        url = address.instance(first_value(item, STUDY_UID), first_value(item, SERIES_UID),
                               first_value(item, SOP_UID))
        try:
            outcomes.append(instance_from_dataset(url, dataset_of(item)))
        except Exception as exc:  # noqa: BLE001 - one bad item must not lose its series
            outcomes.append(FileError(url, Stage.HEADER,
                                      f"unreadable DICOM JSON metadata: {type(exc).__name__}: {exc}"))
    return outcomes
