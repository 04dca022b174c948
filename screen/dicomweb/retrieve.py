"""A series' instances, pixels included, retrieved over WADO-RS as the PACS stores them.

The whole series comes in one request (``Accept: multipart/related; type="application/dicom";
transfer-syntax=*``: no transcoding by the PACS), parsed as it streams. The instances stay in
memory, still encoded, until the volume loader decodes each with the file sweep's decoders;
nothing is written to disk unless the source has a cache folder.

The number of retrievals at once across the whole cluster is held to ``max_connections``
with a Dask semaphore on the scheduler, so a production PACS is never asked for more.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

from pydicom import dcmread
from pydicom.dataset import Dataset

from screen.atomic import write_atomic
from screen.dicomweb.connection import BACKOFF_MAX_SECONDS, describe
from screen.records import Series
from screen.volume.errors import VolumeError

if TYPE_CHECKING:
    from screen.dicomweb.source import PacsSource

logger = logging.getLogger(__name__)

AS_STORED = (("application/dicom", "*"),)


class SeriesRetrieval:
    """path (WADO-RS URL) -> Dataset for one series; retrieves on first use."""

    def __init__(self, source: PacsSource, series: Series) -> None:
        self._source = source
        self._series = series
        self._uid_of = {i.path: i.sop_instance_uid for i in series.instances}
        self._datasets: dict[str, Dataset] | None = None

    def __call__(self, path: str) -> Dataset:
        if self._datasets is None:
            self._datasets = self._cached() or self._retrieve()
        uid = self._uid_of.get(path)
        if uid is None:
            raise VolumeError(f"{path} is not an instance of series {self._series.key}")
        try:
            return self._datasets[uid]
        except KeyError:
            raise VolumeError(f"{path}: the instance is no longer in the PACS (it was listed "
                              "when the sweep read the metadata)") from None

    def _retrieve(self) -> dict[str, Dataset]:
        import requests

        connection = self._source.connection
        for attempt in range(connection.retries + 1):
            try:
                datasets = self._stream()
                break
            except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
                # urllib3 retried a request that failed to start (MaxRetryError: it is done);
                # one cut off mid-stream (the PACS restarting while it sends) is tried again
                # here, from the start.
                if attempt == connection.retries or _retried_already(exc):
                    raise VolumeError(f"retrieval from the PACS failed: {describe(exc)}") from None
                logger.warning("retrieval of series %s cut off (%s); trying again",
                            self._series.key, type(exc).__name__)
                time.sleep(min(BACKOFF_MAX_SECONDS, connection.backoff_seconds * 2 ** attempt))
            except Exception as exc:  # noqa: BLE001 - the series' row says why, with the status
                raise VolumeError(f"retrieval from the PACS failed: {describe(exc)}") from None
        logger.debug("retrieved %d instances of series %s", len(datasets), self._series.key)
        if self._source.cache is not None:
            self._save(datasets)
        return datasets

    def _stream(self) -> dict[str, Dataset]:
        first = self._series.first
        wanted = set(self._uid_of.values())
        datasets: dict[str, Dataset] = {}
        with _lease(self._source):
            client = self._source.connection.client()
            for ds in client.iter_series(first.study_instance_uid, first.series_instance_uid,
                                         media_types=AS_STORED):
                uid = str(ds.get("SOPInstanceUID", ""))
                if uid in wanted:  # instances added since the metadata was read are left out
                    datasets[uid] = ds
        return datasets

    def _folder(self) -> Path | None:
        if self._source.cache is None:
            return None
        first = self._series.first
        return self._source.cache / first.study_instance_uid / first.series_instance_uid

    def _cached(self) -> dict[str, Dataset] | None:
        """The series from the cache folder, when every instance of it is there."""
        folder = self._folder()
        if folder is None:
            return None
        files = {uid: folder / f"{uid}.dcm" for uid in self._uid_of.values()}
        if not all(f.is_file() for f in files.values()):
            return None
        try:
            return {uid: dcmread(f) for uid, f in files.items()}
        except Exception as exc:  # noqa: BLE001 - a damaged cache is fetched again
            logger.warning("cache for series %s unreadable (%s); retrieving it again",
                        self._series.key, exc)
            return None

    def _save(self, datasets: dict[str, Dataset]) -> None:
        folder = self._folder()
        if folder is None:
            return
        folder.mkdir(parents=True, exist_ok=True)
        for uid, ds in datasets.items():
            write_atomic(folder / f"{uid}.dcm",
                         lambda sink, ds=ds: ds.save_as(sink, enforce_file_format=True))


def _retried_already(exc: Exception) -> bool:
    from urllib3.exceptions import MaxRetryError

    return any(isinstance(arg, MaxRetryError) for arg in exc.args)


def _lease(source: PacsSource):
    """One of ``max_connections`` leases on this PACS, cluster-wide; none outside a cluster."""
    try:
        from distributed import Semaphore, get_worker

        get_worker()
    except (ImportError, ValueError):
        return contextlib.nullcontext()
    name = "pacs-" + hashlib.sha1(source.address.url.encode()).hexdigest()[:12]
    return Semaphore(max_leases=source.connection.max_connections, name=name)
