"""Decoding on one worker and detecting on another, as when a GPU worker runs the detector, on
a real cluster whose "GPU" worker is a CPU standing in for one: the volume crosses between
processes packed as int16, and every row comes out as when one worker does both."""

from __future__ import annotations

import logging
from pathlib import Path

import dask
import pyarrow.parquet as pq
import pytest
from distributed import Scheduler, SpecCluster

from screen.cluster import LOCAL_CLUSTER_CONFIG, cluster_spec
from screen.gpus import Gpu
from screen.scan import ScanOptions, scan

pytest.importorskip("screen.detect.detector", reason="the detector is absent")

STAND_IN = Gpu(0, "GPU-stand-in", "a CPU standing in for a GPU", 0.0, (0, 0))


def _rows(path: Path) -> list[dict]:
    timings = ("load_seconds", "detect_seconds")
    return [{k: v for k, v in row.items() if k not in timings}
            for row in pq.read_table(path).to_pylist()]


@pytest.mark.slow
def test_decoding_apart_from_the_detector_changes_no_row(small_archive: Path,
                                                         tmp_path: Path) -> None:
    archive = small_archive / "archive"
    together = tmp_path / "together" / "worklist.parquet"
    scan([archive], together, options=ScanOptions(workers=1, gpus=0, cpu_threads=1))

    apart = tmp_path / "apart" / "worklist.parquet"
    scheduler = {"cls": Scheduler, "options": {"host": "127.0.0.1", "dashboard": False}}
    with dask.config.set(LOCAL_CLUSTER_CONFIG), \
            SpecCluster(workers=cluster_spec(1, (STAND_IN,)), scheduler=scheduler,
                        silence_logs=logging.WARNING) as cluster:
        scan([archive], apart, options=ScanOptions(scheduler=cluster.scheduler_address,
                                                   cpu_threads=1))
    rows = _rows(apart)
    assert rows and any(r["status"] == "ok" for r in rows)
    assert rows == _rows(together)
