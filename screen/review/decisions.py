"""Reviewers' decisions on flagged series: ``DIR/decisions.parquet`` and what pages show.

Each decision is written the moment it is made as a small part file of its own in
``DIR/decisions.parts/`` (unique name, written atomically), so two reviewers deciding at once,
from two servers on one report, both keep theirs. Then, under a lock, every part is gathered
into ``decisions.parquet`` (written atomically) and ``decisions.js``, the copy the static
pages read when the report is opened without the server. A crash between the two steps loses
nothing: the next decision, or :func:`compact`, gathers the part again.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from screen import tables
from screen.atomic import write_bytes_atomic

logger = logging.getLogger(__name__)

DECISIONS = "decisions.parquet"
DECISIONS_JS = "decisions.js"
PARTS = "decisions.parts"
LOCK = ".decisions.lock"
NOTE_MAX = 4000  # characters: a note, not a report

SCHEMA = pa.schema([
    pa.field("reviewer", pa.string(), nullable=False),
    pa.field("time", pa.timestamp("ms", tz="UTC"), nullable=False),
    pa.field("series_key", pa.string(), nullable=False),
    pa.field("decision", pa.string(), nullable=False),
    pa.field("note", pa.string(), nullable=False),
])


class Verdict(str, Enum):
    """What a reviewer says of a flagged series."""

    AGREE = "agree"
    DISAGREE = "disagree"
    UNSURE = "unsure"


@dataclass(frozen=True, slots=True)
class ReviewDecision:
    reviewer: str
    time: datetime
    series_key: str
    decision: Verdict
    note: str = ""

    def __post_init__(self) -> None:
        for name in ("reviewer", "series_key"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"a decision needs a {name.replace('_', ' ')}, got {value!r}")
        if not isinstance(self.decision, Verdict):
            raise TypeError(f"decision must be a Verdict, got {self.decision!r}")
        if not isinstance(self.time, datetime) or self.time.tzinfo is None:
            raise ValueError(f"a decision's time must be a datetime with a time zone, got {self.time!r}")
        if not isinstance(self.note, str) or len(self.note) > NOTE_MAX:
            raise ValueError(f"a note must be text of at most {NOTE_MAX} characters")

    @classmethod
    def now(cls, reviewer: str, series_key: str, decision: str, note: str = "") -> ReviewDecision:
        try:
            verdict = Verdict(decision)
        except ValueError:
            raise ValueError(f"decision must be agree, disagree or unsure, got {decision!r}") from None
        return cls(reviewer, datetime.now(UTC).replace(microsecond=0), series_key, verdict, note)

    def as_row(self) -> dict[str, object]:
        return {"reviewer": self.reviewer, "time": self.time, "series_key": self.series_key,
                "decision": self.decision.value, "note": self.note}

    def as_json(self) -> dict[str, str]:
        return {**self.as_row(), "time": self.time.isoformat()}  # type: ignore[dict-item]


def record(folder: Path, decision: ReviewDecision) -> Path:
    """Keep ``decision`` in ``folder``'s part files, then gather every part; returns the table."""
    folder = Path(folder)
    stamp = decision.time.strftime("%Y%m%dT%H%M%S")
    part = folder / PARTS / f"{stamp}-{os.getpid()}-{secrets.token_hex(6)}.parquet"
    tables.write_atomic(pa.Table.from_pylist([decision.as_row()], schema=SCHEMA), part)
    return compact(folder)


def compact(folder: Path) -> Path:
    """``decisions.parquet`` and ``decisions.js`` from every part, under the folder's lock."""
    folder = Path(folder)
    with _locked(folder):
        table = read_parts(folder)
        tables.write_atomic(table, folder / DECISIONS)
        write_js(folder, table)
    return folder / DECISIONS


def read_parts(folder: Path) -> pa.Table:
    parts = sorted((Path(folder) / PARTS).glob("*.parquet"))
    if not parts:
        return SCHEMA.empty_table()
    table = pa.concat_tables(pq.read_table(p, schema=SCHEMA) for p in parts)
    return table.sort_by([("time", "ascending"), ("series_key", "ascending")])


def read(path: Path) -> pa.Table:
    """A decisions table, checked: one clear line when it is not one."""
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowInvalid) as exc:
        raise ValueError(f"cannot read decisions {path}: {exc}") from None
    missing = [f.name for f in SCHEMA if f.name not in table.column_names]
    if missing:
        raise ValueError(f"{path} is not a decisions table: it lacks {', '.join(missing)}")
    return table.select(SCHEMA.names).cast(SCHEMA)


def write_js(folder: Path, table: pa.Table | None = None) -> Path:
    """``decisions.js``: the decisions so far, by series key, for pages opened as files."""
    table = read_parts(folder) if table is None else table
    by_key: dict[str, list[dict[str, str]]] = {}
    for row in table.to_pylist():
        by_key.setdefault(row["series_key"], []).append(
            {**row, "time": row["time"].isoformat()})
    text = json.dumps(by_key, ensure_ascii=True).replace("</", "<\\/")
    return write_bytes_atomic(Path(folder) / DECISIONS_JS,
                              f"window.SCREEN_DECISIONS = {text};\n".encode())


@contextmanager
def _locked(folder: Path) -> Iterator[None]:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / LOCK, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
