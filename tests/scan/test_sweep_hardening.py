"""The sweep against what a hospital archive and its users do to it: two sweeps on one --out,
a broken model, a damaged slice, a rerun asked for review pages and DICOM it never wrote,
and a sweep in which nothing could be scored. Real processes, real clusters, real Parquet."""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pydicom
import pytest

from screen.scan import ScanOptions, scan

pytest.importorskip("screen.review", reason="the review report writer is absent")


def _screen(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "screen", "scan", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _words(text: str) -> str:
    return "".join(text.replace("│", " ").split())


def _slices(archive: Path, folders: str, uid: str) -> list[Path]:
    found = []
    for folder in folders.split(";"):
        for path in (archive / folder).iterdir():
            try:
                header = pydicom.dcmread(path, stop_before_pixels=True)
            except Exception:  # the archive's junk files
                continue
            if header.get("SeriesInstanceUID") == uid:
                found.append((float(header.ImagePositionPatient[2]), path))
    return [path for _, path in sorted(found)]


def _cut_short(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 2000])


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory):
    """Two cases; one slice in the middle of an uncompressed eligible series cut short."""
    from screen.synth.archive import write_archive

    root = tmp_path_factory.mktemp("hardening")
    write_archive(root / "synth", 2, seed=5, matrix=64)
    with open(root / "synth" / "manifest.csv", newline="") as f:
        manifest = list(csv.DictReader(f))
    eligible = [m for m in manifest if m["should_be_eligible"] == "1"]
    chosen = next(m for m in eligible if m["transfer_syntax"] == "1.2.840.10008.1.2.1")
    archive = root / "synth" / "archive"
    slices = _slices(archive, chosen["folders"], chosen["series_instance_uid"])
    damaged = slices[len(slices) // 2]
    _cut_short(damaged)
    return archive, {m["series_instance_uid"] for m in eligible}, chosen, damaged


@pytest.fixture(scope="module")
def contested(archive, tmp_path_factory: pytest.TempPathFactory):
    """A sweep, and a second one on the same --out (with --no-resume) while the first runs."""
    folder, eligible, _, _ = archive
    out = tmp_path_factory.mktemp("contested") / "worklist.parquet"
    first = _screen([str(folder), "--out", str(out), "--workers", "2", "--gpus", "0"])
    lock = out.with_name(out.name + ".lock")
    deadline = time.monotonic() + 300
    while not lock.exists():
        assert first.poll() is None, first.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "the first sweep never took its lock"
        time.sleep(0.1)
    second = _screen([str(folder), "--out", str(out), "--no-resume", "--workers", "1",
                      "--gpus", "0"])
    second_err = second.communicate(timeout=300)[1]
    first_running = first.poll() is None
    first_err = first.communicate(timeout=600)[1]
    return out, first, first_err, first_running, second, second_err


def test_a_second_sweep_on_the_same_out_is_refused_while_the_first_runs(archive,
                                                                        contested) -> None:
    # Issue reproduction: the second (--no-resume) cleared the first's part files, and the
    # first finished with 1 of 6 eligible series in its worklist.
    _, eligible, _, _ = archive
    out, first, first_err, first_running, second, second_err = contested
    assert first_running, "the second sweep must have met the first still running"
    assert second.returncode == 2
    assert _words(f"error: {out} is in use by another sweep (pid {first.pid} on") in \
        _words(second_err)
    assert second_err.count("error:") == 1
    assert first.returncode == 0, first_err[-3000:]
    rows = pq.read_table(out).to_pylist()
    assert {r["series_instance_uid"] for r in rows} == eligible
    assert not out.with_name(out.name + ".lock").exists()  # released on exit


def test_a_slice_left_out_is_recorded_in_the_worklist_and_the_inventory(archive,
                                                                        contested) -> None:
    # Issue reproduction: slices left out of a scored series appeared only on stderr.
    _, _, chosen, damaged = archive
    out = contested[0]
    row = next(r for r in pq.read_table(out).to_pylist()
               if r["series_instance_uid"] == chosen["series_instance_uid"])
    assert row["status"] == "ok"
    assert any(str(damaged) in w and "left out" in w for w in row["warnings"]), row["warnings"]
    inventory = next(r for r in pq.read_table(out.with_name("inventory.parquet")).to_pylist()
                     if r["series_instance_uid"] == chosen["series_instance_uid"])
    assert str(damaged) not in inventory["files"]  # the files actually used
    assert inventory["n_instances"] == int(chosen["n_files"]) - 1
    assert any(str(damaged) in w for w in inventory["warnings"])
    assert str(damaged) not in contested[2]  # and no path on stderr


def test_a_rerun_writes_the_review_pages_and_dicom_it_never_wrote(archive, contested,
                                                                  tmp_path: Path) -> None:
    # Issue reproduction: adding --review-dir and --dicom-out on a later run resumed every
    # series and wrote nothing.
    folder, eligible, _, _ = archive
    first = contested[0]
    out = tmp_path / "worklist.parquet"
    shutil.copytree(first.with_name(first.name + ".parts"), out.with_name(out.name + ".parts"))
    options = ScanOptions(workers=1, gpus=0, threshold=0.0, review_dir=tmp_path / "review",
                          dicom_out=tmp_path / "pacs")  # threshold 0: every series flagged
    summary = scan([folder], out, options=options)
    assert summary.resumed == summary.eligible == len(eligible) == summary.flagged
    assert summary.missing_extras == ()
    assert len(list((tmp_path / "review" / "series").glob("*.html"))) == len(eligible)
    assert len(list((tmp_path / "pacs").glob("*.sr.dcm"))) == len(eligible)
    assert len(list((tmp_path / "pacs").glob("*.seg.dcm"))) == len(eligible)


def test_a_truncated_model_fails_before_indexing_in_one_line(archive, package,
                                                             tmp_path: Path) -> None:
    # Issue reproduction: every series became an error row, with a traceback each, exit 0.
    folder = archive[0]
    broken = tmp_path / "broken-model"
    shutil.copytree(package.path, broken)
    onnx = broken / "model.onnx"
    onnx.write_bytes(onnx.read_bytes()[:1000])
    out = tmp_path / "worklist.parquet"
    run = _screen([str(folder), "--out", str(out), "--model", str(broken), "--workers", "1",
                   "--gpus", "0"])
    _, stderr = run.communicate(timeout=300)
    assert run.returncode == 2, stderr[-3000:]
    assert _words(f"error: model {broken} cannot run with --backend auto --precision fp32") in \
        _words(stderr)
    assert stderr.count("error:") == 1 and "Traceback" not in stderr
    assert not out.with_name("inventory.parquet").exists()  # nothing indexed


def test_a_sweep_in_which_every_series_failed_exits_non_zero(archive, tmp_path: Path) -> None:
    _, _, chosen, _ = archive
    folder = tmp_path / "archive"
    folder.mkdir()
    slices = _slices(archive[0], chosen["folders"], chosen["series_instance_uid"])
    copies = [Path(shutil.copy(p, folder / f"slice{n:04d}")) for n, p in enumerate(slices)]
    for path in copies[10:40:10]:  # three damaged slices, apart: more than may be left out
        _cut_short(path)
    out = tmp_path / "worklist.parquet"
    run = _screen([str(folder), "--out", str(out), "--workers", "1", "--gpus", "0"])
    _, stderr = run.communicate(timeout=300)
    assert run.returncode == 1, stderr[-3000:]
    assert _words(f"error: all 1 eligible series failed; the error column of {out} says why") \
        in _words(stderr)
    (row,) = pq.read_table(out).to_pylist()
    assert row["status"] == "error" and "is damaged" in row["error"]


def test_a_pseudonymised_sweep_records_left_out_slices_without_identifiers(
        archive, tmp_path: Path) -> None:
    # The warning names the damaged file, whose folders hold the patient's ID.
    from screen.pseudonym import create_key_file, find_identifiers

    folder, _, chosen, damaged = archive
    out = tmp_path / "out" / "worklist.parquet"
    key = create_key_file(tmp_path / "key.bin")
    scan([folder], out, options=ScanOptions(workers=2, gpus=0, pseudonymize_key=key))
    row = next(r for r in pq.read_table(out).to_pylist()
               if r["series_instance_uid"] == chosen["series_instance_uid"])
    inventory = next(r for r in pq.read_table(out.with_name("inventory.parquet")).to_pylist()
                     if r["series_instance_uid"] == chosen["series_instance_uid"])
    assert any("left out" in w for w in row["warnings"])
    assert any("left out" in w for w in inventory["warnings"])
    identifiers = {pydicom.dcmread(damaged, stop_before_pixels=True).PatientID}
    assert any(i in str(damaged) for i in identifiers), "the test needs an ID in the path"
    assert find_identifiers(out.parent, identifiers) == []
