"""screen scan --model with an imported nnU-Net detector: a generated archive swept end to
end, one worklist row per eligible series, and the uncalibrated score said at the scan."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from screen.nnunet.importer import ImportOptions, import_nnunet
from screen.scan import ScanOptions, ScanProgress, scan
from tests.nnunet.folders import DETECTOR_MODEL, write_folder


@pytest.fixture(scope="module")
def detector_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The PANORAMA detector's plans (7 labels, tumour 1, pancreas 4) with tiny seeded weights,
    on a coarse grid so that whole generated series sweep in seconds."""
    root = tmp_path_factory.mktemp("detector")
    folder = write_folder(root, DETECTOR_MODEL, features=(4, 8, 8), patch=(16, 32, 32),
                          spacing=(6.0, 6.0, 6.0))
    import_nnunet(folder, root / "pdac", ImportOptions(mirroring=False, name="pdac-test"))
    return root / "pdac"


@pytest.mark.slow
def test_an_imported_detector_sweeps_an_archive(small_archive: Path, detector_package: Path,
                                                tmp_path: Path) -> None:
    notices: list[str] = []
    out = tmp_path / "worklist.parquet"
    summary = scan([small_archive / "archive"], out,
                   options=ScanOptions(model=str(detector_package), workers=1, gpus=0),
                   progress=ScanProgress(on_notice=notices.append))
    rows = pq.read_table(out).to_pylist()
    assert rows and summary is not None
    assert {r["status"] for r in rows} == {"ok"}
    assert {r["model"] for r in rows} == {"pdac-test"}
    for row in rows:
        assert 0.0 <= row["score"] <= 1.0
        assert isinstance(row["pancreas_found"], bool)
        if row["lesion_x_mm"] is not None:
            assert row["lesion_diameter_mm"] > 0
    ranked = sorted(rows, key=lambda r: r["rank"])
    assert [r["score"] for r in ranked] == sorted((r["score"] for r in rows), reverse=True)
    assert any("uncalibrated" in n for n in notices)


@pytest.mark.slow
def test_calibrate_writes_a_calibrated_copy(small_archive: Path, detector_package: Path,
                                            tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from screen.cli import app
    from screen.model.package import ModelPackage

    out = tmp_path / "pdac-site"
    result = CliRunner().invoke(app, ["calibrate", str(small_archive / "archive"), "--model",
                                      str(detector_package), "--truth", str(small_archive / "truth.csv"),
                                      "--out", str(out), "--workers", "1"])
    assert result.exit_code == 0, result.output
    card = ModelPackage.load(out).card
    assert card.calibrated
    measured = card.accuracy["site_calibration"]
    assert measured["series"] >= 4 and 0.0 <= measured["auroc"] <= 1.0
    assert measured["auroc_95ci"][0] <= measured["auroc"] <= measured["auroc_95ci"][1]
    assert card.threshold == measured["threshold"]
    assert card.limitations[0].startswith("Calibrated on")
    assert not ModelPackage.load(detector_package).card.calibrated  # the original is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pdac-site"]
