"""One flag rule: the sweep, its worklist, `screen evaluate`, the metrics and the package
evaluation all flag the same scores at a threshold that float32 rounds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from screen import worklist
from screen.evaluate import evaluate
from screen.metrics import confusion_at, flags, is_flagged
from screen.records import Detection, Geometry, Instance, Series
from screen.training.evaluate_package import CaseResult, summarise
from screen.truth import TruthCase, write_truth

# 0.7 is 0.699999988 in float32: a score of 0.7 is stored below the float64 threshold 0.7.
THRESHOLD = 0.7
GEOMETRY = Geometry(True, "axial", 0.0, True, True, 2.5, 2.5, 2.5, True, True, 0.0, 300.0)
PRODUCER = worklist.Producer("m", "1", "abc", "onnxruntime", "fp32")


def _series(n: int) -> Series:
    instance = Instance(path=f"/a/{n}", sop_instance_uid=f"1.9.{n}", sop_class_uid="1.2",
                        transfer_syntax_uid="1.2.840.10008.1.2.1", modality="CT",
                        series_instance_uid=f"1.2.{n}", patient_id="P1")
    return Series(key=f"k{n}", instances=(instance,), geometry=GEOMETRY)


def test_the_rule_compares_as_the_worklist_stores_scores() -> None:
    stored = float(np.float32(THRESHOLD))  # what a score of 0.7 reads back as
    assert stored < THRESHOLD
    assert is_flagged(stored, THRESHOLD) and is_flagged(THRESHOLD, THRESHOLD)
    assert not is_flagged(float(np.nextafter(np.float32(THRESHOLD), np.float32(0))), THRESHOLD)
    assert flags([stored, 0.2, 1.0], THRESHOLD).tolist() == [True, False, True]


def test_worklist_evaluate_metrics_and_package_evaluation_agree(tmp_path: Path) -> None:
    scores = [THRESHOLD, 0.69, 0.9, 0.1]
    labels = [True, True, False, False]
    rows = [worklist.row(_series(n), PRODUCER, Detection(s, True, 50.0))
            for n, s in enumerate(scores)]
    table = worklist.finalise(rows, THRESHOLD)
    out = tmp_path / "worklist.parquet"
    worklist.write_worklist(table, out, {})
    written = {r["series_instance_uid"]: r["flagged"] for r in pq.read_table(out).to_pylist()}
    assert written == {"1.2.0": True, "1.2.1": False, "1.2.2": True, "1.2.3": False}
    assert worklist.flagged_count(rows, THRESHOLD) == 2

    truth = tmp_path / "truth.csv"
    write_truth(truth, [TruthCase(f"1.2.{n}", label, (0.0, 0.0, 0.0) if label else None,
                                  20.0 if label else None, "head" if label else None)
                        for n, label in enumerate(labels)])
    # --threshold decides from the scores read back from the file: the same flags as written.
    ev = evaluate(out, truth, threshold=THRESHOLD, replicates=20)
    assert {c.truth.series_instance_uid: c.flagged for c in ev.cases} == written
    stored = {r["series_instance_uid"]: r["score"] for r in pq.read_table(out).to_pylist()}
    by_metrics = confusion_at(labels, [stored[f"1.2.{n}"] for n in range(4)], THRESHOLD)
    assert (by_metrics.tp, by_metrics.fp) == (ev.confusion.tp, ev.confusion.fp) == (1, 1)

    results = [CaseResult(n, label, float(np.float32(s)), 20.0 if label else None,
                          "head" if label else None, label, True, None, 0.1)
               for n, (s, label) in enumerate(zip(scores, labels))]
    summary = summarise(results, THRESHOLD)
    assert summary["at_threshold"]["tp"] == 1  # type: ignore[index]
    assert summary["by_location"]["head"]["sensitivity"]["estimate"] == 0.5  # type: ignore[index]
