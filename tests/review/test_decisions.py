"""Decisions kept atomically, every one of them, however many reviewers decide at once."""

from __future__ import annotations

import threading
from datetime import datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from screen.review import decisions
from screen.review.decisions import ReviewDecision


def test_decisions_made_at_once_all_survive(tmp_path: Path) -> None:
    def reviewer(name: str) -> None:
        for n in range(8):
            decisions.record(tmp_path, ReviewDecision.now(name, f"series-{n}", "agree", f"{name} {n}"))

    threads = [threading.Thread(target=reviewer, args=(name,)) for name in ("dr-a", "dr-b", "dr-c")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    table = pq.read_table(tmp_path / decisions.DECISIONS)
    assert table.num_rows == 24
    assert sorted(set(table["reviewer"].to_pylist())) == ["dr-a", "dr-b", "dr-c"]
    assert table.schema.field("time").type.tz == "UTC"
    text = (tmp_path / decisions.DECISIONS_JS).read_text()
    assert text.startswith("window.SCREEN_DECISIONS = ") and text.count('"reviewer"') == 24


def test_a_decision_is_checked_when_made() -> None:
    with pytest.raises(ValueError, match="agree, disagree or unsure"):
        ReviewDecision.now("dr-a", "series-1", "maybe")
    with pytest.raises(ValueError, match="needs a reviewer"):
        ReviewDecision.now(" ", "series-1", "agree")
    with pytest.raises(ValueError, match="time zone"):
        ReviewDecision("dr-a", datetime(2025, 1, 1), "series-1", decisions.Verdict.AGREE)
    with pytest.raises(ValueError, match="at most 4000"):
        ReviewDecision.now("dr-a", "series-1", "agree", "x" * 4001)


def test_a_note_cannot_break_out_of_the_script_the_pages_read(tmp_path: Path) -> None:
    decisions.record(tmp_path, ReviewDecision.now("dr-a", "s", "unsure", "</script><script>alert(1)"))
    assert "</script>" not in (tmp_path / decisions.DECISIONS_JS).read_text()


def test_a_table_that_is_not_one_of_decisions_is_refused(tmp_path: Path) -> None:
    import pyarrow as pa

    pq.write_table(pa.table({"x": [1]}), tmp_path / "other.parquet")
    with pytest.raises(ValueError, match="is not a decisions table"):
        decisions.read(tmp_path / "other.parquet")
