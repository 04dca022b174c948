"""The worklist as evaluation reads it: one checked :class:`WorklistEntry` per series."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from screen.records import Vector3
from screen.worklist_row import ERROR, OK, columns

logger = logging.getLogger(__name__)

# The worklist columns evaluation reads; the rest of the worklist is for people.
WORKLIST_COLUMNS = columns(
    "series_instance_uid",
    "score",
    "flagged",
    "status",
    "lesion_x_mm",
    "lesion_y_mm",
    "lesion_z_mm",
)

# A worklist row's status, as evaluation reads it: scored, or in error.
FOUND = OK


@dataclass(frozen=True, slots=True)
class WorklistEntry:
    """What the worklist says about one series."""

    series_instance_uid: str
    status: str  # ok or error
    score: float | None = None
    flagged: bool | None = None
    lesion_xyz: Vector3 | None = None

    def __post_init__(self) -> None:
        if self.status not in (FOUND, ERROR):
            raise ValueError(f"status must be 'ok' or 'error', got {self.status!r}")
        if self.status == FOUND and (self.score is None or not 0.0 <= self.score <= 1.0):
            raise ValueError(
                f"series {self.series_instance_uid} has status ok but score {self.score!r}"
            )


def _merge(rows: Sequence[WorklistEntry]) -> WorklistEntry:
    """One entry for a series the worklist holds several times (volumes split from one UID).

    A series is as suspicious as its most suspicious volume, and flagged if any volume is.
    """
    ok = [r for r in rows if r.status == FOUND]
    if not ok:
        return rows[0]
    top = max(ok, key=lambda r: r.score or 0.0)
    flags = [r.flagged for r in ok]
    flagged = None if any(f is None for f in flags) else any(flags)
    return WorklistEntry(top.series_instance_uid, FOUND, top.score, flagged, top.lesion_xyz)


@dataclass(frozen=True, slots=True)
class Worklist:
    entries: dict[str, WorklistEntry]
    n_rows: int
    n_merged_rows: int  # rows folded into another row of the same series


def read_worklist(path: Path) -> Worklist:
    """Read and check the columns evaluation needs from a worklist Parquet file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"worklist {path} does not exist")
    try:
        names = pq.read_schema(path).names
    except (pa.ArrowException, OSError) as exc:
        raise ValueError(f"worklist {path} is not a readable Parquet file: {exc}") from None
    missing = [c for c in WORKLIST_COLUMNS if c not in names]
    if missing:
        raise ValueError(f"worklist {path} lacks column(s) {', '.join(missing)}")
    columns = pq.read_table(path, columns=list(WORKLIST_COLUMNS)).to_pydict()

    by_uid: dict[str, list[WorklistEntry]] = {}
    n_rows = len(columns["status"])
    for i in range(n_rows):
        uid = columns["series_instance_uid"][i]
        if not uid:
            raise ValueError(f"worklist {path} row {i} has no series_instance_uid")
        xyz = tuple(columns[c][i] for c in ("lesion_x_mm", "lesion_y_mm", "lesion_z_mm"))
        score = columns["score"][i]
        try:
            entry = WorklistEntry(
                uid,
                columns["status"][i],
                None if score is None else float(score),
                columns["flagged"][i],
                None if any(v is None for v in xyz) else tuple(float(v) for v in xyz),  # type: ignore[arg-type]
            )
        except ValueError as exc:
            raise ValueError(f"worklist {path} row {i}: {exc}") from None
        by_uid.setdefault(uid, []).append(entry)
    merged = sum(len(rows) - 1 for rows in by_uid.values())
    if merged:
        logger.info("worklist %s: %d rows share a series UID with another row", path, merged)
    return Worklist({uid: _merge(rows) for uid, rows in by_uid.items()}, n_rows, merged)
