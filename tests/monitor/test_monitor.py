"""`screen monitor` over sweeps built as the worker writes their rows: a change of protocol
(thinner slices, arterial instead of portal venous phase) shows as a shift, a sweep of the
same kind of archive does not."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from typer.testing import CliRunner

from screen.cli import app
from screen.monitor.drift import monitor, psi
from screen.monitor.intake import contrast_phase
from screen.review import decisions
from screen.review.decisions import ReviewDecision
from screen.tables import write_atomic
from screen.worklist_row import SCHEMA

# Aortic HU by phase, as the phantoms measure them (tests/monitor/test_intake.py).
AORTA_HU = {"portal_venous": (170.0, 15.0), "arterial": (320.0, 25.0), "non_contrast": (45.0, 8.0)}


def _sweep(path: Path, seed: int, *, n: int = 400, thickness=(2.5, 3.0, 5.0), thickness_p=(0.6, 0.3, 0.1),
           phases=("portal_venous", "non_contrast"), phases_p=(0.85, 0.15)) -> Path:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        phase = str(rng.choice(phases, p=phases_p))
        mean, sd = AORTA_HU[phase]
        aorta = float(rng.normal(mean, sd))
        score = float(rng.beta(1.2, 8.0))
        rows.append({name: None for name in SCHEMA.names} | {
            "series_key": f"{seed}-{i}", "series_instance_uid": f"1.2.{seed}.{i}", "status": "ok",
            "score": score, "flagged": score >= 0.5, "pancreas_found": bool(rng.random() < 0.97),
            "slice_thickness_mm": float(rng.choice(thickness, p=thickness_p)),
            "convolution_kernel": str(rng.choice(["B30f", "STANDARD"])),
            "scanner": str(rng.choice(["SIEMENS SOMATOM Force", "GE Revolution"])),
            "aorta_hu": aorta, "contrast_phase": contrast_phase(aorta)})
    write_atomic(pa.Table.from_pylist(rows, schema=SCHEMA), path,
                 {"eligible_by_tags": n + 8, "rejected_by_content": 8})
    return path


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("sweeps")
    return {
        "january": _sweep(folder / "2025-01.parquet", 1),
        "february": _sweep(folder / "2025-02.parquet", 2),
        # A new protocol: thin slices, pancreatic (arterial) phase.
        "march": _sweep(folder / "2025-03.parquet", 3, thickness=(0.75, 1.0, 1.5),
                        phases=("arterial", "portal_venous"), phases_p=(0.8, 0.2)),
    }


def test_a_sweep_of_the_same_kind_does_not_shift(sweeps) -> None:
    report = monitor([sweeps["february"]], sweeps["january"])
    (february,) = report.sweeps
    assert february.shifts == [] and report.shifted == []
    assert february.score_psi < 0.1 and february.score_ks_p > 0.01
    assert february.content_rejection_rate == pytest.approx(8 / 408)
    assert 0.9 < february.pancreas_found_rate <= 1.0


def test_a_new_protocol_shows_as_a_shift_in_thickness_and_phase(sweeps) -> None:
    report = monitor([sweeps["january"], sweeps["february"], sweeps["march"]])
    assert report.reference == "2025-01.parquet"
    shifted = {(name, shift.what) for name, shift in report.shifted}
    assert shifted == {("2025-03.parquet", "slice_thickness_mm"), ("2025-03.parquet", "contrast_phase")}
    march = report.sweeps[2]
    assert march.inputs["contrast_phase"]["arterial"] > 0.7
    assert march.median_aorta_hu > 230


def test_psi_is_zero_for_equal_shares_and_grows_with_the_difference() -> None:
    assert psi(np.array([0.5, 0.5]), np.array([0.5, 0.5])) == 0.0
    assert 0 < psi(np.array([0.6, 0.4]), np.array([0.5, 0.5])) < psi(np.array([0.9, 0.1]), np.array([0.5, 0.5]))


def test_the_command_warns_writes_a_page_and_fails_on_shift(sweeps, tmp_path: Path) -> None:
    folder = tmp_path / "review"
    decisions.record(folder, ReviewDecision.now("dr-a", "3-1", "agree"))
    decisions.record(folder, ReviewDecision.now("dr-a", "3-2", "disagree"))
    html, summary = tmp_path / "monitor.html", tmp_path / "monitor.json"
    args = ["monitor", str(sweeps["february"]), str(sweeps["march"]), "--reference",
            str(sweeps["january"]), "--html", str(html), "--json", str(summary),
            "--decisions", str(folder / decisions.DECISIONS)]
    done = CliRunner().invoke(app, [*args, "--fail-on-shift"])
    assert done.exit_code == 1, done.output
    said = " ".join(done.output.split())  # the console wraps long lines
    assert re.search(r"warning: 2025-03.parquet: contrast_phase shifted from 2025-01.parquet "
                     r"\(PSI \d+\.\d\d > 0.25\)", said), said
    page = html.read_text()
    assert page.count("<svg") == 3 and not re.search(r"(src|href)=|https?:", page)
    data = json.loads(summary.read_text())
    assert [s["name"] for s in data["sweeps"]] == ["2025-02.parquet", "2025-03.parquet"]
    assert data["calibration"]["reviewed"] == 2
    done = CliRunner().invoke(app, args)  # without --fail-on-shift: warns, exits 0
    assert done.exit_code == 0 and "warning" in done.output
    done = CliRunner().invoke(app, ["monitor", str(folder / decisions.DECISIONS), "--html",
                                    str(html), "--json", str(summary)])
    assert done.exit_code == 2 and "is not a worklist" in done.output
