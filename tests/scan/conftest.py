"""Real clusters and real processes for the sweep's tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest


def _wait_for(path: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear in {timeout} s")
        time.sleep(0.2)


class ExternalCluster:
    """`dask scheduler` and `dask worker` processes on loopback, as a user would start them."""

    def __init__(self, folder: Path, workers: int) -> None:
        self.file = folder / "scheduler.json"
        env = dict(os.environ, PYTHONWARNINGS="ignore")
        dask = [sys.executable, "-m", "dask"]
        self.scheduler = subprocess.Popen(
            [*dask, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
             "--scheduler-file", str(self.file)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        _wait_for(self.file)
        self.workers = [
            subprocess.Popen(
                [*dask, "worker", "--scheduler-file", str(self.file), "--nthreads", "1",
                 "--no-dashboard", "--no-nanny", "--host", "127.0.0.1",
                 "--memory-limit", "0"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
            for _ in range(workers)
        ]
        import json

        self.address = json.loads(self.file.read_text())["address"]
        from distributed import Client

        with Client(self.address, timeout="60s") as client:
            client.wait_for_workers(workers, timeout=120)

    def stop(self) -> None:
        for proc in [*self.workers, self.scheduler]:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in [*self.workers, self.scheduler]:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture
def external_cluster(tmp_path: Path) -> Iterator[ExternalCluster]:
    cluster = ExternalCluster(tmp_path, workers=2)
    try:
        yield cluster
    finally:
        cluster.stop()
