"""The flags against the reviewers: PPV from their decisions, and how much they agree."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest
from typer.testing import CliRunner

from screen.cli import app
from screen.evaluate_decisions import evaluate_decisions
from screen.metrics import cohen_kappa
from screen.review import decisions
from screen.review.decisions import ReviewDecision, Verdict
from screen.tables import write_atomic
from screen.worklist_row import SCHEMA

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)


def _worklist(path: Path, flagged: dict[str, bool]) -> Path:
    rows = [{name: None for name in SCHEMA.names} | {
        "series_key": key, "series_instance_uid": key, "status": "ok", "flagged": flag,
        "score": 0.9 if flag else 0.1, "rank": n + 1} for n, (key, flag) in enumerate(flagged.items())]
    write_atomic(pa.Table.from_pylist(rows, schema=SCHEMA), path)
    return path


def _decide(folder: Path, reviewer: str, votes: dict[str, str], minutes: int = 0) -> None:
    for n, (key, vote) in enumerate(votes.items()):
        decisions.record(folder, ReviewDecision(reviewer, T0 + timedelta(minutes=minutes + n), key,
                                          Verdict(vote)))


def test_ppv_counts_each_reviewers_latest_decision_and_kappa_pairs_them(tmp_path: Path) -> None:
    worklist = _worklist(tmp_path / "worklist.parquet",
                         {"s1": True, "s2": True, "s3": True, "s4": True, "s5": False})
    _decide(tmp_path, "dr-a", {"s1": "agree", "s2": "disagree", "s3": "agree", "s4": "unsure"})
    _decide(tmp_path, "dr-b", {"s1": "agree", "s2": "agree", "s3": "agree", "s5": "disagree"})
    _decide(tmp_path, "dr-a", {"s2": "agree"}, minutes=60)  # dr-a changes their mind on s2
    _decide(tmp_path, "dr-c", {"elsewhere": "agree"})
    report = evaluate_decisions(worklist, tmp_path / decisions.DECISIONS)
    # s1, s2, s3 confirmed by every reviewer's latest word; s4 only unsure; s5 not flagged.
    assert (report.confirmed, report.refuted, report.undecided) == (3, 0, 1)
    assert report.ppv is not None and report.ppv.estimate == 1.0 and report.ppv.low < 1.0
    assert report.unflagged_reviewed == 1 and report.unmatched == 1
    (pair,) = report.agreement
    assert (pair.first, pair.second, pair.series) == ("dr-a", "dr-b", 3)
    assert pair.observed == 1.0 and pair.kappa is None  # all "agree": kappa has no value


def test_cohen_kappa_against_a_worked_example() -> None:
    # 10 cases: both agree 4, both disagree 3, split 3 -> po 0.7; marginals 6/10 and 5/10 agree
    # for the first and second -> pe 0.6*0.5 + 0.4*0.5 = 0.5; kappa (0.7-0.5)/0.5 = 0.4.
    first = ["agree"] * 4 + ["disagree"] * 3 + ["agree", "agree", "disagree"]
    second = ["agree"] * 4 + ["disagree"] * 3 + ["disagree", "disagree", "agree"]
    assert cohen_kappa(first, second) == pytest.approx(0.4)
    with pytest.raises(ValueError, match="same cases"):
        cohen_kappa(["agree"], [])


def test_the_command_reports_ppv_and_refuses_decisions_on_another_worklist(tmp_path: Path) -> None:
    worklist = _worklist(tmp_path / "worklist.parquet", {"s1": True, "s2": True})
    _decide(tmp_path, "dr-a", {"s1": "agree", "s2": "disagree"})
    runner = CliRunner()
    done = runner.invoke(app, ["evaluate", str(worklist), "--decisions",
                               str(tmp_path / decisions.DECISIONS), "--json"])
    assert done.exit_code == 0, done.output
    assert '"confirmed": 1' in done.stdout and '"refuted": 1' in done.stdout
    other = _worklist(tmp_path / "other.parquet", {"x": True})
    done = runner.invoke(app, ["evaluate", str(other), "--decisions", str(tmp_path / decisions.DECISIONS)])
    assert done.exit_code == 2 and "none of the 2 reviewed series is in" in done.output
    done = runner.invoke(app, ["evaluate", str(worklist)])
    assert done.exit_code == 2 and "give --truth, --decisions or both" in done.output
