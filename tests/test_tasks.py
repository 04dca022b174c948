"""What loading a series gives a worker, on real DICOM: a volume, a content rejection, or why
it could not be loaded, each a named case with its time."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from screen.index import index
from screen.records import Series
from screen.tasks import LoadedVolume, LoadFailed, NotAbdominal, load_series

CORPUS = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "dicom-corpus"
ABDOMEN = CORPUS / "dcmqi" / "data" / "segmentations"  # a real 3-slice upper-abdomen CT
HEAD = CORPUS / "dcm_qa_ct" / "In" / "GE"  # a real head CT


def _ct_series(folder: Path) -> Series:
    if not folder.is_dir():
        pytest.skip(f"the shared DICOM corpus is not here ({folder})")
    [series] = [e.series for e in index([folder], workers=1).entries
                if e.series.first.modality == "CT"]
    return series


def test_a_loaded_series_is_its_volume() -> None:
    loaded = load_series(_ct_series(ABDOMEN), confirm=True)
    assert isinstance(loaded, LoadedVolume) and loaded.seconds > 0
    assert loaded.volume.hu.shape[0] == 3


def test_a_head_the_tags_did_not_name_is_not_abdominal() -> None:
    loaded = load_series(_ct_series(HEAD), confirm=True)
    assert isinstance(loaded, NotAbdominal) and loaded.seconds > 0
    assert loaded.reason.startswith("no tag names the abdomen and the image does not show one")


def test_a_series_whose_files_are_gone_failed_to_load(tmp_path: Path) -> None:
    series = _ct_series(ABDOMEN)
    gone = tuple(dataclasses.replace(i, path=str(tmp_path / f"gone-{n}"))
                 for n, i in enumerate(series.instances))
    loaded = load_series(dataclasses.replace(series, instances=gone), confirm=True)
    assert isinstance(loaded, LoadFailed) and loaded.seconds >= 0
    assert loaded.reason.startswith("could not be loaded: ")
