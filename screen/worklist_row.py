"""The worklist's row: one frozen record from the worker to the Parquet file.

Every column of ``worklist.parquet`` is a field of :class:`WorklistRow`, in the file's order,
with its Arrow type beside it; :data:`SCHEMA` is derived from the fields, and so is every
list of column names elsewhere (:func:`columns` checks a name against the record). The
columns that DESIGN.md requires come first (:data:`REQUIRED_COLUMNS`); the rest serve resume,
review, capacity planning and `screen monitor`.

A row is built once on the worker (:func:`screen.worklist.row`), travels as this record
through the part files, ranking and the review pages, and becomes Arrow only in
:func:`to_table`.
"""

from __future__ import annotations

import datetime
import numbers
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace

import pyarrow as pa

OK = "ok"
ERROR = "error"
REJECTED = "rejected"  # the content ruled the series out: kept in part files, never in the worklist
STATUSES = (OK, ERROR, REJECTED)


def _column(arrow: pa.DataType, *, required: bool = False, nullable: bool = True,
            default: object = None, key: bool = False):
    """A field with its Arrow type; ``required``: one of DESIGN.md's columns; ``key``: joins
    outputs to each other and to the PACS, so it is never rewritten (by pseudonymisation)."""
    metadata = {"arrow": arrow, "required": required, "nullable": nullable, "key": key}
    if nullable:
        return field(default=default, metadata=metadata)
    return field(metadata=metadata)  # no default: it must be given


_TEXT = pa.string()
_F32 = pa.float32()
_TEXTS = pa.list_(pa.string())


@dataclass(frozen=True, slots=True, kw_only=True)
class WorklistRow:
    """One series in the worklist: scored (status ``ok``), or why not (``error``, or
    ``rejected`` for a series whose content showed it is not an abdomen)."""

    # The columns DESIGN.md requires, in its order.
    rank: int | None = _column(pa.int32(), required=True)  # 1 = most suspicious; ok rows only
    score: float | None = _column(_F32, required=True)
    flagged: bool | None = _column(pa.bool_(), required=True)
    patient_id: str | None = _column(_TEXT, required=True)
    accession_number: str | None = _column(_TEXT, required=True)
    study_instance_uid: str | None = _column(_TEXT, required=True, key=True)
    series_instance_uid: str | None = _column(_TEXT, required=True, key=True)
    # A date (Parquet date32): DuckDB, polars and pandas read it as a plain date column.
    study_date: datetime.date | None = _column(pa.date32(), required=True)
    series_description: str | None = _column(_TEXT, required=True)
    lesion_x_mm: float | None = _column(_F32, required=True)
    lesion_y_mm: float | None = _column(_F32, required=True)
    lesion_z_mm: float | None = _column(_F32, required=True)
    lesion_diameter_mm: float | None = _column(_F32, required=True)
    lesion_location: str | None = _column(_TEXT, required=True)
    key_sop_instance_uid: str | None = _column(_TEXT, required=True, key=True)
    pancreas_found: bool | None = _column(pa.bool_(), required=True)
    pancreas_volume_ml: float | None = _column(_F32, required=True)
    model: str | None = _column(_TEXT, required=True)
    model_version: str | None = _column(_TEXT, required=True)
    backend: str | None = _column(_TEXT, required=True)
    precision: str | None = _column(_TEXT, required=True)
    status: str = _column(_TEXT, required=True, nullable=False)
    error: str | None = _column(_TEXT, required=True)
    # The key that makes every row unique even when a series UID was missing or split, and
    # the package hash that decides what --resume may reuse.
    series_key: str = _column(_TEXT, nullable=False, key=True)
    model_sha256: str | None = _column(_TEXT, key=True)
    # Where the time went for this series, for capacity planning.
    load_seconds: float | None = _column(_F32)
    detect_seconds: float | None = _column(_F32)
    # What the reader should know about how the series was scored (slices left out, gaps
    # interpolated), and the slices left out, so that the inventory can say which were used.
    warnings: tuple[str, ...] = _column(_TEXTS, default=())
    left_out_sop_instance_uids: tuple[str, ...] = _column(_TEXTS, default=(), key=True)
    # Whether a flagged series' SR and SEG reached the PACS (--store-results), and why not;
    # null where nothing was to be stored.
    stored: bool | None = _column(pa.bool_())
    store_error: str | None = _column(_TEXT)
    # What came in, for `screen monitor` to compare sweeps without reading pixels again: from
    # the headers, and measured on the volume while it was in memory (screen.monitor.intake).
    slice_thickness_mm: float | None = _column(_F32)
    convolution_kernel: str | None = _column(_TEXT)
    scanner: str | None = _column(_TEXT)
    aorta_hu: float | None = _column(_F32)
    contrast_phase: str | None = _column(_TEXT)
    pancreas_hu: float | None = _column(_F32)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}, got {self.status!r}")
        if not isinstance(self.series_key, str) or not self.series_key:
            raise ValueError(f"series_key must be a non-empty string, got {self.series_key!r}")
        if self.score is not None and not (
                isinstance(self.score, numbers.Real) and 0.0 <= self.score <= 1.0):
            raise ValueError(f"series {self.series_key}: score must be a probability, "
                             f"got {self.score!r}")
        if self.status == OK and self.score is None:
            raise ValueError(f"series {self.series_key} has status ok but no score")
        if self.status != OK and self.error is None:
            raise ValueError(f"series {self.series_key} has status {self.status} but no error")
        for name in ("warnings", "left_out_sop_instance_uids"):
            value = getattr(self, name)
            if value is None:  # a part file from before the column existed reads as null
                value = ()
            if isinstance(value, str) or not all(isinstance(v, str) for v in value):
                raise TypeError(f"{name} must be a sequence of strings, got {value!r}")
            # A list from Arrow is kept as a tuple: the record stays immutable.
            object.__setattr__(self, name, tuple(value))

    def ranked(self, rank: int | None, flagged: bool | None) -> WorklistRow:
        """This row with its place in the worklist (None for both: not ranked)."""
        return replace(self, rank=rank, flagged=flagged)

    def as_dict(self) -> dict[str, object]:
        """Column name -> value, as Arrow takes them (lists for the list columns)."""
        return {name: list(v) if isinstance(v := getattr(self, name), tuple) else v
                for name in COLUMNS}

    @classmethod
    def from_dict(cls, values: Mapping[str, object]) -> WorklistRow:
        """A row from column values (a row of a worklist or part file read back)."""
        unknown = set(values) - set(COLUMNS)
        if unknown:
            raise ValueError(f"not worklist columns: {', '.join(sorted(unknown))}")
        return cls(**values)  # type: ignore[arg-type]


