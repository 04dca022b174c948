"""A slice copied once too often must not cost a series its screening: identical copies are
left out, different volumes are split, and only what stays ambiguous is turned away, visibly."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from screen.index import index, summary
from tests.conftest import need


@pytest.fixture(scope="module")
def abdominal_series(small_archive: Path) -> Path:
    with open(small_archive / "manifest.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["kind"] == "abdominal_ct"]
    return small_archive / "archive" / rows[0]["folders"].split(";")[0]


@pytest.fixture(scope="module")
def slice_names(abdominal_series: Path) -> list[str]:
    """The series' own files, in slice order (the folder holds strays of other kinds too)."""
    [entry] = [e for e in index([abdominal_series], workers=1).entries if e.decision.eligible]
    return [Path(i.path).name for i in entry.series.instances]


def _copy(series: Path, target: Path, names: list[str]) -> list[Path]:
    target.mkdir(parents=True)
    for name in names:
        shutil.copy(series / name, target / name)
    return [target / name for name in names]


def _rewrite(path: Path, target: Path, **changes) -> None:
    ds = pydicom.dcmread(path)
    pixels = changes.pop("add_to_pixels", None)
    if pixels is not None:
        ds.PixelData = (ds.pixel_array + pixels).astype(ds.pixel_array.dtype).tobytes()
    for name, value in changes.items():
        setattr(ds, name, value)
    ds.save_as(target)


def _entries(archive: Path):
    result = index([archive], workers=1)
    return result, {e.series.key: e for e in result.entries}


def test_an_extra_copy_of_a_slice_under_a_new_uid_is_left_out(abdominal_series: Path,
                                                              slice_names, tmp_path: Path) -> None:
    files = _copy(abdominal_series, tmp_path / "a" / "series", slice_names)
    copy = tmp_path / "a" / "series" / "zz-copy.dcm"
    _rewrite(files[10], copy, SOPInstanceUID=generate_uid())
    result, entries = _entries(tmp_path / "a")
    [entry] = entries.values()
    assert entry.decision.eligible, entry.decision
    assert len(entry.series.instances) == len(files)
    [error] = [e for e in result.errors if e.path == str(copy)]
    assert error.stage.value == "group"
    assert "with the same pixels" in error.error and error.error.endswith(f"at {files[10]}")
    assert any("1 repeated slices with the same pixels" in w for w in entry.warnings)


def test_two_phases_in_one_series_uid_are_split_into_two_volumes(abdominal_series: Path,
                                                                  slice_names, tmp_path: Path
                                                                  ) -> None:
    files = _copy(abdominal_series, tmp_path / "b" / "arterial", slice_names)
    (tmp_path / "b" / "portal").mkdir()
    for f in files:
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        _rewrite(f, tmp_path / "b" / "portal" / f.name, SOPInstanceUID=generate_uid(),
                 InstanceNumber=int(ds.InstanceNumber) + 1000, AcquisitionNumber=ds.get(
                     "AcquisitionNumber", 1), add_to_pixels=np.int16(40))
    result, entries = _entries(tmp_path / "b")
    assert len(entries) == 2 and all(e.decision.eligible for e in entries.values())
    assert all(len(e.series.instances) == len(files) for e in entries.values())
    assert all("repeated positions with different pixels" in e.series.split_reason
               for e in entries.values())
    folders = [{Path(i.path).parent.name for i in e.series.instances} for e in entries.values()]
    assert sorted(map(sorted, folders)) == [["arterial"], ["portal"]]
    assert not result.errors


def test_an_ambiguous_repeat_is_rejected_and_counted_as_an_abdominal_ct(abdominal_series: Path,
                                                                         slice_names,
                                                                         tmp_path: Path) -> None:
    files = _copy(abdominal_series, tmp_path / "c" / "series", slice_names)
    other = pydicom.dcmread(files[11], stop_before_pixels=True)
    # A different slice that claims the position of another one.
    _rewrite(files[10], tmp_path / "c" / "series" / "zz-moved.dcm", SOPInstanceUID=generate_uid(),
             ImagePositionPatient=other.ImagePositionPatient, add_to_pixels=np.int16(7))
    result, entries = _entries(tmp_path / "c")
    [entry] = entries.values()
    assert (entry.decision.eligible, entry.decision.rule) == (False, "positions")
    assert entry.abdominal_by_tags
    assert any("ambiguous" in w for w in entry.warnings)
    assert summary(result)["abdominal_by_tags_rejected_for_geometry"] == {"positions": 1}


def test_a_copied_slice_does_not_shatter_a_series_numbered_by_acquisition(corpus: Path,
                                                                          tmp_path: Path) -> None:
    # This scanner gives each slice an acquisition number of its own.
    series = tmp_path / "ge"
    shutil.copytree(need(corpus / "dcm_qa_ct/In/GE"), series)
    _rewrite(series / "05.dcm", series / "copy-05.dcm", SOPInstanceUID=generate_uid())
    result, entries = _entries(series)
    [entry] = entries.values()
    assert len(entry.series.instances) == 28 and entry.series.geometry.unique_positions
    assert [e.path for e in result.errors] == [str(series / "copy-05.dcm")]
