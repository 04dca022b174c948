"""The Parquet files `screen` writes: the worklist's and errors' schemas (the inventory's lives
with the index), and one way to write them safely.

Every table is written whole to a temporary file beside its destination, flushed to disk and
renamed over it, so a reader never sees half a file and a crash never leaves one. Each
carries provenance in its schema metadata: the tool's version, the command line, the time,
and whatever the caller adds (the model package's hash, say).
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Mapping
from datetime import UTC, date, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from screen import __version__, atomic

PROVENANCE_KEY = b"screen.provenance"

ERRORS_SCHEMA = pa.schema(
    [
        pa.field("path", pa.string(), nullable=False),
        pa.field("stage", pa.string(), nullable=False),
        pa.field("error", pa.string(), nullable=False),
    ]
)

WORKLIST_SCHEMA = pa.schema(
    [
        pa.field("rank", pa.int32()),
        pa.field("score", pa.float32()),
        pa.field("flagged", pa.bool_()),
        pa.field("patient_id", pa.string()),
        pa.field("accession_number", pa.string()),
        pa.field("study_instance_uid", pa.string()),
        pa.field("series_instance_uid", pa.string()),
        # A date (Parquet date32): DuckDB, polars and pandas read it as a plain date column.
        pa.field("study_date", pa.date32()),
        pa.field("series_description", pa.string()),
        pa.field("lesion_x_mm", pa.float32()),
        pa.field("lesion_y_mm", pa.float32()),
        pa.field("lesion_z_mm", pa.float32()),
        pa.field("lesion_diameter_mm", pa.float32()),
        pa.field("lesion_location", pa.string()),
        pa.field("key_sop_instance_uid", pa.string()),
        pa.field("pancreas_found", pa.bool_()),
        pa.field("pancreas_volume_ml", pa.float32()),
        pa.field("model", pa.string()),
        pa.field("model_version", pa.string()),
        pa.field("backend", pa.string()),
        pa.field("precision", pa.string()),
        pa.field("status", pa.string(), nullable=False),
        pa.field("error", pa.string()),
    ]
)


def dicom_date(text: str | None) -> date | None:
    """DICOM's YYYYMMDD as a date; None for an empty or impossible one (archives hold both)."""
    if not isinstance(text, str) or not re.fullmatch(r"\d{8}", text.strip()):
        return None
    text = text.strip()
    try:
        return date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        return None


def provenance(extra: Mapping[str, object] | None = None) -> dict[str, object]:
    """What made a file: tool version, command line, UTC time, plus the caller's items."""
    record: dict[str, object] = {
        "tool": "screen",
        "version": __version__,
        "command": [os.path.basename(sys.argv[0]), *sys.argv[1:]],
        "written_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    record.update(extra or {})
    return record


def read_provenance(path: Path) -> dict[str, object]:
    metadata = pq.read_schema(path).metadata or {}
    raw = metadata.get(PROVENANCE_KEY)
    return json.loads(raw) if raw else {}


def table_of(rows: list[dict[str, object]], schema: pa.Schema) -> pa.Table:
    """``rows`` as a table of ``schema``. pyarrow's converters import pandas (most of a
    second) to look for its types; an empty table is built without them, so that indexing
    an empty folder starts at once."""
    if not rows:
        return pa.Table.from_batches([], schema=schema)
    return pa.Table.from_pylist(rows, schema=schema)


def write_atomic(table: pa.Table, path: Path, extra: Mapping[str, object] | None = None) -> None:
    """Write ``table`` to ``path`` so that the file is either the old one or the whole new one."""
    metadata = dict(table.schema.metadata or {})
    metadata[PROVENANCE_KEY] = json.dumps(provenance(extra), default=str).encode()
    table = table.replace_schema_metadata(metadata)
    atomic.write_atomic(Path(path), lambda sink: pq.write_table(table, sink))
