"""Truth joined with the worklist: one :class:`Case` per truth series."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from screen.evaluate.reading import ERROR, FOUND, Worklist
from screen.metrics import is_flagged, localisation_hit
from screen.truth import TruthCase

# How a truth series was found in the worklist: FOUND (ok), ERROR, or not at all.
MISSING = "missing"


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
