"""The truth CSV: one row per series, its label and, for a positive, where its lesion is.

Columns ``TRUTH_COLUMNS``: ``series_instance_uid``, ``label`` (1 or 0) and, for positives, the
lesion's centre in LPS mm, its diameter in mm and its location (head, body or tail).
``screen synth`` writes it beside the archive it makes (:func:`write_truth`), ``screen evaluate``
and the engine builder read it (:func:`read_truth`), and :func:`truth_beside` finds it for an
archive.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from screen.metrics import SizeBin, location_of, size_bin
from screen.records import Location, Vector3

TRUTH_FILE = "truth.csv"
TRUTH_COLUMNS = (
    "series_instance_uid",
    "label",
    "lesion_x_mm",
    "lesion_y_mm",
    "lesion_z_mm",
    "lesion_diameter_mm",
    "lesion_location",
)
_LESION_COLUMNS = TRUTH_COLUMNS[2:]


@dataclass(frozen=True, slots=True)
class TruthCase:
    """What is known about one series: lesion or not, and where the lesion is."""

    series_instance_uid: str
    label: bool
    lesion_xyz: Vector3 | None = None
    lesion_diameter_mm: float | None = None
    lesion_location: Location | None = None

    def __post_init__(self) -> None:
        if not self.series_instance_uid:
            raise ValueError("a truth case needs its series_instance_uid")
        lesion = (self.lesion_xyz, self.lesion_diameter_mm, self.lesion_location)
        if self.label and any(v is None for v in lesion):
            raise ValueError(
                f"positive series {self.series_instance_uid} needs the lesion's centre, "
                "diameter and location"
            )
        if not self.label and any(v is not None for v in lesion):
            raise ValueError(
                f"negative series {self.series_instance_uid} must not describe a lesion"
            )
        if self.lesion_diameter_mm is not None and not (
            math.isfinite(self.lesion_diameter_mm) and self.lesion_diameter_mm > 0
        ):
            raise ValueError(f"lesion_diameter_mm must be positive, got {self.lesion_diameter_mm}")
        if self.lesion_location is not None:
            object.__setattr__(self, "lesion_location", location_of(self.lesion_location))

    @property
    def size_bin(self) -> SizeBin | None:
        return None if self.lesion_diameter_mm is None else size_bin(self.lesion_diameter_mm)


def _number(text: str, where: str, column: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{where}: {column} must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"{where}: {column} must be finite, got {text!r}")
    return value


def _truth_row(row: dict[str, str], where: str) -> TruthCase:
    uid = (row["series_instance_uid"] or "").strip()
    if not uid:
        raise ValueError(f"{where}: series_instance_uid is empty")
    label_text = (row["label"] or "").strip()
    if label_text not in ("0", "1"):
        raise ValueError(f"{where}: label must be 1 or 0, got {label_text!r}")
    lesion = {c: (row[c] or "").strip() for c in _LESION_COLUMNS}
    if label_text == "0":
        filled = [c for c, v in lesion.items() if v]
        if filled:
            raise ValueError(f"{where}: negative series {uid} has lesion values in {filled}")
        return TruthCase(uid, False)
    empty = [c for c, v in lesion.items() if not v]
    if empty:
        raise ValueError(f"{where}: positive series {uid} lacks {empty}")
    xyz = tuple(_number(lesion[c], where, c) for c in _LESION_COLUMNS[:3])
    diameter = _number(lesion["lesion_diameter_mm"], where, "lesion_diameter_mm")
    if diameter <= 0:
        raise ValueError(f"{where}: lesion_diameter_mm must be positive, got {diameter}")
    try:
        location = location_of(lesion["lesion_location"])
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
    return TruthCase(uid, True, xyz, diameter, location)  # type: ignore[arg-type]


def read_truth(path: Path) -> tuple[TruthCase, ...]:
    """Read and check a truth CSV; every problem names the file, line and column."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"truth file {path} does not exist")
    with path.open(newline="", encoding="utf-8-sig") as source:
        reader = csv.DictReader(source)
        header = [name.strip() for name in (reader.fieldnames or [])]
        missing = [c for c in TRUTH_COLUMNS if c not in header]
        if missing:
            raise ValueError(
                f"truth file {path} lacks column(s) {', '.join(missing)}; "
                f"it needs {','.join(TRUTH_COLUMNS)}"
            )
        reader.fieldnames = header
        cases: list[TruthCase] = []
        seen: dict[str, int] = {}
        for row in reader:
            where = f"truth file {path} line {reader.line_num}"
            case = _truth_row(row, where)
            if case.series_instance_uid in seen:
                raise ValueError(
                    f"{where}: series {case.series_instance_uid} is already on line "
                    f"{seen[case.series_instance_uid]}"
                )
            seen[case.series_instance_uid] = reader.line_num
            cases.append(case)
    if not cases:
        raise ValueError(f"truth file {path} holds no series")
    return tuple(cases)


def write_truth(path: Path, cases: Iterable[TruthCase]) -> None:
    """Write ``cases`` as a truth CSV: centres to the micrometre, diameters to 10 micrometres."""
    with Path(path).open("w", newline="", encoding="utf-8") as sink:
        writer = csv.writer(sink)
        writer.writerow(TRUTH_COLUMNS)
        for case in cases:
            if case.lesion_xyz is None or case.lesion_location is None:
                writer.writerow([case.series_instance_uid, int(case.label), "", "", "", "", ""])
                continue
            x, y, z = case.lesion_xyz
            writer.writerow([case.series_instance_uid, int(case.label), f"{x:.3f}", f"{y:.3f}",
                             f"{z:.3f}", f"{case.lesion_diameter_mm:.2f}", case.lesion_location.value])


def truth_beside(archive: Path) -> Path | None:
    """The truth CSV in ``archive`` or beside it (in its parent), or None."""
    archive = Path(archive)
    for candidate in (archive / TRUTH_FILE, archive.parent / TRUTH_FILE):
        if candidate.is_file():
            return candidate
    return None
