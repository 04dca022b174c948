"""The synthetic archive: every file accounted for, readable, and truth that matches geometry."""

from __future__ import annotations

import csv
import hashlib
from collections import Counter
from pathlib import Path

import numpy as np
import pydicom
import pytest

from screen.synth.archive import MANIFEST_COLUMNS, write_archive
from screen.truth import TRUTH_COLUMNS

CASES = 4


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "out"
    summary = write_archive(out, CASES, seed=3, matrix=64, labels=True)
    return summary


@pytest.fixture(scope="module")
def headers(archive):
    """Every non-junk file's header (private groups included), read once for all tests."""
    junk = {r["path"] for r in _rows(archive.manifest_csv) if r["kind"] == "junk"}
    return {path: pydicom.dcmread(path, stop_before_pixels=True)
            for path in _files(archive.archive)
            if path.relative_to(archive.archive).as_posix() not in junk}


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as source:
        return list(csv.DictReader(source))


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_layout_keeps_truth_outside_the_archive(archive):
    assert archive.archive == archive.out / "archive"
    assert archive.truth_csv.parent == archive.out and archive.manifest_csv.parent == archive.out
    assert not any(p.suffix == ".csv" for p in _files(archive.archive))
    with archive.truth_csv.open() as source:
        assert tuple(next(csv.reader(source))) == TRUTH_COLUMNS
    with archive.manifest_csv.open() as source:
        assert tuple(next(csv.reader(source))) == MANIFEST_COLUMNS


