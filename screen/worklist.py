"""Worklist rows built from a series' detection, the part files a sweep writes as it goes,
and the final ranked worklist. The row itself, and the file's schema, is
:class:`screen.worklist_row.WorklistRow`.

Rows are written in small atomic part files beside the output while the sweep runs, so a crash
loses only the series in flight. `--resume` reads those parts back and skips every series
already scored by the same model package. The final worklist is assembled from the parts:
one row per series (the newest wins), ranked by :func:`rank_order`: score, highest first
(compared as stored, in float32), then equal scores by SeriesInstanceUID and series key.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from screen import paths, tables
from screen.metrics import is_flagged
from screen.monitor.intake import Intake
from screen.pseudonym import Pseudonymizer
from screen.records import Detection, Series
from screen.worklist_row import (
    ERROR,
    OK,
    REJECTED,
    SCHEMA,
    WorklistRow,
    from_table,
    to_table,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Producer:
    """What scored a row."""

    model: str
    model_version: str
    model_sha256: str
    backend: str
    precision: str


def row(series: Series, producer: Producer, detection: Detection | None = None,
        key_sop_instance_uid: str | None = None, error: str | None = None,
        status: str = ERROR, warnings: Sequence[str] = (),
        left_out: Sequence[str] = (), intake: Intake | None = None,
        load_seconds: float | None = None, detect_seconds: float | None = None
        ) -> WorklistRow:
    """One worklist row: scored when ``detection`` is given, else ``status`` with its reason.

    ``status`` is ``error``, or ``rejected`` for a series whose image content showed it is
    not an abdomen after all (it leaves the worklist and is marked so in the inventory).
    ``warnings`` say what the loading of a scored series had to make good; ``left_out``
    holds the SOPInstanceUIDs of the slices it left out. ``intake`` holds what was measured
    on the volume; ``load_seconds`` and ``detect_seconds`` where the time went.
    """
    if (detection is None) == (error is None):
        raise ValueError("a worklist row needs either a detection or an error, not both")
    if status not in (ERROR, REJECTED):
        raise ValueError(f"status of an unscored row must be 'error' or 'rejected', not {status!r}")
    first = series.first
    # What every row of the series says, scored or not.
    described = partial(
        WorklistRow,
        patient_id=first.patient_id,
        accession_number=first.accession_number,
        study_instance_uid=first.study_instance_uid,
        series_instance_uid=first.series_instance_uid,
        study_date=tables.dicom_date(first.study_date),
        series_description=first.series_description,
        model=producer.model,
        model_version=producer.model_version,
        backend=producer.backend,
        precision=producer.precision,
        series_key=series.key,
        model_sha256=producer.model_sha256,
        load_seconds=load_seconds,
        detect_seconds=detect_seconds,
        warnings=tuple(warnings),
        left_out_sop_instance_uids=tuple(left_out),
        slice_thickness_mm=first.slice_thickness or series.geometry.slice_spacing_mm or None,
        convolution_kernel=first.convolution_kernel or None,
        scanner=" ".join(v for v in (first.manufacturer, first.manufacturer_model_name) if v)
        or None,
    )
    if detection is None:
        # A reason may name a file whose name is not UTF-8: written as paths are.
        return described(status=status, error=paths.to_text(str(error)))
    centre = detection.lesion_center_lps
    return described(
        status=OK,
        score=detection.score,
        pancreas_found=detection.pancreas_found,
        pancreas_volume_ml=detection.pancreas_volume_ml,
        lesion_x_mm=centre[0] if centre else None,
        lesion_y_mm=centre[1] if centre else None,
        lesion_z_mm=centre[2] if centre else None,
        lesion_diameter_mm=detection.lesion_diameter_mm,
        lesion_location=detection.lesion_location.value if detection.lesion_location else None,
        key_sop_instance_uid=key_sop_instance_uid,
        aorta_hu=intake.aorta_hu if intake else None,
        contrast_phase=intake.contrast_phase if intake else None,
        pancreas_hu=intake.pancreas_hu if intake else None,
    )


PSEUDONYMIZED_WITH = "pseudonymized_with"  # provenance: the key's fingerprint, or "no"


class PartStore:
    """Atomic part files of finished rows in ``<out>.parts/``, for crash safety and resume.

    Each part records whether its rows were pseudonymised, and with which key (by the key's
    keyed fingerprint, never the key), so that a run never resumes rows written otherwise:
    real identifiers would mix with pseudonyms, or pseudonyms of two keys. With a
    ``pseudonymizer``, a part's provenance holds the command line pseudonymised too.
    """

    def __init__(self, out: Path, pseudonymizer: Pseudonymizer | None = None) -> None:
        self.folder = Path(out).with_name(Path(out).name + ".parts")
        self.folder.mkdir(parents=True, exist_ok=True)
        self._next = 1 + max((self._number(p) for p in self.folder.glob("part-*.parquet")),
                             default=0)
        self._pseudonymizer = pseudonymizer
        self._mode = pseudonymizer.fingerprint if pseudonymizer else "no"

    def _provenance(self) -> dict[str, object]:
        extra: dict[str, object] = {PSEUDONYMIZED_WITH: self._mode}
        if self._pseudonymizer is not None:
            extra["command"] = self._pseudonymizer.pseudonymize_command(
                tables.provenance()["command"])  # type: ignore[arg-type]
        return extra

    def check_resumable(self) -> None:
        """ValueError, in one line, if a part was written pseudonymised otherwise than this
        run pseudonymises (or not at all where this run does, or the other way round)."""
        for part in self._parts():
            # Parts from before this was recorded were written without pseudonymisation.
            mode = str(tables.read_provenance(part).get(PSEUDONYMIZED_WITH, "no"))
            if mode != self._mode:
                raise ValueError(
                    f"{self.folder} holds rows {_mode_words(mode)}, and this run "
                    f"{_mode_words(self._mode, present=True)}: resuming would mix them; run "
                    "with --no-resume, or write to another --out")

    @staticmethod
    def _number(path: Path) -> int:
        try:
            return int(path.stem.split("-")[1])
        except (IndexError, ValueError):
            return 0

    def write(self, rows: Sequence[WorklistRow]) -> None:
        if not rows:
            return
        tables.write_atomic(to_table(rows), self.folder / f"part-{self._next:06d}.parquet",
                            self._provenance())
        self._next += 1

    def read(self) -> list[WorklistRow]:
        """Every row of every part, in the order they were written."""
        return [r for p in self._parts() for r in from_table(_read_part(p))]

    def done(self, model_sha256: str) -> set[str]:
        """Series already scored, or rejected by content, by this exact model package;
        ValueError if the parts were pseudonymised otherwise than this run's rows will be.
        Only the three columns that say so are read, and filtered in Arrow: a resume starts
        without making a record of every row done so far."""
        self.check_resumable()
        done: set[str] = set()
        for part in self._parts():
            table = pq.read_table(part, columns=["series_key", "model_sha256", "status"])
            mine = pc.and_(pc.equal(table["model_sha256"], model_sha256),
                           pc.is_in(table["status"], pa.array([OK, REJECTED])))
            done.update(table.filter(mine)["series_key"].to_pylist())
        return done

    def _parts(self) -> list[Path]:
        return sorted(self.folder.glob("part-*.parquet"), key=self._number)

    def compact(self, rows: Sequence[WorklistRow]) -> None:
        """Replace every part by one holding ``rows``, so parts do not pile up over sweeps."""
        old = sorted(self.folder.glob("part-*.parquet"))
        self.write(rows)
        for part in old:
            part.unlink()

    def clear(self) -> None:
        for part in self.folder.glob("part-*.parquet"):
            part.unlink()
        self._next = 1


def _mode_words(mode: str, present: bool = False) -> str:
    if mode == "no":
        return "does not pseudonymise" if present else "written without pseudonymisation"
    return (f"pseudonymises with key {mode}" if present
            else f"pseudonymised with key {mode}")


_TEXT_DATE = SCHEMA.set(SCHEMA.get_field_index("study_date"), pa.field("study_date", pa.string()))


def _read_part(path: Path) -> pa.Table:
    try:
        return pq.read_table(path, schema=SCHEMA)
    except pa.ArrowInvalid:
        # Parts written before study_date became a date hold DICOM's YYYYMMDD text: resume
        # them rather than screen their series again.
        table = pq.read_table(path, schema=_TEXT_DATE)
        dates = pa.array([tables.dicom_date(v) for v in table["study_date"].to_pylist()], pa.date32())
        return table.set_column(table.schema.get_field_index("study_date"), SCHEMA.field("study_date"), dates)


def finalise(rows: Iterable[WorklistRow], threshold: float) -> list[WorklistRow]:
    """One row per series (the last written wins), flagged at ``threshold`` and ranked: the
    scored ones by :func:`rank_order`, then the errors by series key."""
    latest: dict[str, WorklistRow] = {}
    for r in rows:
        latest[r.series_key] = r
    scored = sorted((r for r in latest.values() if r.status == OK), key=rank_order)
    failed = sorted((r for r in latest.values() if r.status == ERROR), key=lambda r: r.series_key)
    return ([r.ranked(rank, is_flagged(r.score, threshold))  # type: ignore[arg-type]
             for rank, r in enumerate(scored, start=1)]
            + [r.ranked(None, None) for r in failed])


def rank_order(r: WorklistRow) -> tuple[float, str, str]:
    """The one ranking of the worklist: highest score first, as the worklist stores it (in
    float32, so that two scores that read the same rank as equal), then equal scores by
    SeriesInstanceUID and, for series without one or split from one, by series key: every
    run ranks the same rows the same way, whatever order they were scored in."""
    return (-float(np.float32(r.score)), r.series_instance_uid or "", r.series_key)


def highest_unflagged(ranked: Sequence[WorklistRow], n: int) -> list[WorklistRow]:
    """The ``n`` highest-scoring scored series that were not flagged, from ranked rows."""
    return [r for r in ranked if r.status == OK and not r.flagged][:n]


def rejected(rows: Iterable[WorklistRow]) -> dict[str, str]:
    """Series key -> reason, for series whose image content ruled them out."""
    return {r.series_key: str(r.error) for r in rows if r.status == REJECTED}


def write_worklist(rows: Sequence[WorklistRow], out: Path, extra: dict[str, object]) -> None:
    tables.write_atomic(to_table(rows), out, extra)


def check_threshold(threshold: float) -> float:
    if not (0.0 <= threshold <= 1.0) or math.isnan(threshold):
        raise ValueError(f"threshold must be between 0 and 1, got {threshold}")
    return threshold


def flagged_count(rows: Iterable[WorklistRow], threshold: float) -> int:
    return sum(1 for r in rows if r.status == OK and is_flagged(r.score, threshold))  # type: ignore[arg-type]
