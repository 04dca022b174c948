"""The index keeps instances as columns: what comes back out equals what went in, and the
inventory and errors it writes are the bytes the record-by-record path writes, on an archive
of odd cases (split series, copies of slices and of files, Latin-1 names, unreadable files)."""

from __future__ import annotations

import csv
import io
import os
import pickle
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pydicom
import pytest
from pydicom.uid import generate_uid

from screen.header_reading import read_headers
from screen.index import IndexResult, index, inventory_entry
from screen.instance_columns import InstanceColumns, SeriesInstances
from screen.inventory import errors_table, inventory_table
from screen.records import FileError, Instance
from screen.select import load_rules
from screen.series import assemble

ODD = Instance(
    path=os.fsdecode(b"/archive/M\xfcller/IM1"), sop_instance_uid="1.2.3.4.5",
    sop_class_uid="1.2.840.10008.5.1.4.1.1.2", transfer_syntax_uid="1.2.840.10008.1.2.1",
    modality="CT", image_type=("ORIGINAL", "PRIMARY"), image_position=(0.5, -1.0, 2.25),
    instance_number=7, file_size=1234)


@pytest.mark.parametrize("changes", [
    {},
    {"image_position": None, "instance_number": None},
    {"instance_number": 2**70, "file_size": 0},  # too large for its column
    {"image_position": (1, 2, 3)},  # ints stay ints
    {"path": "IM2", "sop_instance_uid": ""},  # no folder, no UID
    {"path": "/a/\udcff\ud800x", "sop_instance_uid": "no-dots"},  # any surrogate at all
    {"number_of_frames": 2, "frame_positions": ((0.0, 0.0, 0.0), (0.0, 0.0, 1.0))},
])
def test_an_instance_comes_back_out_as_it_went_in(changes: dict[str, object]) -> None:
    from dataclasses import replace

    instance = replace(ODD, **changes)
    columns = InstanceColumns([ODD, instance, ODD])
    back = columns[1]
    assert back == instance
    assert [type(getattr(back, f)) for f in instance.__slots__] == \
        [type(getattr(instance, f)) for f in instance.__slots__]
    assert columns[-1] == columns[0] == ODD and len(columns) == 3
    assert columns.kind(0) == columns.kind(2)


def test_a_series_of_columns_is_its_instances_and_travels_as_its_own() -> None:
    from dataclasses import replace

    many = InstanceColumns(replace(ODD, path=f"/a/{n}", sop_instance_uid=f"1.2.{n}",
                                   image_position=(0.0, 0.0, float(n))) for n in range(100))
    series = SeriesInstances(many, [5, 3, 9])
    assert series == (many[5], many[3], many[9]) == series[:]
    assert hash(series) == hash(tuple(series))
    travelled = pickle.loads(pickle.dumps(series))
    assert travelled == series
    assert len(pickle.dumps(series)) < len(pickle.dumps(many)) / 5  # its 3, not all 100
    with pytest.raises(IndexError, match="instance 100 of 100"):
        many[100]


def _rewrite(source: Path, target: Path, **changes: object) -> None:
    ds = pydicom.dcmread(source)
    for name, value in changes.items():
        if value is None:
            delattr(ds, name)
        else:
            setattr(ds, name, value)
    target.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(target)


@pytest.fixture(scope="module")
def odd_archive(small_archive: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small archive (every kind of distractor, multi-series folders, junk files) linked
    into a new folder, with a Latin-1 patient folder, files exported twice, slice copies
    under new UIDs, slices without an instance number or a position, and two slices of
    another orientation added."""
    root = tmp_path_factory.mktemp("odd") / "archive"
    shutil.copytree(small_archive / "archive", root, copy_function=os.link)
    with open(small_archive / "manifest.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["kind"] == "abdominal_ct"]
    first, second = (sorted((root / r["folders"].split(";")[0]).glob("*"))
                     for r in rows[:2])
    latin1 = Path(os.fsdecode(bytes(root) + b"/M\xfcller"))
    shutil.copytree(first[0].parent, latin1 / "CT", copy_function=os.link)
    # Exported twice: the same files again, in folders that sort before and after the first.
    for folder, files in (("0-again", second[:3]), ("zz-again", first[-2:])):
        (root / folder).mkdir()
        for f in files:
            os.link(f, root / folder / f.name)
    _rewrite(first[4], root / "copies" / "same-pixels-new-uid.dcm",
             SOPInstanceUID=generate_uid())
    _rewrite(second[5], second[5].parent / "zz-no-number.dcm", SOPInstanceUID=generate_uid(),
             InstanceNumber=None)
    _rewrite(second[6], root / "copies" / "no-position.dcm", SOPInstanceUID=generate_uid(),
             ImagePositionPatient=None)
    for n in (7, 8):  # two coronal slices in the axial series' UID: it is split in two
        _rewrite(first[n], first[n].parent / f"zz-coronal-{n}.dcm", SOPInstanceUID=generate_uid(),
                 ImageOrientationPatient=[1, 0, 0, 0, 0, -1])
    (latin1 / "notes.txt").write_bytes(b"not an image")
    return root


def _parquet(table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def _record_by_record(roots: list[Path]) -> IndexResult:
    """The index as it was built before columns: every instance a record, assembled at once."""
    rules = load_rules()
    outcomes = list(read_headers(roots, workers=1))
    instances = [o for o in outcomes if isinstance(o, Instance)]
    series, left_out = assemble(instances)
    errors = [o for o in outcomes if isinstance(o, FileError)] + left_out
    return IndexResult(tuple(inventory_entry(s, rules) for s in series), tuple(errors),
                       len(outcomes))


def test_the_index_writes_the_bytes_of_the_record_by_record_path(odd_archive: Path) -> None:
    expected, result = _record_by_record([odd_archive]), index([odd_archive], workers=1)
    assert all(isinstance(e.series.instances, SeriesInstances) for e in result.entries)
    assert result.entries == expected.entries
    assert _parquet(inventory_table(result.entries)) == \
        _parquet(inventory_table(expected.entries))
    assert _parquet(errors_table(result.errors)) == _parquet(errors_table(expected.errors))
    # The odd cases are there to be compared.
    stages = result.errors_by_stage
    assert stages.get("group", 0) >= 6 and stages.get("header", 0) >= 1
    assert any(e.series.split_reason for e in result.entries)
    assert any("M\\xfcller" in p for p in errors_table(result.errors).column("path").to_pylist())
