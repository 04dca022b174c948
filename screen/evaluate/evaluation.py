"""The numbers `screen evaluate` reports, with their intervals: one frozen :class:`Evaluation`."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from screen.evaluate.matching import ERROR, MISSING, Case, match_cases
from screen.evaluate.reading import read_worklist
from screen.metrics import (
    Confusion,
    Interval,
    SizeBin,
    UndefinedMetric,
    auroc,
    bootstrap_ci,
    confusion_from_flags,
    wilson_interval,
)
from screen.records import Location
from screen.truth import read_truth

logger = logging.getLogger(__name__)

# Below this many positive cases a stratum's rates are noise: say so instead.
MIN_STRATUM_POSITIVES = 5


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
    (flagged as :func:`screen.metrics.flags` has it: score >= threshold, in float32). AUROC intervals are percentile bootstraps of
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
