"""Read every file's header in worker processes, over a bounded window of chunks, so that an
archive of millions of files never becomes millions of pending tasks, and so that a worker
that dies costs no file but the one it died of (see :func:`read_headers`).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import sys
import threading
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from itertools import islice
from pathlib import Path

from screen.crawl import Found, crawl
from screen.records import FileError, Instance, Stage

logger = logging.getLogger(__name__)

CHUNK = 64  # files per task: large enough to amortise the round trip, small enough to balance
WINDOW_PER_WORKER = 4  # chunks in flight per worker process


def default_workers() -> int:
    return os.cpu_count() or 1


def read_headers(roots: Sequence[str | Path], *, workers: int | None = None,
                 executor: Executor | None = None, follow_links: bool = False
                 ) -> Iterator[Instance | FileError]:
    """Crawl and read every file's header, yielding one outcome per file found.

    Reads run in ``executor`` when given (a Dask cluster's, say), else in a pool of
    ``workers`` processes, or in this process when ``workers`` is 1. A worker process that
    dies (a decoder library crashing on a strange file, or the memory killer) takes its reads
    with it; those files are read again afterwards, alone, so that the one it died of ends in
    the errors and every other file is read.
    """
    workers = workers or default_workers()
    paths = _PathsAndErrors(crawl(roots, follow_links=follow_links))
    chunks = _chunks(paths.iterate(), CHUNK)
    if executor is None and workers == 1:
        for chunk in chunks:
            yield from paths.take_errors()
            yield from read_instances(chunk)
        yield from paths.take_errors()
        return
    readers = _Readers(executor, workers)
    lost: list[list[str]] = []
    try:
        pending: dict[Future[list[Instance | FileError]], list[str]] = {}
        window = workers * WINDOW_PER_WORKER
        exhausted = False
        while pending or not exhausted:
            while not exhausted and len(pending) < window:
                chunk = next(chunks, None)
                if chunk is None:
                    exhausted = True
                else:
                    pending[readers.submit(chunk)] = chunk
            yield from paths.take_errors()
            if pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    chunk = pending.pop(future)
                    try:
                        outcomes = future.result()
                    except Exception as exc:
                        if not _worker_died(exc):
                            raise
                        logger.warning("a worker reading headers died (%s: %s)", type(exc).__name__, exc)
                        lost.append(chunk)
                    else:
                        yield from outcomes
        yield from paths.take_errors()
        if lost:
            logger.warning("%d files were lost with a worker that died; reading them again, alone, "
                        "to find which one it died of", sum(map(len, lost)))
        for chunk in lost:
            yield from readers.alone(chunk)
    finally:
        readers.close()


def read_instances(paths: list[str]) -> list[Instance | FileError]:
    """The outcome of reading each file's header, in order. pydicom is loaded here, with the
    first file there is to read, not with the command: an empty folder is indexed without it."""
    from screen.headers import read_instances as read

    return read(paths)


def _worker_died(exc: BaseException) -> bool:
    """Whether a read failed because the process doing it died: in a pool of our own, or on a
    Dask cluster (KilledWorker; Dask is imported only where one is used, so none without)."""
    distributed = sys.modules.get("distributed")
    return isinstance(exc, BrokenProcessPool) or (
        distributed is not None and isinstance(exc, distributed.KilledWorker))


class _Readers:
    """Where header reads run: ``executor``, or a process pool of this reader's own, which is
    renewed when a worker's death breaks it (the death fails every read then in flight)."""

    def __init__(self, executor: Executor | None, workers: int) -> None:
        self._owned = executor is None
        self._workers = workers
        # Started with the first read: a pool's queues start a helper process, which an
        # empty folder need not wait for.
        self._pool = executor

    def _new_pool(self) -> ProcessPoolExecutor:
        # A fork copies the locks that other threads hold. With none running (screen index)
        # workers are forked from this process. Beside other threads (a sweep's Dask client)
        # they are forked from a server process started clean, which loads the header reader
        # once for all of them; like Dask's own workers, it needs a script's work to be under
        # `if __name__ == "__main__":`.
        if threading.active_count() == 1:
            return ProcessPoolExecutor(max_workers=self._workers,
                                       mp_context=multiprocessing.get_context("fork"))
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["screen.headers"])
        return ProcessPoolExecutor(max_workers=self._workers, mp_context=context)

    def submit(self, paths: list[str]) -> Future[list[Instance | FileError]]:
        if self._pool is None:
            self._pool = self._new_pool()
        try:
            return self._pool.submit(read_instances, paths)
        except BrokenProcessPool:
            if not self._owned:
                raise
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = self._new_pool()
            return self._pool.submit(read_instances, paths)

    def alone(self, paths: list[str]) -> Iterator[Instance | FileError]:
        """Read ``paths`` with nothing else in flight, halving them each time their worker
        dies, down to the file it dies of, which becomes an error."""
        try:
            outcomes = self.submit(paths).result()
        except Exception as exc:
            if not _worker_died(exc):
                raise
            if len(paths) > 1:
                half = len(paths) // 2
                yield from self.alone(paths[:half])
                yield from self.alone(paths[half:])
            else:
                yield FileError(paths[0], Stage.HEADER,
                                "the process reading this file's header died (a crash in a "
                                f"decoder library, or out of memory): {type(exc).__name__}: {exc}")
        else:
            yield from outcomes

    def close(self) -> None:
        if self._owned and self._pool is not None:
            self._pool.shutdown(cancel_futures=True)


class _PathsAndErrors:
    """Splits the crawl into paths to read and crawl errors to pass straight through."""

    def __init__(self, found: Iterable[Found | FileError]) -> None:
        self._found = iter(found)
        self._errors: list[FileError] = []

    def iterate(self) -> Iterator[str]:
        for item in self._found:
            if isinstance(item, FileError):
                self._errors.append(item)
            else:
                yield item.path

    def take_errors(self) -> list[FileError]:
        taken, self._errors = self._errors, []
        return taken


def _chunks(items: Iterable[str], size: int) -> Iterator[list[str]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk
