"""A sweep with a GPU worker, on a real cluster whose "GPU" worker is a CPU standing in for
one: every series is read, prepared and postprocessed on the CPU worker, the GPU worker only
runs networks (its inference service), only network inputs and outputs cross, and every row
comes out as when one worker does everything."""

from __future__ import annotations

import logging
from pathlib import Path

import dask
import pyarrow.parquet as pq
import pytest
from distributed import Scheduler, SpecCluster
from distributed.diagnostics.task_stream import TaskStreamPlugin

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
def test_networks_apart_from_everything_else_change_no_row(small_archive: Path,
                                                           tmp_path: Path) -> None:
    archive = small_archive / "archive"
    together = tmp_path / "together" / "worklist.parquet"
    scan([archive], together, options=ScanOptions(workers=1, gpus=0, cpu_threads=1))

    apart = tmp_path / "apart" / "worklist.parquet"
    scheduler = {"cls": Scheduler, "options": {"host": "127.0.0.1", "dashboard": False}}
    with dask.config.set(LOCAL_CLUSTER_CONFIG), \
            SpecCluster(workers=cluster_spec(1, (STAND_IN,)), scheduler=scheduler,
                        silence_logs=logging.WARNING) as cluster:
        tasks = TaskStreamPlugin(cluster.scheduler)
        cluster.scheduler.add_plugin(tasks)
        summary = scan([archive], apart, options=ScanOptions(
            scheduler=cluster.scheduler_address, cpu_threads=1))
        gpu = next(a for a, w in cluster.scheduler.workers.items() if w.resources.get("GPU"))
    rows = _rows(apart)
    assert rows and any(r["status"] == "ok" for r in rows)
    assert rows == _rows(together)

    on_gpu = {t["key"] for t in tasks.buffer if t["worker"] == gpu}
    assert on_gpu == {"screen-inference-0"}  # the service: no header, series or model check
    # Every worklist row's series was one task (series ruled out by their pixels, too).
    screened = {t["key"] for t in tasks.buffer if str(t["key"]).startswith("screen-")} - \
        on_gpu - {"screen-check-model"}
    assert {f"screen-{r['series_key']}" for r in rows} <= screened
    (service,) = summary.inference
    ok = sum(r["status"] == "ok" for r in rows)
    # Each scored series: one look at the body, one or two at the box around the pancreas.
    assert ok <= service.requests - 2 <= 3 * len(rows)  # the model's check: its 2 networks
    assert service.batches == service.requests  # a CPU runs each request as it came
    mib = (service.bytes_in + service.bytes_out) / 2**20
    assert 0 < mib / len(rows) < 32  # a look's inputs and outputs, never a volume
    # What the findings keep comes back (masks as bits, the lesion channel), not three maps.
    assert service.bytes_out < service.bytes_in


def test_a_cluster_of_gpu_workers_alone_is_refused_before_any_work(small_archive: Path,
                                                                   tmp_path: Path) -> None:
    out = tmp_path / "worklist.parquet"
    scheduler = {"cls": Scheduler, "options": {"host": "127.0.0.1", "dashboard": False}}
    with dask.config.set(LOCAL_CLUSTER_CONFIG), \
            SpecCluster(workers=cluster_spec(0, (STAND_IN,)), scheduler=scheduler,
                        silence_logs=logging.WARNING) as cluster:
        with pytest.raises(ValueError, match="GPU workers but no worker with the CPU resource"):
            scan([small_archive / "archive"], out,
                 options=ScanOptions(scheduler=cluster.scheduler_address))
    assert not out.exists() and not (tmp_path / "inventory.parquet").exists()


def test_on_the_local_tls_cluster_the_model_check_runs_through_the_service(package) -> None:
    from screen.cluster import (
        DetectorPlugin,
        DetectorSpec,
        connect,
        cpu_resources,
        start_inference_services,
    )
    from screen.tasks import check_detector

    spec = DetectorSpec(str(package.path), "onnxruntime", "fp32", cpu_threads=1)
    with connect(scheduler=None, cpu_workers=1, gpus=(STAND_IN,)) as client:
        assert client.scheduler.address.startswith("tls://")
        services = start_inference_services(client, spec)
        client.register_plugin(DetectorPlugin(spec, services.handles))
        problem = client.submit(check_detector, pure=False,
                                resources=cpu_resources(client)).result()
        (stats,) = services.stats()
    assert problem is None
    assert stats.worker == "gpu-0" and stats.device == "cpu"
    assert stats.requests == len(package.card.networks) == 2
