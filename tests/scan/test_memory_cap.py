"""A series too big for the workers' memory cap costs its own row, and nothing else.

Real processes throughout: a local cluster whose nanny restarts any worker that passes 95% of
its cap, a generated archive, and one series whose voxels alone are bigger than the cap.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from screen.scan import ScanOptions, ScanProgress, scan
from screen.synth.archive import write_archive
from screen.synth.dicom_writer import (
    AXIAL,
    CT_IMAGE_STORAGE,
    PixelEncoding,
    SeriesPlan,
    Study,
    uid,
    write_series,
)

# A worker with the detector loaded peaks near 0.5 GiB on the small series here; the big
# series' voxels alone (1024 x 1024 x 300 float32) are 1.2 GiB, so its worker passes the 95%
# at which the nanny kills it however much the rest of the process takes.
CAP = 2**30
BIG_MATRIX, BIG_SLICES = 1024, 300
# Sorts before the generated archive's UIDs (1.2.826...), so it is screened first, and the
# next series waits behind it on the only worker.
BIG_UID = "1.2.3.1024.300"


def _write_big_series(root: Path) -> None:
    """An eligible abdominal CT, small on disk (RLE of a plain ellipse), huge once loaded."""
    study = Study(patient_id="90000001", patient_name="BIG^SERIES", patient_birth_date="19600101",
                  patient_sex="F", accession_number="900000001",
                  study_instance_uid=uid(0, "big-study"), study_date="20240101",
                  study_time="120000", study_description="CT ABDOMEN", institution="")
    plan = SeriesPlan(kind="abdominal_ct", series_instance_uid=BIG_UID, series_number=2,
                      series_description="ABDOMEN 1.0 B30f", modality="CT",
                      sop_class_uid=CT_IMAGE_STORAGE,
                      image_type=("ORIGINAL", "PRIMARY", "AXIAL"), manufacturer="SIEMENS",
                      model="SOMATOM Force", frame_of_reference_uid=uid(0, "big-frame"),
                      syntax="rle", encoding=PixelEncoding(signed=False), folders=("big",),
                      naming="im", kernel="B30f", body_part="ABDOMEN", slice_thickness=1.0)
    y, x = np.ogrid[:BIG_MATRIX, :BIG_MATRIX]
    inside = ((x / BIG_MATRIX - 0.5) / 0.4) ** 2 + ((y / BIG_MATRIX - 0.5) / 0.3) ** 2 < 1
    body = np.where(inside, 40.0, -1000.0)
    positions = [(-200.0, -200.0, float(k)) for k in range(BIG_SLICES)]
    spacing = 400.0 / BIG_MATRIX
    write_series(root, study, plan, [body] * BIG_SLICES, positions, AXIAL, (spacing, spacing),
                 seed=0, rng=np.random.default_rng(0))


@pytest.mark.slow
def test_a_series_over_the_memory_cap_costs_only_its_own_row(tmp_path: Path) -> None:
    small = write_archive(tmp_path / "small", 2, seed=5, matrix=64, distractors=False)
    _write_big_series(tmp_path / "big")
    notices: list[str] = []
    out = tmp_path / "worklist.parquet"
    summary = scan([small.archive, tmp_path / "big"], out,
                   options=ScanOptions(workers=1, gpus=0, worker_memory=CAP),
                   progress=ScanProgress(on_notice=notices.append))

    rows = {r["series_instance_uid"]: r for r in pq.read_table(out).to_pylist()}
    big = rows.pop(BIG_UID)
    assert big["status"] == "error" and big["score"] is None
    assert "worker" in big["error"] and "died" in big["error"], big["error"]
    assert "memory" in big["error"] and "KilledWorker" in big["error"], big["error"]
    with open(small.manifest_csv, newline="") as f:
        assert set(rows) == {m["series_instance_uid"] for m in csv.DictReader(f)
                             if m["should_be_eligible"] == "1"}
    assert all(r["status"] == "ok" and r["score"] is not None for r in rows.values()), rows
    assert (summary.eligible, summary.scored, summary.failed) == (3, 2, 1)
    # The big one was lost with its worker, and so, depending on Dask's retries, may have been
    # the series queued behind it; each was then screened alone, and only the big one failed.
    lost = [n for n in notices if "series were lost with a worker" in n]
    assert len(lost) == 1 and lost[0].split()[0] in ("1", "2"), notices

    inventory = {r["series_instance_uid"]: r
                 for r in pq.read_table(out.with_name("inventory.parquet")).to_pylist()}
    assert inventory[BIG_UID]["eligible"]