def _fields():
    return fields(WorklistRow)


COLUMNS: tuple[str, ...] = tuple(f.name for f in _fields())
REQUIRED_COLUMNS: tuple[str, ...] = tuple(f.name for f in _fields() if f.metadata["required"])
# Columns that join outputs to each other and to the PACS (UIDs, keys, the package's hash).
KEY_COLUMNS: tuple[str, ...] = tuple(f.name for f in _fields() if f.metadata["key"])
SCHEMA = pa.schema([pa.field(f.name, f.metadata["arrow"], nullable=f.metadata["nullable"])
                    for f in _fields()])
REQUIRED_SCHEMA = pa.schema([SCHEMA.field(name) for name in REQUIRED_COLUMNS])


def columns(*names: str) -> tuple[str, ...]:
    """``names``, each checked to be a worklist column: a reader names the columns it needs
    through this, so that a renamed field fails at import, not in a user's sweep."""
    unknown = [n for n in names if n not in COLUMNS]
    if unknown:
        raise ValueError(f"not worklist columns: {', '.join(unknown)}")
    return names


def to_table(rows: Iterable[WorklistRow]) -> pa.Table:
    """The rows as an Arrow table of :data:`SCHEMA`, in their order."""
    return pa.Table.from_pylist([r.as_dict() for r in rows], schema=SCHEMA)


def from_table(table: pa.Table) -> list[WorklistRow]:
    """The rows of a table of :data:`SCHEMA` (a worklist or part file read back)."""
    return [WorklistRow.from_dict(r) for r in table.select(list(COLUMNS)).to_pylist()]
