"""Ranking and flagging of worklist rows, through the part files a sweep writes."""

from __future__ import annotations

from pathlib import Path

from screen import worklist
from screen.records import Detection, Geometry, Instance, Series
from screen.worklist_row import WorklistRow

GEOMETRY = Geometry(True, "axial", 0.0, True, True, 2.5, 2.5, 2.5, True, True, 0.0, 300.0)


def _series(key: str, uid: str) -> Series:
    instance = Instance(path=f"/a/{key}", sop_instance_uid=f"{key}.1", sop_class_uid="1.2",
                        transfer_syntax_uid="1.2.840.10008.1.2.1", modality="CT",
                        series_instance_uid=uid, patient_id="P1")
    return Series(key=key, instances=(instance,), geometry=GEOMETRY)


PRODUCER = worklist.Producer("m", "1", "abc", "onnxruntime", "fp32")


def _row(key: str, uid: str, score: float) -> WorklistRow:
    return worklist.row(_series(key, uid), PRODUCER, Detection(score, True, 50.0))


def test_flags_survive_the_part_files(tmp_path: Path) -> None:
    # 0.7 and the threshold 0.7000000000000001 differ in float64 but not in float32: a score
    # flagged while the sweep ran must still be flagged once read back from a part file.
    threshold = 0.7000000000000001
    rows = [_row("a", "1.1", 0.7), _row("b", "1.2", 0.2)]
    live = worklist.flagged_count(rows, threshold)
    store = worklist.PartStore(tmp_path / "worklist.parquet")
    store.write(rows)
    table = worklist.finalise(store.read(), threshold)
    assert live == sum(r.flagged for r in table) == 1


def test_equal_scores_rank_by_uid_and_the_newest_row_wins() -> None:
    rows = [_row("b", "1.9", 0.5), _row("a", "1.1", 0.5), _row("c", "1.5", 0.9),
            _row("b", "1.9", 0.6)]  # a rerun of b
    table = worklist.finalise(rows, 0.55)
    assert [r.series_key for r in table] == ["c", "b", "a"]
    assert [r.rank for r in table] == [1, 2, 3]
    assert [r.flagged for r in table] == [True, True, False]


def test_errors_and_content_rejections(tmp_path: Path) -> None:
    failed = worklist.row(_series("e", "1.7"), PRODUCER, error="could not be loaded: gap")
    ruled_out = worklist.row(_series("r", "1.8"), PRODUCER, error="no abdomen",
                             status=worklist.REJECTED)
    table = worklist.finalise([_row("a", "1.1", 0.3), failed, ruled_out], 0.5)
    assert [(r.series_key, r.status, r.rank) for r in table] == [
        ("a", "ok", 1), ("e", "error", None)]
    store = worklist.PartStore(tmp_path / "w.parquet")
    store.write([failed, ruled_out])
    assert store.done("abc") == {"r"}  # a ruled-out series is not looked at again


def test_equal_scores_rank_the_same_whatever_order_they_come_in() -> None:
    # Issue reproduction: three series at exactly 0.9485356 ranked arbitrarily. The tie-break
    # is SeriesInstanceUID, then series key; scores are compared as the worklist stores them
    # (float32), so scores that differ only beyond float32 tie too.
    import itertools

    tied = [_row("k3", "1.3", 0.9485356), _row("k1", "1.1", 0.94853560000001),
            _row("k2", "1.2", 0.9485356), _row("k0", None, 0.9485356)]
    orders = {tuple(r.series_key for r in worklist.finalise(list(p), 0.5))
              for p in itertools.permutations(tied)}
    assert orders == {("k0", "k1", "k2", "k3")}


def test_warnings_and_left_out_slices_survive_the_part_files(tmp_path: Path) -> None:
    row = worklist.row(_series("a", "1.1"), PRODUCER, Detection(0.4, True, 50.0),
                       warnings=["/a/IM5: pixel data is damaged: left out"], left_out=["a.5"])
    store = worklist.PartStore(tmp_path / "worklist.parquet")
    store.write([row, _row("b", "1.2", 0.3)])
    table = worklist.finalise(store.read(), 0.5)
    assert [(r.warnings, r.left_out_sop_instance_uids) for r in table] == [
        (("/a/IM5: pixel data is damaged: left out",), ("a.5",)), ((), ())]


def test_study_date_is_a_parquet_date_and_old_text_parts_resume(tmp_path: Path) -> None:
    import dataclasses
    import datetime

    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    from screen import tables

    series = _series("a", "1.1")
    instance = dataclasses.replace(series.first, study_date="20240229")
    dated = worklist.row(dataclasses.replace(series, instances=(instance,)), PRODUCER,
                         Detection(0.5, True, 50.0))
    assert dated.study_date == datetime.date(2024, 2, 29)
    assert tables.dicom_date("20230230") is None and tables.dicom_date("") is None
    store = worklist.PartStore(tmp_path / "worklist.parquet")
    store.write([dated])
    # A part from before the change, with the date as DICOM text, resumes as a date.
    old = pa.Table.from_pylist([_row("b", "1.2", 0.2).as_dict() | {"study_date": "20191231"}],
                               schema=worklist._TEXT_DATE)
    pq.write_table(old, store.folder / "part-000099.parquet")
    table = worklist.finalise(store.read(), 0.4)
    out = tmp_path / "worklist.parquet"
    worklist.write_worklist(table, out, {})
    assert pq.read_schema(out).field("study_date").type == pa.date32()
    frame = pd.read_parquet(out)
    assert sorted(frame["study_date"].astype(str)) == ["2019-12-31", "2024-02-29"]


def test_review_top_takes_the_highest_scoring_series_that_were_not_flagged() -> None:
    rows = [_row(k, f"1.{n}", s) for n, (k, s) in enumerate(
        [("a", 0.95), ("b", 0.9), ("c", 0.85), ("d", 0.4), ("e", 0.3), ("f", 0.2)])]
    ranked = worklist.finalise(rows, 0.8)
    # Three are flagged: the top two unflagged lie below them, not among the first two rows.
    assert [r.series_key for r in worklist.highest_unflagged(ranked, 2)] == ["d", "e"]
    assert worklist.highest_unflagged(ranked, 0) == []
