"""The worklist record: DESIGN.md's required columns, the schema derived from it, validation,
and rows that survive a Parquet file (older part files too)."""

from __future__ import annotations

import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from screen import worklist
from screen.worklist_row import (
    COLUMNS,
    KEY_COLUMNS,
    REQUIRED_COLUMNS,
    SCHEMA,
    WorklistRow,
    columns,
    from_table,
    to_table,
)

# DESIGN.md's "Outputs" table, as the contract that users' scripts rely on: name and type.
DESIGN_REQUIRED = [
    ("rank", pa.int32()), ("score", pa.float32()), ("flagged", pa.bool_()),
    ("patient_id", pa.string()), ("accession_number", pa.string()),
    ("study_instance_uid", pa.string()), ("series_instance_uid", pa.string()),
    ("study_date", pa.date32()),  # a date: DESIGN says "string", we keep it a real date
    ("series_description", pa.string()),
    ("lesion_x_mm", pa.float32()), ("lesion_y_mm", pa.float32()), ("lesion_z_mm", pa.float32()),
    ("lesion_diameter_mm", pa.float32()), ("lesion_location", pa.string()),
    ("key_sop_instance_uid", pa.string()), ("pancreas_found", pa.bool_()),
    ("pancreas_volume_ml", pa.float32()),
    ("model", pa.string()), ("model_version", pa.string()), ("backend", pa.string()),
    ("precision", pa.string()), ("status", pa.string()), ("error", pa.string()),
]


def _ok(**values: object) -> WorklistRow:
    return WorklistRow(**({"series_key": "k1", "status": "ok", "score": 0.5} | values))  # type: ignore[arg-type]


def test_the_record_holds_designs_required_columns_first_in_its_order() -> None:
    assert REQUIRED_COLUMNS == tuple(name for name, _ in DESIGN_REQUIRED)
    assert COLUMNS[:len(REQUIRED_COLUMNS)] == REQUIRED_COLUMNS
    for name, kind in DESIGN_REQUIRED:
        assert SCHEMA.field(name).type == kind, name
    assert SCHEMA.names == list(COLUMNS)
    assert not SCHEMA.field("status").nullable and not SCHEMA.field("series_key").nullable
    assert {"series_key", "model_sha256", "series_instance_uid"} <= set(KEY_COLUMNS)
    assert "patient_id" not in KEY_COLUMNS and "error" not in KEY_COLUMNS


def test_column_names_are_checked_against_the_record() -> None:
    assert columns("score", "status") == ("score", "status")
    with pytest.raises(ValueError, match="not worklist columns: scor"):
        columns("scor")
    with pytest.raises(ValueError, match="not worklist columns: colour"):
        WorklistRow.from_dict({"series_key": "k", "status": "ok", "score": 0.1, "colour": "red"})


def test_a_row_is_checked_when_built() -> None:
    with pytest.raises(ValueError, match="status must be one of ok, error, rejected, got 'done'"):
        _ok(status="done")
    with pytest.raises(ValueError, match="series_key must be a non-empty string"):
        _ok(series_key="")
    with pytest.raises(ValueError, match="series k1: score must be a probability, got 1.5"):
        _ok(score=1.5)
    with pytest.raises(ValueError, match="series k1 has status ok but no score"):
        _ok(score=None)
    with pytest.raises(ValueError, match="series k1 has status error but no error"):
        _ok(status="error", score=None)
    with pytest.raises(TypeError, match="warnings must be a sequence of strings"):
        _ok(warnings="slice 3 left out")
    row = _ok(warnings=["slice 3 left out"])
    assert row.warnings == ("slice 3 left out",)
    with pytest.raises(AttributeError):
        row.score = 0.9  # type: ignore[misc]


def test_rows_survive_a_parquet_file(tmp_path: Path) -> None:
    rows = [_ok(rank=1, flagged=True, study_date=datetime.date(2024, 2, 29), lesion_x_mm=1.5,
                warnings=("gap interpolated",), left_out_sop_instance_uids=("1.2.3",),
                aorta_hu=180.5, contrast_phase="portal_venous"),
            WorklistRow(series_key="k2", status="error", error="could not be loaded: gap")]
    path = tmp_path / "rows.parquet"
    pq.write_table(to_table(rows), path)
    assert pq.read_schema(path).names == list(COLUMNS)
    assert from_table(pq.read_table(path)) == rows  # values float32 holds exactly


def test_part_files_from_before_the_newer_columns_resume(tmp_path: Path) -> None:
    # A part written when the worklist had no timings, warnings, store or intake columns.
    store = worklist.PartStore(tmp_path / "worklist.parquet")
    older = pa.schema([SCHEMA.field(n) for n in (*REQUIRED_COLUMNS, "series_key", "model_sha256")])
    row = _ok(model_sha256="abc")
    pq.write_table(pa.Table.from_pylist([{n: row.as_dict()[n] for n in older.names}],
                                        schema=older), store.folder / "part-000001.parquet")
    [back] = store.read()
    assert back == row and back.warnings == () and back.aorta_hu is None
    assert store.done("abc") == {"k1"}
