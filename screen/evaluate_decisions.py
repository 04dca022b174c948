"""`screen evaluate --decisions`: the flags against what the reviewers decided.

Each reviewer's latest decision on a series counts (a reviewer may change their mind). A
flagged series is confirmed when more of its reviewers agreed than disagreed, refuted when
more disagreed, and left out when they were unsure or split: the positive predictive value is
confirmed over confirmed plus refuted, with a Wilson interval. Where two reviewers decided on
the same series, their agreement is Cohen's kappa over agree / disagree / unsure.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

import pyarrow.parquet as pq

from screen import metrics
from screen.review import decisions as decision_table
from screen.worklist_row import OK, columns

logger = logging.getLogger(__name__)

WORKLIST_COLUMNS = columns("series_key", "flagged", "status")


@dataclass(frozen=True, slots=True)
class PairAgreement:
    first: str
    second: str
    series: int  # decided by both
    observed: float  # share of those with the same decision
    kappa: float | None  # None where it has no value (one identical label throughout)

    def to_dict(self) -> dict[str, object]:
        return {"reviewers": [self.first, self.second], "series": self.series,
                "observed_agreement": self.observed, "kappa": self.kappa}


@dataclass(frozen=True, slots=True)
class DecisionReport:
    decisions: int
    reviewers: tuple[str, ...]
    flagged_reviewed: int
    confirmed: int
    refuted: int
    undecided: int  # unsure or split
    unflagged_reviewed: int
    unmatched: int  # decisions on series the worklist does not hold
    ppv: metrics.Interval | None
    agreement: tuple[PairAgreement, ...]

    def to_dict(self) -> dict[str, object]:
        return {"decisions": self.decisions, "reviewers": list(self.reviewers),
                "flagged_reviewed": self.flagged_reviewed, "confirmed": self.confirmed,
                "refuted": self.refuted, "undecided": self.undecided,
                "unflagged_reviewed": self.unflagged_reviewed, "unmatched": self.unmatched,
                "ppv": self.ppv.to_dict() if self.ppv else None,
                "agreement": [a.to_dict() for a in self.agreement]}

    def lines(self) -> list[str]:
        ppv = (f"{self.ppv} (Wilson 95% interval)" if self.ppv
               else "no value: no flagged series was confirmed or refuted")
        out = [f"{self.decisions} decisions by {len(self.reviewers)} reviewers "
               f"({', '.join(self.reviewers)}) on {self.flagged_reviewed} flagged series",
               f"positive predictive value of the flags: {ppv}; {self.confirmed} confirmed, "
               f"{self.refuted} refuted, {self.undecided} unsure or split"]
        if self.unflagged_reviewed:
            out.append(f"{self.unflagged_reviewed} reviewed series were not flagged (not counted)")
        if self.unmatched:
            out.append(f"{self.unmatched} decisions are on series this worklist does not hold")
        for pair in self.agreement:
            kappa = f"{pair.kappa:.2f}" if pair.kappa is not None else "no value"
            out.append(f"{pair.first} and {pair.second}: {pair.series} series in common, "
                       f"{pair.observed:.0%} the same decision, Cohen's kappa {kappa}")
        return out


def evaluate_decisions(worklist: Path, decisions: Path) -> DecisionReport:
    table = decision_table.read(decisions)
    names = pq.read_schema(worklist).names
    missing = [c for c in WORKLIST_COLUMNS if c not in names]
    if missing:
        raise ValueError(f"{worklist} is not a worklist: it lacks {', '.join(missing)}")
    rows = pq.read_table(worklist, columns=list(WORKLIST_COLUMNS)).to_pylist()
    flagged = {r["series_key"]: r["flagged"] is True for r in rows if r["status"] == OK}

    latest: dict[tuple[str, str], str] = {}  # (series, reviewer) -> decision, in time order
    for d in table.sort_by("time").to_pylist():
        latest[(d["series_key"], d["reviewer"])] = d["decision"]
    if not latest:
        raise ValueError(f"{decisions} holds no decisions")
    by_series: dict[str, dict[str, str]] = {}
    for (key, reviewer), decision in latest.items():
        by_series.setdefault(key, {})[reviewer] = decision
    matched = {k: v for k, v in by_series.items() if k in flagged}
    unmatched = sum(len(v) for k, v in by_series.items() if k not in flagged)
    if not matched:
        raise ValueError(f"none of the {len(by_series)} reviewed series is in {worklist}")

    confirmed = refuted = undecided = 0
    for key, votes in matched.items():
        if not flagged[key]:
            continue
        count = Counter(votes.values())
        if count["agree"] > count["disagree"]:
            confirmed += 1
        elif count["disagree"] > count["agree"]:
            refuted += 1
        else:
            undecided += 1
    ppv = (metrics.wilson_interval(confirmed, confirmed + refuted)
           if confirmed + refuted else None)
    reviewers = tuple(sorted({r for _, r in latest}))
    return DecisionReport(
        decisions=table.num_rows, reviewers=reviewers,
        flagged_reviewed=sum(1 for k in matched if flagged[k]), confirmed=confirmed,
        refuted=refuted, undecided=undecided,
        unflagged_reviewed=sum(1 for k in matched if not flagged[k]), unmatched=unmatched,
        ppv=ppv, agreement=_agreement(matched, reviewers))


def _agreement(by_series: dict[str, dict[str, str]], reviewers: tuple[str, ...]) -> tuple[PairAgreement, ...]:
    pairs = []
    for first, second in combinations(reviewers, 2):
        common = [(v[first], v[second]) for v in by_series.values() if first in v and second in v]
        if not common:
            continue
        a, b = [c[0] for c in common], [c[1] for c in common]
        try:
            kappa: float | None = metrics.cohen_kappa(a, b)
        except metrics.UndefinedMetric:
            kappa = None
        observed = sum(x == y for x, y in common) / len(common)
        pairs.append(PairAgreement(first, second, len(common), observed, kappa))
    return tuple(pairs)
