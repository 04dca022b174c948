"""The Parquet files `screen` writes: the errors' schema (the worklist's is derived from its
record in `worklist_row.py`, the inventory's in `inventory.py`), and one way to write them
safely.

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
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, date, datetime
from itertools import islice
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


# Rows made into Arrow at a time: only so many live as Python objects at once. An inventory's
# rows hold every file's path and UID, several times what Arrow holds of them.
ROWS_PER_BATCH = 256


def batches_of(rows: Iterable[dict[str, object]], schema: pa.Schema) -> Iterator[pa.RecordBatch]:
    """``rows`` as record batches of ``schema``, ROWS_PER_BATCH rows each."""
    rows = iter(rows)
    while chunk := list(islice(rows, ROWS_PER_BATCH)):
        yield pa.RecordBatch.from_pylist(chunk, schema=schema)


def table_of(rows: Iterable[dict[str, object]], schema: pa.Schema) -> pa.Table:
    """``rows`` as a table of ``schema``. pyarrow's converters import pandas (most of a
    second) to look for its types; an empty table is built without them, so that indexing
    an empty folder starts at once."""
    return pa.Table.from_batches(list(batches_of(rows, schema)), schema=schema)


def write_atomic(table: pa.Table, path: Path, extra: Mapping[str, object] | None = None) -> None:
    """Write ``table`` to ``path`` so that the file is either the old one or the whole new one."""
    write_batches_atomic(table.schema, [table], path, extra)


def write_batches_atomic(schema: pa.Schema, batches: Iterable[pa.RecordBatch | pa.Table],
                         path: Path, extra: Mapping[str, object] | None = None) -> None:
    """Write ``batches`` of ``schema`` to ``path`` as they come, one row group each, so that
    the whole table never has to be held; atomically, as :func:`write_atomic`. A single batch
    gives the same bytes as writing it as a table."""
    metadata = dict(schema.metadata or {})
    metadata[PROVENANCE_KEY] = json.dumps(provenance(extra), default=str).encode()
    schema = schema.with_metadata(metadata)

    def write(sink) -> None:
        with pq.ParquetWriter(sink, schema) as writer:
            wrote = False
            for batch in batches:
                writer.write(batch)
                wrote = True
            if not wrote:  # as pyarrow writes an empty table: one row group of no rows
                writer.write(pa.Table.from_batches([], schema=schema))

    atomic.write_atomic(Path(path), write)
