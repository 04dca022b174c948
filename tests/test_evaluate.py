"""`evaluate()` on worklists and truth files written here, checked against hand counts."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image
from rich.console import Console

from screen.evaluate import evaluate, plot_roc, render_table
from screen.metrics import SizeBin, wilson_interval
from screen.truth import TRUTH_COLUMNS, read_truth
from screen.worklist_row import REQUIRED_SCHEMA as WORKLIST_SCHEMA

LOCATIONS = ("head", "body", "tail")
DIAMETERS = (6.0, 15.0, 30.0)  # one per size stratum


@dataclass
class Scenario:
    """A truth set and a worklist for it, with the answers worked out case by case."""

    truth_rows: list[dict[str, object]] = field(default_factory=list)
    worklist_rows: list[dict[str, object]] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)  # per truth row
    scores: list[float] = field(default_factory=list)  # 0 for misses
    flagged: list[bool] = field(default_factory=list)  # from the worklist's flagged column
    localised: list[bool] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def _row(uid: str, **values: object) -> dict[str, object]:
    row: dict[str, object] = {name: None for name in WORKLIST_SCHEMA.names}
    row.update(series_instance_uid=uid, status="ok", model="demo")
    row.update(values)
    return row


def make_scenario(n_pos: int = 30, n_neg: int = 30, seed: int = 0) -> Scenario:
    rng = np.random.default_rng(seed)
    sc = Scenario()
    for i in range(n_pos + n_neg):
        positive = i < n_pos
        uid = f"1.2.826.0.1.{i}"
        centre = rng.uniform(-100, 100, 3)
        diameter = DIAMETERS[i % 3]
        truth = {"series_instance_uid": uid, "label": int(positive)}
        if positive:
            truth |= dict(
                zip(("lesion_x_mm", "lesion_y_mm", "lesion_z_mm"), centre.round(2).tolist())
            )
            truth |= {"lesion_diameter_mm": diameter, "lesion_location": LOCATIONS[i % 3]}
        sc.truth_rows.append(truth)
        sc.labels.append(int(positive))
        score = float(np.float32(rng.uniform(0.3, 1.0) if positive else rng.uniform(0.0, 0.7)))
        flag = score >= 0.5
        if i in (1, 2, n_pos + 1):  # two positives and a negative never reached the worklist
            sc.missing.append(uid)
            sc.scores.append(0.0)
            sc.flagged.append(False)
            sc.localised.append(False)
            continue
        if i == 3:  # a positive whose pixels could not be read
            sc.errors.append(uid)
            sc.worklist_rows.append(_row(uid, status="error", error="truncated pixel data"))
            sc.scores.append(0.0)
            sc.flagged.append(False)
            sc.localised.append(False)
            continue
        lesion: dict[str, object] = {}
        hit = False
        if positive and i % 4 != 0:  # every fourth positive: no lesion reported at all
            # Alternate a 3 mm offset (on the lesion) and a 40 mm one (elsewhere).
            offset = 3.0 if i % 2 else 40.0
            reported = np.asarray(centre.round(2), dtype=np.float32) + np.float32([0, 0, offset])
            lesion = dict(zip(("lesion_x_mm", "lesion_y_mm", "lesion_z_mm"), reported.tolist()))
            lesion |= {"lesion_diameter_mm": diameter, "lesion_location": LOCATIONS[i % 3]}
            hit = offset == 3.0
        sc.worklist_rows.append(_row(uid, score=score, flagged=flag, **lesion))
        sc.scores.append(score)
        sc.flagged.append(flag)
        sc.localised.append(bool(positive and flag and hit))
    for j in range(3):  # series the truth does not cover
        sc.worklist_rows.append(_row(f"9.9.9.{j}", score=0.9, flagged=True))
    return sc


def write_worklist(rows: list[dict[str, object]], path: Path) -> Path:
    pq.write_table(pa.Table.from_pylist(rows, schema=WORKLIST_SCHEMA), path)
    return path


def write_truth(rows: list[dict[str, object]], path: Path, columns=TRUTH_COLUMNS) -> Path:
    with path.open("w", newline="") as sink:
        writer = csv.DictWriter(sink, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture
def scenario(tmp_path: Path) -> tuple[Scenario, Path, Path]:
    sc = make_scenario()
    return (
        sc,
        write_worklist(sc.worklist_rows, tmp_path / "worklist.parquet"),
        write_truth(sc.truth_rows, tmp_path / "truth.csv"),
    )


def _pairwise_auroc(labels: list[int], scores: list[float]) -> float:
    pos = [s for s, y in zip(scores, labels) if y]
    neg = [s for s, y in zip(scores, labels) if not y]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def test_evaluate_matches_hand_counts_and_counts_misses(scenario) -> None:
    sc, worklist, truth = scenario
    ev = evaluate(worklist, truth, replicates=200, seed=3)

    assert ev.missing_uids == tuple(sc.missing)
    assert ev.error_uids == tuple(sc.errors)
    assert ev.n_unmatched_rows == 3
    assert (ev.n_positive, ev.n_negative) == (30, 30)
    assert ev.auroc.estimate == pytest.approx(_pairwise_auroc(sc.labels, sc.scores))
    assert ev.auroc.low < ev.auroc.estimate < ev.auroc.high

    pairs = list(zip(sc.labels, sc.flagged))
    tp = sum(1 for y, f in pairs if y and f)
    fn = sum(1 for y, f in pairs if y and not f)
    fp = sum(1 for y, f in pairs if not y and f)
    tn = sum(1 for y, f in pairs if not y and not f)
    c = ev.confusion
    assert (c.tp, c.fn, c.fp, c.tn) == (tp, fn, fp, tn)
    assert c.sensitivity == wilson_interval(tp, tp + fn)
    assert c.specificity.estimate == tn / (tn + fp)
    assert c.ppv.estimate == tp / (tp + fp)
    assert c.npv.estimate == tn / (tn + fn)

    hits = sum(sc.localised)
    assert 0 < hits < tp
    assert ev.localisation_flagged == wilson_interval(hits, tp)
    assert ev.localisation_all == wilson_interval(hits, 30)


def test_evaluate_is_reproducible_for_a_seed(scenario) -> None:
    _, worklist, truth = scenario
    first = evaluate(worklist, truth, replicates=100, seed=5)
    again = evaluate(worklist, truth, replicates=100, seed=5)
    assert first.auroc == again.auroc
    assert first.strata == again.strata


def test_threshold_overrides_the_flagged_column(scenario) -> None:
    sc, worklist, truth = scenario
    ev = evaluate(worklist, truth, threshold=0.8, replicates=50)
    reached = [
        s
        for s, uid in zip(sc.scores, (r["series_instance_uid"] for r in sc.truth_rows))
        if uid not in sc.missing + sc.errors
    ]
    expected_flags = sum(s >= 0.8 for s in reached)
    assert ev.confusion.tp + ev.confusion.fp == expected_flags
    assert ev.operating_point == "score >= 0.8"
    # The ranking does not depend on the operating point.
    assert ev.auroc.estimate == evaluate(worklist, truth, replicates=50).auroc.estimate


def test_strata_count_their_cases_and_say_when_too_few(scenario, tmp_path: Path) -> None:
    sc, worklist, truth = scenario
    ev = evaluate(worklist, truth, replicates=50)
    by_key = {(s.kind, s.value): s for s in ev.strata}
    assert set(by_key) == {("size", b.value) for b in SizeBin} | {
        ("location", loc) for loc in LOCATIONS
    }
    # Diameter and location both cycle with the case index, so each stratum holds 10.
    for s in ev.strata:
        assert s.n_positive == 10
        assert s.auroc is not None and s.sensitivity is not None
    small = by_key[("size", "<10")]
    members = [i for i in range(30) if DIAMETERS[i % 3] == 6.0]
    assert small.n_flagged == sum(sc.flagged[i] for i in members)
    assert small.n_localised == sum(sc.localised[i] for i in members)

    # With only four positives, every stratum is too small for a rate.
    few = make_scenario(n_pos=4, n_neg=10)
    ev = evaluate(
        write_worklist(few.worklist_rows, tmp_path / "few.parquet"),
        write_truth(few.truth_rows, tmp_path / "few.csv"),
        replicates=50,
    )
    for s in ev.strata:
        assert s.sensitivity is None and s.auroc is None
        assert s.note in (
            "no positive cases",
            f"too few positive cases ({s.n_positive} < 5) for a meaningful rate",
        )


def test_duplicate_worklist_rows_of_one_series_are_merged(tmp_path: Path) -> None:
    truth = write_truth(
        [
            {"series_instance_uid": "1.1", "label": 0},
            {
                "series_instance_uid": "1.2",
                "label": 1,
                "lesion_x_mm": 0,
                "lesion_y_mm": 0,
                "lesion_z_mm": 0,
                "lesion_diameter_mm": 12,
                "lesion_location": "tail",
            },
        ],
        tmp_path / "truth.csv",
    )
    worklist = write_worklist(
        [
            _row("1.1", score=0.2, flagged=False),
            _row("1.2", score=0.3, flagged=False),
            _row("1.2", score=0.9, flagged=True, lesion_x_mm=1.0, lesion_y_mm=0.0, lesion_z_mm=0.0),
        ],
        tmp_path / "worklist.parquet",
    )
    ev = evaluate(worklist, truth, replicates=20)
    assert ev.n_merged_rows == 1
    assert [c.score for c in ev.cases] == [pytest.approx(0.2), pytest.approx(0.9)]
    assert ev.cases[1].flagged and ev.cases[1].localised


@pytest.mark.parametrize(
    ("rows", "columns", "message"),
    [
        (
            [{"series_instance_uid": "1", "label": 0}],
            TRUTH_COLUMNS[:-1],
            r"truth file .*truth\.csv lacks column\(s\) lesion_location",
        ),
        (
            [{"series_instance_uid": "1", "label": 2}],
            TRUTH_COLUMNS,
            r"truth\.csv line 2: label must be 1 or 0, got '2'",
        ),
        (
            [
                {
                    "series_instance_uid": "1",
                    "label": 1,
                    "lesion_x_mm": 1,
                    "lesion_y_mm": 2,
                    "lesion_z_mm": 3,
                    "lesion_diameter_mm": 8,
                }
            ],
            TRUTH_COLUMNS,
            r"line 2: positive series 1 lacks \['lesion_location'\]",
        ),
        (
            [{"series_instance_uid": "1", "label": 0, "lesion_diameter_mm": 8}],
            TRUTH_COLUMNS,
            r"line 2: negative series 1 has lesion values in \['lesion_diameter_mm'\]",
        ),
        (
            [
                {
                    "series_instance_uid": "1",
                    "label": 1,
                    "lesion_x_mm": 1,
                    "lesion_y_mm": 2,
                    "lesion_z_mm": 3,
                    "lesion_diameter_mm": 8,
                    "lesion_location": "neck",
                }
            ],
            TRUTH_COLUMNS,
            r"line 2: lesion location must be one of head, body, tail; got 'neck'",
        ),
        (
            [
                {
                    "series_instance_uid": "1",
                    "label": 1,
                    "lesion_x_mm": "left",
                    "lesion_y_mm": 2,
                    "lesion_z_mm": 3,
                    "lesion_diameter_mm": 8,
                    "lesion_location": "head",
                }
            ],
            TRUTH_COLUMNS,
            r"line 2: lesion_x_mm must be a number, got 'left'",
        ),
        (
            [{"series_instance_uid": "1", "label": 0}, {"series_instance_uid": "1", "label": 0}],
            TRUTH_COLUMNS,
            r"line 3: series 1 is already on line 2",
        ),
        ([], TRUTH_COLUMNS, r"truth file .*truth\.csv holds no series"),
    ],
)
def test_bad_truth_files_are_rejected(tmp_path: Path, rows, columns, message) -> None:
    truth = write_truth(rows, tmp_path / "truth.csv", columns)
    with pytest.raises(ValueError, match=message):
        read_truth(truth)


def test_bad_worklists_are_rejected(tmp_path: Path) -> None:
    truth = write_truth([{"series_instance_uid": "1", "label": 0}], tmp_path / "truth.csv")
    no_flags = pa.table({"series_instance_uid": ["1"], "score": [0.1], "status": ["ok"]})
    pq.write_table(no_flags, tmp_path / "short.parquet")
    with pytest.raises(ValueError, match=r"short\.parquet lacks column\(s\) flagged, lesion_x_mm"):
        evaluate(tmp_path / "short.parquet", truth)

    null_score = write_worklist([_row("1", flagged=False)], tmp_path / "null.parquet")
    with pytest.raises(ValueError, match=r"null\.parquet row 0: series 1 has status ok but score"):
        evaluate(null_score, truth)

    (tmp_path / "text.parquet").write_text("not parquet")
    with pytest.raises(ValueError, match=r"text\.parquet is not a readable Parquet file"):
        evaluate(tmp_path / "text.parquet", truth)

    with pytest.raises(ValueError, match=r"threshold must lie in \[0, 1\], got 1.5"):
        evaluate(null_score, truth, threshold=1.5)


def test_to_dict_is_json_ready(scenario) -> None:
    sc, worklist, truth = scenario
    ev = evaluate(worklist, truth, replicates=50)
    data = json.loads(json.dumps(ev.to_dict(include_cases=True)))
    assert data["missing_uids"] == sc.missing
    assert data["operating"]["tp"] == ev.confusion.tp
    assert data["auroc"]["method"] == "bootstrap"
    assert len(data["strata"]) == 6 and len(data["cases"]) == 60
    assert "cases" not in ev.to_dict()


def test_render_table_shows_results_and_missing_series(scenario) -> None:
    sc, worklist, truth = scenario
    ev = evaluate(worklist, truth, replicates=50)
    console = Console(record=True, width=160)
    console.print(render_table(ev))
    text = console.export_text()
    assert f"{ev.auroc.estimate:.3f}" in text
    assert "Sensitivity" in text and "10-20 mm" in text and "tail" in text
    assert f"3 truth series missing from the worklist (counted as misses): {sc.missing[0]}" in text
    assert "3 worklist series not in the truth (not used)" in text


def _count_curve_pixels(path: Path) -> int:
    pixels = np.asarray(Image.open(path).convert("RGB")).astype(int)
    # The curve's blue, with some slack for antialiasing.
    return int((np.abs(pixels - [31, 92, 180]).sum(axis=2) < 60).sum())


def test_plot_roc_writes_a_png_with_the_curve(scenario, tmp_path: Path) -> None:
    _, worklist, truth = scenario
    ev = evaluate(worklist, truth, replicates=50)
    out = plot_roc(ev, tmp_path / "plots" / "roc.png")
    with Image.open(out) as image:
        image.verify()
    with Image.open(out) as image:
        assert image.format == "PNG" and image.size == (640, 640)
        pixels = np.asarray(image.convert("L"))
    assert (pixels < 250).mean() > 0.01  # axes, text and curve, not a blank page
    assert _count_curve_pixels(out) > 500

    # Plain arrays work too; a perfect ranker's curve hugs the top-left corner.
    perfect = plot_roc(([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]), tmp_path / "perfect.png", size=400)
    rgb = np.asarray(Image.open(perfect).convert("RGB")).astype(int)
    blue = np.abs(rgb - [31, 92, 180]).sum(axis=2) < 60
    rows, cols = np.nonzero(blue)
    assert rows.min() < 400 * 0.15 and cols.min() < 400 * 0.16


def test_a_worklist_that_matches_no_truth_series_is_refused(tmp_path: Path) -> None:
    # Issue reproduction: with no series in common, every truth negative was "not flagged" and
    # specificity read 100 %.
    truth = write_truth([{"series_instance_uid": "9.1", "label": 0},
                         {"series_instance_uid": "9.2", "label": 0}], tmp_path / "truth.csv")
    worklist = write_worklist([_row("1.1", score=0.2, flagged=False)],
                              tmp_path / "worklist.parquet")
    with pytest.raises(ValueError, match=r"^0 matched: none of the 2 series in .*truth\.csv is "
                                         r"in the worklist .*worklist\.parquet \(1 series\)"):
        evaluate(worklist, truth, replicates=20)
    from typer.testing import CliRunner

    from screen.cli import app

    result = CliRunner().invoke(app, ["evaluate", str(worklist), "--truth", str(truth)])
    assert result.exit_code == 2 and "0 matched" in result.output
