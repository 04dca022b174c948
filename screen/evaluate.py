"""`screen evaluate`: how a worklist compares with the truth for the same series.

The flow reads top to bottom:

1. :func:`read_truth` checks the truth CSV (one row per series, label 1/0, and for positives
   the lesion's centre, diameter and location) and returns :class:`TruthCase` records;
2. :func:`read_worklist` checks the worklist Parquet and returns one :class:`WorklistEntry`
   per series;
3. :func:`match_cases` joins them. A truth series the worklist lacks, or holds only as an
   error, is a miss: score 0, not flagged, listed by UID. Worklist rows outside the truth
   are counted, not used;
4. :func:`evaluate` computes AUROC, the operating point's rates, the localisation rates and
   the strata, each with its interval, into one frozen :class:`Evaluation`;
5. :func:`render_table`, :meth:`Evaluation.to_dict` and :func:`plot_roc` present it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from numpy.typing import ArrayLike
from PIL import Image, ImageDraw, ImageFont
from rich.console import Group
from rich.table import Table
from rich.text import Text

from screen.atomic import write_atomic
from screen.metrics import (
    Confusion,
    Interval,
    SizeBin,
    UndefinedMetric,
    auroc,
    bootstrap_ci,
    confusion_from_flags,
    is_flagged,
    localisation_hit,
    roc_curve,
    wilson_interval,
)
from screen.records import Location, Vector3
from screen.truth import TruthCase, read_truth

logger = logging.getLogger(__name__)


# The worklist columns evaluation reads; the rest of WORKLIST_SCHEMA is for people.
WORKLIST_COLUMNS = (
    "series_instance_uid",
    "score",
    "flagged",
    "status",
    "lesion_x_mm",
    "lesion_y_mm",
    "lesion_z_mm",
)

# Below this many positive cases a stratum's rates are noise: say so instead.
MIN_STRATUM_POSITIVES = 5

# How a truth series was found in the worklist.
FOUND = "ok"
MISSING = "missing"
ERROR = "error"


# --- worklist -----------------------------------------------------------------------------


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


# --- joining ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Case:
    """One truth series with what the worklist made of it."""

    truth: TruthCase
    found: str  # ok, missing or error
    score: float  # 0 when missing or error
    flagged: bool  # False when missing or error
    localised: bool  # flagged and the reported lesion lies on the true one (positives only)


def match_cases(
    truth: Iterable[TruthCase], worklist: Worklist, threshold: float | None
) -> tuple[Case, ...]:
    """Join truth and worklist; misses count as score 0, not flagged, not localised."""
    cases: list[Case] = []
    for item in truth:
        entry = worklist.entries.get(item.series_instance_uid)
        if entry is None or entry.status != FOUND:
            found = MISSING if entry is None else ERROR
            cases.append(Case(item, found, 0.0, False, False))
            continue
        score = float(entry.score)  # type: ignore[arg-type]  # status ok always has one
        if threshold is not None:
            flagged = is_flagged(score, threshold)
        elif entry.flagged is None:
            raise ValueError(
                f"series {item.series_instance_uid} has no flagged value; "
                "give a threshold to decide it from the score"
            )
        else:
            flagged = bool(entry.flagged)
        hit = (
            flagged
            and item.label
            and localisation_hit(entry.lesion_xyz, item.lesion_xyz, item.lesion_diameter_mm)  # type: ignore[arg-type]
        )
        cases.append(Case(item, FOUND, score, flagged, bool(hit)))
    return tuple(cases)


# --- the evaluation -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Stratum:
    """Results for the positives of one lesion size or location, against all negatives."""

    kind: str  # size or location
    value: str  # <10, 10-20, >20, head, body, tail
    n_positive: int
    n_flagged: int
    n_localised: int
    auroc: Interval | None = None
    sensitivity: Interval | None = None
    localisation_flagged: Interval | None = None
    localisation_all: Interval | None = None
    note: str = ""  # why numbers are absent

    def to_dict(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "value": self.value,
            "n_positive": self.n_positive,
            "n_flagged": self.n_flagged,
            "n_localised": self.n_localised,
            "auroc": _interval_dict(self.auroc),
            "sensitivity": _interval_dict(self.sensitivity),
            "localisation_flagged": _interval_dict(self.localisation_flagged),
            "localisation_all": _interval_dict(self.localisation_all),
            "note": self.note,
        }


@dataclass(frozen=True, slots=True)
class Evaluation:
    """Everything `screen evaluate` reports, ready to print, plot or dump as JSON."""

    worklist: str
    truth: str
    operating_point: str  # in words: the worklist's flags, or score >= a threshold
    threshold: float | None
    replicates: int
    seed: int
    cases: tuple[Case, ...]
    missing_uids: tuple[str, ...]  # in the truth, not in the worklist
    error_uids: tuple[str, ...]  # in the truth, status error in the worklist
    n_unmatched_rows: int  # worklist series not in the truth (not used)
    n_merged_rows: int  # worklist rows sharing a series UID with another row
    auroc: Interval | None
    confusion: Confusion
    localisation_flagged: Interval | None  # among flagged positives
    localisation_all: Interval | None  # among all positives: flagged and on the lesion
    strata: tuple[Stratum, ...]
    notes: tuple[str, ...] = ()

    @property
    def labels(self) -> np.ndarray:
        return np.array([c.truth.label for c in self.cases], dtype=bool)

    @property
    def scores(self) -> np.ndarray:
        return np.array([c.score for c in self.cases], dtype=np.float64)

    @property
    def n_positive(self) -> int:
        return int(self.labels.sum())

    @property
    def n_negative(self) -> int:
        return len(self.cases) - self.n_positive

    def to_dict(self, include_cases: bool = False) -> dict[str, object]:
        """JSON-ready; per-case rows only when asked (they can run to thousands)."""
        result: dict[str, object] = {
            "worklist": self.worklist,
            "truth": self.truth,
            "operating_point": self.operating_point,
            "threshold": self.threshold,
            "bootstrap": {"replicates": self.replicates, "seed": self.seed},
            "n_cases": len(self.cases),
            "n_positive": self.n_positive,
            "n_negative": self.n_negative,
            "missing_uids": list(self.missing_uids),
            "error_uids": list(self.error_uids),
            "n_unmatched_rows": self.n_unmatched_rows,
            "n_merged_rows": self.n_merged_rows,
            "auroc": _interval_dict(self.auroc),
            "operating": self.confusion.to_dict(),
            "localisation_flagged": _interval_dict(self.localisation_flagged),
            "localisation_all": _interval_dict(self.localisation_all),
            "strata": [s.to_dict() for s in self.strata],
            "notes": list(self.notes),
        }
        if include_cases:
            result["cases"] = [
                {
                    "series_instance_uid": c.truth.series_instance_uid,
                    "label": int(c.truth.label),
                    "found": c.found,
                    "score": c.score,
                    "flagged": c.flagged,
                    "localised": c.localised,
                }
                for c in self.cases
            ]
        return result


def _interval_dict(value: Interval | None) -> dict[str, object] | None:
    return None if value is None else value.to_dict()


def _proportion(successes: int, n: int) -> Interval | None:
    return wilson_interval(successes, n) if n else None


def _auroc_ci(labels: np.ndarray, scores: np.ndarray, replicates: int, seed: int) -> Interval:
    return bootstrap_ci(auroc, labels, scores, replicates=replicates, seed=seed)


def _stratum(
    kind: str,
    value: str,
    members: Sequence[Case],
    negatives: Sequence[Case],
    replicates: int,
    seed: int,
    min_positives: int,
) -> Stratum:
    n = len(members)
    n_flagged = sum(c.flagged for c in members)
    n_localised = sum(c.localised for c in members)
    if n < min_positives:
        note = (
            "no positive cases"
            if n == 0
            else f"too few positive cases ({n} < {min_positives}) for a meaningful rate"
        )
        return Stratum(kind, value, n, n_flagged, n_localised, note=note)
    auroc_ci = None
    note = ""
    if negatives:
        pooled = [*members, *negatives]
        labels = np.array([c.truth.label for c in pooled], dtype=bool)
        scores = np.array([c.score for c in pooled])
        auroc_ci = _auroc_ci(labels, scores, replicates, seed)
    else:
        note = "no negative cases for an AUROC"
    return Stratum(
        kind,
        value,
        n,
        n_flagged,
        n_localised,
        auroc=auroc_ci,
        sensitivity=_proportion(n_flagged, n),
        localisation_flagged=_proportion(n_localised, n_flagged),
        localisation_all=_proportion(n_localised, n),
        note=note,
    )


def evaluate(
    worklist: Path,
    truth: Path,
    *,
    threshold: float | None = None,
    replicates: int = 1000,
    seed: int = 0,
    min_stratum_positives: int = MIN_STRATUM_POSITIVES,
) -> Evaluation:
    """Compare a worklist with the truth for its series.

    ``threshold`` replaces the worklist's ``flagged`` column as the operating point
    (flagged = score >= threshold). AUROC intervals are percentile bootstraps of
    ``replicates`` resamples drawn with ``seed``; rates use Wilson intervals.
    """
    if threshold is not None:
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
            raise TypeError(f"threshold must be a number, got {threshold!r}")
        if not (math.isfinite(threshold) and 0.0 <= threshold <= 1.0):
            raise ValueError(f"threshold must lie in [0, 1], got {threshold}")
    if isinstance(replicates, bool) or not isinstance(replicates, int) or replicates < 1:
        raise ValueError(f"replicates must be a positive whole number, got {replicates!r}")

    truth_cases = read_truth(truth)
    table = read_worklist(worklist)
    cases = match_cases(truth_cases, table, threshold)
    truth_uids = {c.series_instance_uid for c in truth_cases}
    n_unmatched = sum(uid not in truth_uids for uid in table.entries)
    missing = tuple(c.truth.series_instance_uid for c in cases if c.found == MISSING)
    if len(missing) == len(cases):
        # Every case would count as a miss: the rates would describe nothing of this sweep.
        raise ValueError(
            f"0 matched: none of the {len(cases)} series in {truth} is in the worklist "
            f"{worklist} ({len(table.entries)} series); is this the truth of the archive swept?"
        )
    errors = tuple(c.truth.series_instance_uid for c in cases if c.found == ERROR)
    notes: list[str] = []
    if missing or errors:
        notes.append(
            f"{len(missing)} truth series missing from the worklist and {len(errors)} in "
            "error count as misses (score 0, not flagged)"
        )
    if n_unmatched:
        notes.append(f"{n_unmatched} worklist series are not in the truth and were not used")
    logger.info(
        "evaluating %d truth series: %d missing, %d in error, %d worklist series unused",
        len(cases),
        len(missing),
        len(errors),
        n_unmatched,
    )

    labels = np.array([c.truth.label for c in cases], dtype=bool)
    scores = np.array([c.score for c in cases], dtype=np.float64)
    flagged = np.array([c.flagged for c in cases], dtype=bool)
    try:
        overall_auroc: Interval | None = _auroc_ci(labels, scores, replicates, seed)
    except UndefinedMetric as exc:
        overall_auroc = None
        notes.append(f"AUROC not computed: {exc}")
    confusion = confusion_from_flags(labels, flagged)

    positives = [c for c in cases if c.truth.label]
    negatives = [c for c in cases if not c.truth.label]
    n_flagged_pos = sum(c.flagged for c in positives)
    n_localised = sum(c.localised for c in positives)

    strata: list[Stratum] = []
    for size in SizeBin:
        members = [c for c in positives if c.truth.size_bin is size]
        strata.append(
            _stratum(
                "size", size.value, members, negatives, replicates, seed, min_stratum_positives
            )
        )
    for location in Location:
        members = [c for c in positives if c.truth.lesion_location is location]
        strata.append(
            _stratum(
                "location",
                location.value,
                members,
                negatives,
                replicates,
                seed,
                min_stratum_positives,
            )
        )

    return Evaluation(
        worklist=str(worklist),
        truth=str(truth),
        operating_point=(
            "the worklist's flagged column" if threshold is None else f"score >= {threshold:g}"
        ),
        threshold=threshold,
        replicates=replicates,
        seed=seed,
        cases=cases,
        missing_uids=missing,
        error_uids=errors,
        n_unmatched_rows=n_unmatched,
        n_merged_rows=table.n_merged_rows,
        auroc=overall_auroc,
        confusion=confusion,
        localisation_flagged=_proportion(n_localised, n_flagged_pos),
        localisation_all=_proportion(n_localised, len(positives)),
        strata=tuple(strata),
        notes=tuple(notes),
    )


# --- presenting ---------------------------------------------------------------------------


def _fraction(value: Interval | None, numerator: int, denominator: int) -> tuple[str, str]:
    """A rate as 'k/n (xx.x %)' and its interval, or a dash when it has no value."""
    if value is None:
        return f"{numerator}/{denominator}", "-"
    return (
        f"{numerator}/{denominator} ({100 * value.estimate:.1f} %)",
        f"{100 * value.low:.1f}-{100 * value.high:.1f} %",
    )


def _auroc_text(value: Interval | None) -> tuple[str, str]:
    if value is None:
        return "-", "-"
    text = f"{value.low:.3f}-{value.high:.3f}"
    if value.skipped:
        text += f" ({value.skipped} resamples skipped)"
    return f"{value.estimate:.3f}", text


def render_table(evaluation: Evaluation) -> Group:
    """The report as rich tables: overall results, strata, and what was missing."""
    ev = evaluation
    c = ev.confusion
    overall = Table(title=f"Evaluation at {ev.operating_point}", title_justify="left")
    overall.add_column("Measure")
    overall.add_column("Value", justify="right")
    overall.add_column("95 % CI", justify="right")
    overall.add_row("Series (positive / negative)", f"{ev.n_positive} / {ev.n_negative}", "")
    overall.add_row("AUROC", *_auroc_text(ev.auroc))
    overall.add_row("Sensitivity", *_fraction(c.sensitivity, c.tp, c.tp + c.fn))
    overall.add_row("Specificity", *_fraction(c.specificity, c.tn, c.tn + c.fp))
    overall.add_row("PPV", *_fraction(c.ppv, c.tp, c.tp + c.fp))
    overall.add_row("NPV", *_fraction(c.npv, c.tn, c.tn + c.fn))
    n_flagged_pos = c.tp
    n_localised = sum(x.localised for x in ev.cases)
    overall.add_row(
        "Lesion found, of flagged positives",
        *_fraction(ev.localisation_flagged, n_localised, n_flagged_pos),
    )
    overall.add_row(
        "Lesion found, of all positives",
        *_fraction(ev.localisation_all, n_localised, ev.n_positive),
    )

    strata = Table(
        title="By lesion size (mm) and location (positives against all negatives)",
        title_justify="left",
    )
    for name in ("Stratum", "Positives", "AUROC", "Sensitivity", "Found (flagged)", "Note"):
        strata.add_column(name, justify="left" if name in ("Stratum", "Note") else "right")
    for s in ev.strata:
        label = f"{s.value} mm" if s.kind == "size" else s.value
        if s.sensitivity is None:
            strata.add_row(label, str(s.n_positive), "-", "-", "-", s.note)
            continue
        auroc_value, auroc_ci = _auroc_text(s.auroc)
        strata.add_row(
            label,
            str(s.n_positive),
            f"{auroc_value} ({auroc_ci})" if s.auroc else "-",
            " ".join(_fraction(s.sensitivity, s.n_flagged, s.n_positive)),
            _fraction(s.localisation_flagged, s.n_localised, s.n_flagged)[0],
            s.note,
        )

    parts: list[Table | Text] = [overall, strata]
    for title, uids in (
        ("missing from the worklist", ev.missing_uids),
        ("in error in the worklist", ev.error_uids),
    ):
        if uids:
            shown = ", ".join(uids[:10]) + (f" and {len(uids) - 10} more" if len(uids) > 10 else "")
            parts.append(Text(f"{len(uids)} truth series {title} (counted as misses): {shown}"))
    if ev.n_unmatched_rows:
        parts.append(Text(f"{ev.n_unmatched_rows} worklist series not in the truth (not used)"))
    return Group(*parts)


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow built without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def plot_roc(
    source: Evaluation | tuple[ArrayLike, ArrayLike], path: Path, *, size: int = 640
) -> Path:
    """Draw the ROC curve as a PNG: axes, chance diagonal, curve, AUROC, operating point."""
    if size < 200:
        raise ValueError(f"plot size must be at least 200 pixels, got {size}")
    operating: tuple[float, float] | None = None
    if isinstance(source, Evaluation):
        labels, scores = source.labels, source.scores
        auroc_ci = source.auroc
        sens, spec = source.confusion.sensitivity, source.confusion.specificity
        if sens is not None and spec is not None:
            operating = (1.0 - spec.estimate, sens.estimate)
        title_value = (
            f"AUROC {auroc_ci.estimate:.3f} (95% CI {auroc_ci.low:.3f}-{auroc_ci.high:.3f})"
            if auroc_ci
            else None
        )
    else:
        labels, scores = source
        title_value = None
    fpr, tpr, _ = roc_curve(labels, scores)  # raises UndefinedMetric for one class
    if title_value is None:
        title_value = f"AUROC {auroc(labels, scores):.3f}"
    n_pos = int(np.asarray(labels, dtype=bool).sum())
    n_neg = len(np.asarray(labels)) - n_pos

    image = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(image)
    font, small = _font(max(12, size // 40)), _font(max(10, size // 50))
    left, right, top, bottom = size * 0.14, size * 0.95, size * 0.12, size * 0.86
    span_x, span_y = right - left, bottom - top

    def to_px(x: float, y: float) -> tuple[float, float]:
        return left + x * span_x, bottom - y * span_y

    # Grid and ticks every 0.2.
    for tick in np.linspace(0.0, 1.0, 6):
        x, _ = to_px(tick, 0.0)
        _, y = to_px(0.0, tick)
        draw.line([(x, top), (x, bottom)], fill=(230, 230, 230))
        draw.line([(left, y), (right, y)], fill=(230, 230, 230))
        draw.text((x, bottom + 6), f"{tick:.1f}", fill="black", font=small, anchor="mt")
        draw.text((left - 6, y), f"{tick:.1f}", fill="black", font=small, anchor="rm")
    draw.rectangle([left, top, right, bottom], outline="black", width=2)

    # Chance diagonal, dashed.
    steps = 40
    for i in range(0, steps, 2):
        draw.line(
            [to_px(i / steps, i / steps), to_px((i + 1) / steps, (i + 1) / steps)],
            fill=(150, 150, 150),
            width=1,
        )

    draw.line([to_px(x, y) for x, y in zip(fpr, tpr)], fill=(31, 92, 180), width=3)
    if operating is not None:
        ox, oy = to_px(*operating)
        r = max(4, size // 110)
        draw.ellipse([ox - r, oy - r, ox + r, oy + r], fill=(200, 40, 40))
        draw.text(
            (ox + 2 * r, oy + r), "operating point", fill=(200, 40, 40), font=small, anchor="lt"
        )

    draw.text((size / 2, top / 2), "ROC curve", fill="black", font=font, anchor="mm")
    draw.text((right - 8, bottom - 8), title_value, fill="black", font=small, anchor="rb")
    draw.text(
        (right - 8, bottom - 8 - size // 30),
        f"{n_pos} positive, {n_neg} negative series",
        fill="black",
        font=small,
        anchor="rb",
    )
    draw.text(
        ((left + right) / 2, bottom + size * 0.07),
        "1 - specificity",
        fill="black",
        font=font,
        anchor="mm",
    )
    # The y label is drawn on its own strip and turned upright.
    strip = Image.new("RGB", (int(span_y), size // 20), "white")
    ImageDraw.Draw(strip).text(
        (span_y / 2, size / 40), "Sensitivity", fill="black", font=font, anchor="mm"
    )
    strip = strip.rotate(90, expand=True)
    image.paste(strip, (int(size * 0.02), int(top)))

    return write_atomic(Path(path), lambda sink: image.save(sink, format="PNG"))