def test_half_the_cases_carry_a_lesion(archive):
    truth = _rows(archive.truth_csv)
    assert len(truth) == CASES and archive.lesion_cases == CASES // 2
    assert Counter(r["label"] for r in truth) == {"1": CASES // 2, "0": CASES - CASES // 2}
    for row in truth:
        assert row["series_instance_uid"]
        if row["label"] == "1":
            assert 5.0 <= float(row["lesion_diameter_mm"]) <= 40.0
            assert row["lesion_location"] in {"head", "body", "tail"}
        else:
            assert row["lesion_x_mm"] == row["lesion_diameter_mm"] == row["lesion_location"] == ""


def test_every_file_is_a_listed_series_file_or_listed_junk(archive, headers):
    manifest = _rows(archive.manifest_csv)
    files = _files(archive.archive)
    assert len(files) == archive.files
    junk = {r["path"] for r in manifest if r["kind"] == "junk"}
    assert len(junk) == archive.junk_files >= 5
    series = [r for r in manifest if r["kind"] != "junk"]
    assert sum(int(r["n_files"]) for r in series) + len(junk) == len(files)
    folders = {f for r in series for f in r["folders"].split(";")}
    # Each series' files are exactly the files in its folders that carry its study and number.
    by_key: Counter[tuple[str, str]] = Counter()
    for path in files:
        rel = path.relative_to(archive.archive).as_posix()
        if rel in junk:
            continue
        assert path.parent.relative_to(archive.archive).as_posix() in folders, rel
        ds = headers[path]
        by_key[(ds.StudyInstanceUID, str(ds.SeriesNumber))] += 1
    for r in series:
        assert by_key[(r["study_instance_uid"], r["series_number"])] == int(r["n_files"]), r
    kinds = Counter(r["kind"] for r in series)
    assert kinds["abdominal_ct"] == CASES
    assert len(kinds) >= 6  # distractors of several kinds
    assert all(r["should_be_eligible"] == ("1" if r["kind"] == "abdominal_ct" else "0")
               for r in series)
    # De-identified exports: a blank and a dropped SeriesInstanceUID among the distractors.
    assert sum(r["series_instance_uid"] == "" for r in series) >= 2
    assert any(";" in r["folders"] for r in series if r["kind"] == "abdominal_ct")


def test_files_read_back_in_every_transfer_syntax(archive, headers):
    manifest = _rows(archive.manifest_csv)
    syntaxes = {r["transfer_syntax"] for r in manifest if r["kind"] != "junk"}
    assert {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.5"} <= syntaxes
    decoded: dict[str, int] = {}
    private_after = private_before = 0
    for path, header in headers.items():
        syntax = str(header.file_meta.TransferSyntaxUID)
        groups = [(e.tag.group, len(e.value) if isinstance(e.value, bytes) else 0)
                  for e in header if e.tag.is_private]
        private_before += any(g < 0x0028 for g, _ in groups)
        private_after += any(g > 0x0028 and size >= 3000 for g, size in groups)
        if header.Modality == "CT" and "RescaleSlope" in header and decoded.get(syntax, 0) < 3:
            ds = pydicom.dcmread(path)
            hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
            assert hu.shape == (ds.Rows, ds.Columns)
            assert -1100 <= hu.min() and hu.max() <= 3100
            decoded[syntax] = decoded.get(syntax, 0) + 1
    assert set(decoded) >= {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.5"}
    assert private_after > 0 and private_before > 0


def _series_geometry(archive, uid: str) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
    """Positions sorted along z, and the pixel arrays in that order, read from the files."""
    manifest = _rows(archive.manifest_csv)
    junk = {archive.archive / r["path"] for r in manifest if r["kind"] == "junk"}
    row = next(r for r in manifest if r["series_instance_uid"] == uid)
    datasets = []
    for folder in row["folders"].split(";"):
        for path in (archive.archive / folder).iterdir():
            if path in junk:
                continue
            ds = pydicom.dcmread(path)
            if ds.get("SeriesInstanceUID", "") == uid:
                datasets.append(ds)
    assert len(datasets) == int(row["n_files"])
    datasets.sort(key=lambda d: float(d.ImagePositionPatient[2]))
    positions = np.array([[float(v) for v in d.ImagePositionPatient] for d in datasets])
    hu = np.stack([d.pixel_array * float(d.RescaleSlope) + float(d.RescaleIntercept)
                   for d in datasets])
    spacing = tuple(float(v) for v in datasets[0].PixelSpacing)
    return positions, hu, spacing  # type: ignore[return-value]


def test_truth_maps_to_lesion_voxels_through_the_written_geometry(archive):
    for row in _rows(archive.truth_csv):
        uid = row["series_instance_uid"]
        positions, hu, (row_mm, col_mm) = _series_geometry(archive, uid)
        labels = np.load(archive.out / "labels" / f"{uid}.npz")["labels"]
        assert labels.shape == hu.shape
        if row["label"] == "0":
            assert not np.any(labels == 2)
            continue
        x, y, z = (float(row[c]) for c in ("lesion_x_mm", "lesion_y_mm", "lesion_z_mm"))
        k = int(np.argmin(np.abs(positions[:, 2] - z)))
        assert abs(positions[k, 2] - z) <= np.median(np.diff(positions[:, 2])) / 2 + 1e-3
        i = round((x - positions[k, 0]) / col_mm)
        j = round((y - positions[k, 1]) / row_mm)
        assert labels[k, j, i] == 2
        # The pixels agree: soft tissue where the labels put pancreas and lesion, at this
        # coarse matrix blurred with the fat around them, so only a broad range holds.
        assert -60 < hu[labels == 2].mean() < 150 and -60 < hu[labels == 1].mean() < 150
        assert hu[labels == 0].min() < -900  # and air outside the body


def test_junk_is_what_the_manifest_says(archive):
    junk = {r["series_description"]: archive.archive / r["path"]
            for r in _rows(archive.manifest_csv) if r["kind"] == "junk"}
    assert set(junk) == {"text", "dicomdir", "truncated_dicom", "empty", "jpeg"}
    assert junk["empty"].stat().st_size == 0
    assert junk["jpeg"].read_bytes()[:3] == b"\xff\xd8\xff"
    with pytest.raises(pydicom.errors.InvalidDicomError):
        pydicom.dcmread(junk["text"])
    assert pydicom.dcmread(junk["dicomdir"]).file_meta.MediaStorageSOPClassUID == (
        "1.2.840.10008.1.3.10")
    truncated = junk["truncated_dicom"].read_bytes()
    assert truncated[128:132] == b"DICM" and len(truncated) < 1000
    # pydicom keeps what it could read: the file meta and a few tags, nothing to place it by.
    cut = pydicom.dcmread(junk["truncated_dicom"])
    assert "Modality" not in cut and "SeriesInstanceUID" not in cut and "PixelData" not in cut


def test_same_seed_same_archive_other_seed_other_archive(tmp_path):
    a = write_archive(tmp_path / "a", 2, seed=5, matrix=32, distractors=False)
    b = write_archive(tmp_path / "b", 2, seed=5, matrix=32, distractors=False)
    c = write_archive(tmp_path / "c", 2, seed=6, matrix=32, distractors=False)
    assert a.truth_csv.read_text() == b.truth_csv.read_text() != c.truth_csv.read_text()
    assert a.manifest_csv.read_text() == b.manifest_csv.read_text()

    def digest(root: Path) -> dict[str, str]:
        return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in _files(root)}

    assert digest(a.archive) == digest(b.archive)


def test_refuses_a_non_empty_output_folder(tmp_path):
    (tmp_path / "old.txt").write_text("keep me")
    with pytest.raises(ValueError, match="exists and is not empty"):
        write_archive(tmp_path, 1, matrix=32)
    assert (tmp_path / "old.txt").read_text() == "keep me"
    with pytest.raises(ValueError, match="cases must be a positive integer"):
        write_archive(tmp_path / "new", 0)
    with pytest.raises(ValueError, match="matrix must be an integer in 16..1024"):
        write_archive(tmp_path / "new", 1, matrix=8)


def test_distractors_carry_the_tags_that_tell_them_apart(archive, headers):
    manifest = _rows(archive.manifest_csv)
    by_series: dict[tuple[str, str], list] = {}
    for ds in headers.values():
        by_series.setdefault((ds.StudyInstanceUID, str(ds.SeriesNumber)), []).append(ds)
    seen = set()
    for row in manifest:
        if row["kind"] in ("junk", "abdominal_ct"):
            continue
        files = by_series[(row["study_instance_uid"], row["series_number"])]
        first = files[0]
        kind = row["kind"]
        seen.add(kind)
        if kind == "localizer":
            assert len(files) == 1 and "LOCALIZER" in first.ImageType
        elif kind == "coronal_reformat":
            assert list(first.ImageType[:2]) == ["DERIVED", "SECONDARY"]
            assert [float(v) for v in first.ImageOrientationPatient] == [1, 0, 0, 0, 0, -1]
        elif kind == "lung_kernel":
            # Same volume as the abdominal series: same frame of reference and positions.
            abdomen = next(r for r in manifest if r["kind"] == "abdominal_ct"
                           and r["study_instance_uid"] == row["study_instance_uid"])
            soft = by_series[(abdomen["study_instance_uid"], abdomen["series_number"])]
            assert first.FrameOfReferenceUID == soft[0].FrameOfReferenceUID
            assert first.ConvolutionKernel != soft[0].ConvolutionKernel
            assert sorted(float(d.ImagePositionPatient[2]) for d in files) == sorted(
                float(d.ImagePositionPatient[2]) for d in soft)
        elif kind == "mr":
            assert first.Modality == "MR" and first.SOPClassUID == "1.2.840.10008.5.1.4.1.1.4"
        elif kind in ("head_ct", "chest_ct"):
            assert first.BodyPartExamined == kind.split("_")[0].upper()
        elif kind == "dose_report":
            assert first.SOPClassUID in ("1.2.840.10008.5.1.4.1.1.7",
                                         "1.2.840.10008.5.1.4.1.1.88.67")
    assert len(seen) >= 5
