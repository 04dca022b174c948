"""The sweep end to end on real Dask clusters, real processes and real Parquet."""

from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import psutil
import pyarrow.parquet as pq
import pydicom
import pytest

from screen.scan import ScanOptions, ScanProgress, scan
from screen.tables import read_provenance

pytest.importorskip("screen.volume", reason="the volume loader is absent")
pytest.importorskip("screen.detect.detector", reason="the detector is absent")


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {os.path.join(d, f): (os.stat(os.path.join(d, f)).st_size,
                                 os.stat(os.path.join(d, f)).st_mtime_ns)
            for d, _, files in os.walk(root) for f in files}


def _rows(path: Path) -> list[dict]:
    return pq.read_table(path).to_pylist()


def _scores(path: Path) -> dict[str, float]:
    return {r["series_key"]: r["score"] for r in _rows(path)}


def _screen(args: list[str], **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "screen", "scan", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


@pytest.fixture(scope="module")
def swept(small_archive: Path, tmp_path_factory: pytest.TempPathFactory):
    archive = small_archive / "archive"
    before = _snapshot(archive)
    out = tmp_path_factory.mktemp("sweep") / "worklist.parquet"
    summary = scan([archive], out, options=ScanOptions(workers=2, gpus=0))
    return archive, before, out, summary


def test_every_eligible_series_has_a_row_and_nothing_else(small_archive: Path, swept) -> None:
    _, _, out, summary = swept
    inventory = _rows(out.with_name("inventory.parquet"))
    eligible = {r["series_key"] for r in inventory if r["eligible"]}
    rows = _rows(out)
    assert {r["series_key"] for r in rows} == eligible
    assert len(rows) == len(eligible) == summary.eligible
    with open(small_archive / "manifest.csv", newline="") as f:
        manifest = list(csv.DictReader(f))
    expected = {m["series_instance_uid"] for m in manifest if m["should_be_eligible"] == "1"}
    assert {r["series_instance_uid"] for r in rows} == expected
    # Series kept only for a content check and ruled out by their pixels say so.
    for r in inventory:
        if r["rule"] == "content":
            assert r["reason"].startswith("no tag names the abdomen")


def test_the_summary_accounts_for_every_series_and_unread_file(swept) -> None:
    # The numbers a user reads at the end add up to what the tables hold, series ruled out
    # by their pixels included: nothing found goes uncounted.
    _, _, out, summary = swept
    inventory = _rows(out.with_name("inventory.parquet"))
    errors = _rows(out.with_name("errors.parquet"))
    assert summary.series == len(inventory) == summary.eligible + sum(summary.rejected_by_rule.values())
    assert summary.rejected_by_rule == dict(Counter(r["rule"] for r in inventory if not r["eligible"]))
    assert summary.rejected_by_rule.get("content", 0) >= 1  # the archive has chest series
    assert summary.errors_by_stage == dict(Counter(r["stage"] for r in errors))


def test_a_finished_sweep_run_again_resumes_every_eligible_series_and_no_other(
        small_archive: Path, swept, tmp_path: Path) -> None:
    # Series the pixels ruled out were screened too, and their rows kept; resuming must not
    # count them as eligible series already scored.
    _, _, first, summary = swept
    out = tmp_path / first.name
    shutil.copytree(first.with_name(first.name + ".parts"), out.with_name(out.name + ".parts"))
    again = scan([small_archive / "archive"], out, options=ScanOptions(workers=1, gpus=0))
    assert summary.rejected_by_rule.get("content", 0) >= 1
    assert again.resumed == again.eligible == summary.eligible
    assert (again.scored, again.failed) == (summary.scored, summary.failed)
    assert _scores(out) == _scores(first)


def test_a_series_whose_pixels_cannot_be_read_is_an_error_row(small_archive: Path,
                                                              tmp_path: Path) -> None:
    with open(small_archive / "manifest.csv", newline="") as f:
        chosen = next(m for m in csv.DictReader(f)
                      if m["should_be_eligible"] == "1" and m["transfer_syntax"] == "1.2.840.10008.1.2.1")
    archive = tmp_path / "archive"
    archive.mkdir()
    slices = []
    for folder in chosen["folders"].split(";"):
        for path in sorted((small_archive / "archive" / folder).iterdir()):
            try:
                header = pydicom.dcmread(path, stop_before_pixels=True)
            except Exception:  # the archive's junk files
                continue
            if header.get("SeriesInstanceUID") == chosen["series_instance_uid"]:
                slices.append((float(header.ImagePositionPatient[2]), path))
    files = [shutil.copy(path, archive / f"slice{n:04d}") for n, (_, path) in enumerate(sorted(slices))]
    # Three neighbouring slices cut short inside their pixels: headers index, the volume cannot.
    for path in map(Path, files[len(files) // 2:len(files) // 2 + 3]):
        data = path.read_bytes()
        path.write_bytes(data[: len(data) - 2000])
    seen: list[tuple[int, int, int, int]] = []
    out = tmp_path / "worklist.parquet"
    summary = scan([archive], out, options=ScanOptions(workers=1, gpus=0),
                   progress=ScanProgress(on_series=lambda *counts: seen.append(counts)))
    rows = _rows(out)
    assert summary.eligible == 1 and len(rows) == 1
    assert rows[0]["status"] == "error" and rows[0]["score"] is None
    assert rows[0]["series_instance_uid"] == chosen["series_instance_uid"]
    assert "slice" in rows[0]["error"].lower(), rows[0]["error"]
    assert seen[-1] == (1, 1, 0, 1)  # done, total, flagged, errors


def test_ranks_follow_scores(swept) -> None:
    rows = [r for r in _rows(swept[2]) if r["status"] == "ok"]
    assert rows, "no series was scored"
    assert [r["rank"] for r in rows] == list(range(1, len(rows) + 1))
    scores = [r["score"] for r in rows]
    assert scores == sorted(scores, reverse=True)
    threshold = np.float32(read_provenance(swept[2])["threshold"])
    assert all(r["flagged"] == (np.float32(r["score"]) >= threshold) for r in rows)


def test_the_archive_is_never_written(swept) -> None:
    archive, before, _, _ = swept
    assert _snapshot(archive) == before


def test_provenance_names_the_model_package(swept) -> None:
    meta = read_provenance(swept[2])
    rows = _rows(swept[2])
    assert meta["model_sha256"] and all(r["model_sha256"] == meta["model_sha256"] for r in rows)
    assert all(r["backend"] and r["precision"] == "fp32" for r in rows if r["status"] == "ok")


def test_external_cluster(small_archive: Path, swept, external_cluster, tmp_path: Path) -> None:
    out = tmp_path / "worklist.parquet"
    run = _screen([str(small_archive / "archive"), "--out", str(out), "--scheduler",
                   external_cluster.address])
    stdout, stderr = run.communicate(timeout=600)
    assert run.returncode == 0, stderr[-3000:]
    assert _scores(out) == pytest.approx(_scores(swept[2]), abs=1e-5)


def _wait_for_parts(out: Path, proc: subprocess.Popen, timeout: float = 300) -> None:
    parts = out.with_name(out.name + ".parts")
    deadline = time.monotonic() + timeout
    while not list(parts.glob("part-*.parquet")):
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        assert time.monotonic() < deadline, "no part file appeared"
        time.sleep(0.1)


def test_a_killed_worker_loses_nothing(small_archive: Path, swept, external_cluster,
                                       tmp_path: Path) -> None:
    out = tmp_path / "worklist.parquet"
    run = _screen([str(small_archive / "archive"), "--out", str(out), "--scheduler",
                   external_cluster.address])
    _wait_for_parts(out, run)
    # Killed while the sweep is still going, or the test would prove nothing.
    assert run.poll() is None and not out.exists()
    external_cluster.workers[0].send_signal(signal.SIGKILL)
    stdout, stderr = run.communicate(timeout=600)
    assert run.returncode == 0, stderr[-3000:]
    assert _scores(out) == pytest.approx(_scores(swept[2]), abs=1e-5)


def test_killed_run_resumes_to_the_same_worklist(small_archive: Path, swept,
                                                 tmp_path: Path) -> None:
    out = tmp_path / "worklist.parquet"
    args = [str(small_archive / "archive"), "--out", str(out), "--workers", "2", "--gpus", "0"]
    run = _screen(args, start_new_session=True)
    _wait_for_parts(out, run)
    os.killpg(run.pid, signal.SIGKILL)
    run.wait(timeout=30)
    time.sleep(1.0)
    orphans = [p for p in psutil.process_iter(["pid"]) if _in_session(p, run.pid)]
    assert not orphans, f"processes left behind: {orphans}"
    assert not out.exists()

    resumed = _screen(args)
    stdout, stderr = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, stderr[-3000:]
    assert "already scored (resumed)" in stderr
    rows = _rows(out)
    assert len({r["series_key"] for r in rows}) == len(rows)
    assert _scores(out) == pytest.approx(_scores(swept[2]), abs=1e-5)


def _in_session(process: psutil.Process, sid: int) -> bool:
    """A live process of the killed run's session (zombies are dead, only not yet reaped by
    whatever adopted them)."""
    try:
        return os.getsid(process.pid) == sid and process.status() != psutil.STATUS_ZOMBIE
    except (ProcessLookupError, PermissionError, psutil.NoSuchProcess):
        return False


def test_evaluate_reads_the_sweep_against_its_truth(small_archive: Path, swept,
                                                    tmp_path: Path) -> None:
    plot = tmp_path / "roc.png"
    run = subprocess.run([sys.executable, "-m", "screen", "evaluate", str(swept[2]), "--truth",
                          str(small_archive / "truth.csv"), "--json", "--plot", str(plot),
                          "--replicates", "200"], capture_output=True, text=True, timeout=300,
                         check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    import json

    report = json.loads(run.stdout)
    with open(small_archive / "truth.csv", newline="") as f:
        truth = list(csv.DictReader(f))
    assert report["n_positive"] + report["n_negative"] == len(truth)
    assert plot.stat().st_size > 0
