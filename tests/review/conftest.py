"""A real DICOM series with a lesion, and a detector-like Analysis built from its truth labels.

The archive writer renders each abdominal series from a phantom and saves its label volume,
so the Analysis here has exactly the shape the detector gives (a lesion probability on a grid
of its own, coarser than the volume) without depending on a trained model.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from screen.detect.detector import Analysis
from screen.detect.preprocess import Grid, resample_labels
from screen.index import index
from screen.records import Detection, Series, Volume
from screen.synth.archive import write_archive
from screen.volume import load_volume
from screen.worklist import Producer, row
from screen.worklist_row import WorklistRow

GRID_STEP = 1.5  # segmentation grid voxels per volume voxel, as a coarser network grid would be


@dataclass(frozen=True)
class Case:
    out: Path  # the synthetic export: out/archive, out/truth.csv, out/labels
    series: Series
    volume: Volume
    labels: np.ndarray  # truth on the volume's voxels: 1 pancreas, 2 lesion
    analysis: Analysis
    row: WorklistRow


def analysis_from_labels(labels: np.ndarray, detection: Detection) -> Analysis:
    shape = tuple(math.ceil(n / GRID_STEP) for n in labels.shape)
    grid = Grid((0.0, 0.0, 0.0), (GRID_STEP,) * 3, shape)
    on_grid = resample_labels(labels, grid)
    lesion_probability = (on_grid == 2).astype(np.float32)
    # The truth's lesion is the region reported, as a detector hands over the one it measured.
    lesion = np.argwhere(on_grid == 2) if detection.lesion_center_lps is not None else None
    return Analysis(detection=detection, features={}, locate_grid=grid, segment_grid=grid,
                    lesion_probability=lesion_probability, pancreas_mask=on_grid > 0, lesion=lesion)


def _case(out: Path, lesion: bool) -> Case:
    truth = {r["series_instance_uid"]: r for r in csv.DictReader((out / "truth.csv").open())}
    entries = [e for e in index([out / "archive"], workers=1).eligible
               if truth[e.series.first.series_instance_uid]["label"] == ("1" if lesion else "0")]
    series = entries[0].series
    volume = load_volume(series)
    saved = np.load(out / "labels" / f"{series.first.series_instance_uid}.npz")
    np.testing.assert_allclose(saved["affine"], volume.affine, atol=1e-3)
    labels = saved["labels"]
    t = truth[series.first.series_instance_uid]
    voxel_ml = float(np.prod(volume.spacing)) / 1000.0
    if lesion:
        centre = (float(t["lesion_x_mm"]), float(t["lesion_y_mm"]), float(t["lesion_z_mm"]))
        k = round(float(np.linalg.solve(volume.affine, [*centre, 1.0])[2]))
        detection = Detection(score=0.91, pancreas_found=True,
                              pancreas_volume_ml=float((labels > 0).sum()) * voxel_ml,
                              lesion_center_lps=centre,
                              lesion_diameter_mm=float(t["lesion_diameter_mm"]),
                              lesion_location=t["lesion_location"], key_slice=k)
        key_uid = volume.slice_uids[k]
    else:
        detection = Detection(score=0.04, pancreas_found=True,
                              pancreas_volume_ml=float((labels > 0).sum()) * voxel_ml)
        key_uid = None
    producer = Producer("pancreas-phantom-v1", "1.0.0", "0" * 64, "onnxruntime", "fp32")
    worklist_row = row(series, producer, detection, key_sop_instance_uid=key_uid).ranked(
        1 if lesion else 2, lesion)
    return Case(out, series, volume, labels, analysis_from_labels(labels, detection), worklist_row)


@pytest.fixture(scope="session")
def case_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("review") / "export"
    write_archive(out, 2, seed=3, matrix=64, distractors=False, labels=True)
    return out


@pytest.fixture(scope="session")
def lesion_case(case_archive: Path) -> Case:
    return _case(case_archive, lesion=True)


@pytest.fixture(scope="session")
def clean_case(case_archive: Path) -> Case:
    return _case(case_archive, lesion=False)


VIEWER = "https://pacs.example/viewer?StudyInstanceUIDs={study}"


@pytest.fixture(scope="session")
def review_report(tmp_path_factory: pytest.TempPathFactory, lesion_case: Case, clean_case: Case) -> Path:
    """A report as a sweep leaves it: both series rendered, the index written from their
    final rows, with a viewer link."""
    from screen.review import ViewerLink, render_series, write_index
    from screen.worklist_row import to_table

    folder = tmp_path_factory.mktemp("report")
    for case in (lesion_case, clean_case):
        # As a worker does: before ranking, so the row has no rank or flag yet.
        render_series(folder, case.series, case.volume, case.analysis,
                      case.row.ranked(None, None))
    table = to_table([lesion_case.row, clean_case.row])
    write_index(folder, table, viewer=ViewerLink(VIEWER), threshold=0.5)
    return folder
