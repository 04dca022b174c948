"""A header-reading worker process that dies loses nothing but the file it died of.

The worker is really killed (SIGKILL, as the kernel's memory killer kills) by the real reader
wrapped to die on one chosen file, in a real process pool and on a real Dask cluster; the
recovery that follows is the index's own.
"""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import dask
import pytest
from distributed import Client, LocalCluster

import screen.header_reading
from screen.headers import read_instances
from screen.index import IndexResult, index
from screen.records import FileError, Instance, Stage

POISON = "dies-here.dcm"


def read_or_die(paths: list[str]) -> list[Instance | FileError]:
    """The real reader, but the process reading ``POISON`` is killed on the spot."""
    if any(Path(p).name == POISON for p in paths):
        os.kill(os.getpid(), signal.SIGKILL)
    return read_instances(paths)


@pytest.fixture(scope="module")
def archive(small_archive: Path) -> Path:
    return small_archive / "archive"


@pytest.fixture(scope="module")
def unharmed(archive: Path) -> IndexResult:
    return index([archive], workers=2)


@pytest.fixture
def poisoned(archive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A second folder holding one good DICOM file under the name the reader dies on."""
    folder = tmp_path / "more"
    folder.mkdir()
    some_image = next(p for p in sorted(archive.rglob("*.dcm")) if p.stat().st_size > 10_000)
    shutil.copyfile(some_image, folder / POISON)
    monkeypatch.setattr(screen.header_reading, "read_instances", read_or_die)
    yield folder


def _series(result: IndexResult) -> dict[str, int]:
    return {e.series.key: len(e.series.instances) for e in result.entries}


def _check(result: IndexResult, unharmed: IndexResult, poison: Path) -> None:
    assert result.files_found == unharmed.files_found + 1
    # Every other file was read exactly as without the death: the same series, whole.
    assert _series(result) == _series(unharmed)
    died = [e for e in result.errors if e.path == str(poison)]
    assert len(died) == 1 and died[0].stage is Stage.HEADER
    assert "process reading this file's header died" in died[0].error
    assert sorted(e.path for e in result.errors if e.path != str(poison)) == \
        sorted(e.path for e in unharmed.errors)


def test_a_dead_pool_worker_loses_only_its_file(poisoned: Path, archive: Path,
                                                 unharmed: IndexResult) -> None:
    result = index([archive, poisoned], workers=2)
    _check(result, unharmed, poisoned / POISON)


def test_a_dead_dask_worker_loses_only_its_file(poisoned: Path, archive: Path,
                                                 unharmed: IndexResult) -> None:
    # Give up on a task at its first death rather than after three: the same path, sooner.
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}), \
            LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                         dashboard_address=None, host="127.0.0.1") as cluster, \
            Client(cluster) as client:
        result = index([archive, poisoned], executor=client.get_executor(), workers=2)
    _check(result, unharmed, poisoned / POISON)
