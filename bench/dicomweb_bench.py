"""A PACS sweep against a local Orthanc: what crosses the wire, and how fast.

    python -m bench.dicomweb_bench [--cases 4] [--matrix 96] [--requests 120]

Generates a synthetic archive, serves it from an Orthanc on loopback (Debian's orthanc and
orthanc-dicomweb packages; the benchmark says so and measures nothing without them), and
measures:
  - `screen index` of the files on disk against `screen index dicomweb+...` of the same
    archive: wall time and, for the PACS, the bytes received;
  - the pixel data a `screen scan` retrieves (the eligible series, retrieved by the scan's own
    code path) against the archive's total, in bytes;
  - requests per second held against Orthanc with --max-connections 4 (series metadata,
    a bounded number of requests), and how many failed.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.common import save, timed


def _orthanc_helpers():
    """The tests' Orthanc launcher (one way to run the test PACS, shared)."""
    path = Path(__file__).resolve().parents[1] / "tests" / "dicomweb" / "conftest.py"
    spec = importlib.util.spec_from_file_location("screen_bench_orthanc", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


class _Received:
    """Bytes received by every response of a session, read off urllib3 once consumed."""

    def __init__(self) -> None:
        self.responses: list = []

    def hook(self, response, *args, **kwargs):
        self.responses.append(response)
        return response

    def total(self) -> int:
        return sum(r.raw.tell() for r in self.responses)

    def count(self) -> int:
        return len(self.responses)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", type=int, default=4)
    parser.add_argument("--matrix", type=int, default=96)
    parser.add_argument("--requests", type=int, default=120)
    args = parser.parse_args()
    helpers = _orthanc_helpers()
    if helpers.missing():
        print(f"dicomweb: skipped ({helpers.missing()})")
        return
    from screen.dicomweb import PacsAddress, PacsSource, parse_auth
    from screen.dicomweb.connection import Connection
    from screen.dicomweb.retrieve import SeriesRetrieval
    from screen.dicomweb.sweep import index_pacs
    from screen.index import index
    from screen.synth.archive import write_archive

    folder = Path(tempfile.mkdtemp(prefix="screen-dicomweb-bench-"))
    server = helpers.Orthanc(folder)
    try:
        archive = write_archive(folder / "synth", args.cases, seed=5, matrix=args.matrix)
        files = helpers.dicom_files(archive.archive)
        archive_bytes = sum(p.stat().st_size for p in files)
        server.start()
        stored = server.upload(files)
        stats = server.get("/statistics")
        secret = folder / "password"
        secret.write_text(helpers.PASSWORD)
        connection = Connection(PacsAddress.parse(server.dicomweb),
                                parse_auth(f"basic:{helpers.USER}:{secret}"), max_connections=4)

        file_result, file_seconds = timed(lambda: index([archive.archive], workers=2))
        received = _Received()
        source = PacsSource(connection)
        pacs_result, pacs_seconds = timed(lambda: _index_counted(source, received, index_pacs))

        retrieved = _Received()
        eligible = pacs_result.eligible

        def retrieve_all() -> int:
            n = 0
            for entry in eligible:
                SeriesRetrieval(source, entry.series)(entry.series.first.path)
                n += len(entry.series.instances)
            return n

        instances_retrieved, retrieve_seconds = timed(lambda: _with_counted_clients(
            connection, retrieved, retrieve_all))
        load = _load(connection, pacs_result, args.requests)
        save("dicomweb", {
            "cases": args.cases, "matrix": args.matrix,
            "archive_files": len(files), "archive_bytes": archive_bytes,
            "orthanc_instances": stats["CountInstances"], "uploaded": stored,
            "orthanc_bytes": int(stats["TotalDiskSize"]),
            "index_files_seconds": round(file_seconds, 2),
            "index_files_series": len(file_result.entries),
            "index_pacs_seconds": round(pacs_seconds, 2),
            "index_pacs_series": len(pacs_result.entries),
            "index_pacs_requests": received.count(),
            "index_pacs_bytes_received": received.total(),
            "eligible_series": len(eligible),
            "retrieved_instances": instances_retrieved,
            "retrieved_bytes": retrieved.total(),
            "retrieve_seconds": round(retrieve_seconds, 2),
            "retrieved_share_of_orthanc_bytes": round(retrieved.total() /
                                                      int(stats["TotalDiskSize"]), 3),
            **load,
        })
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


def _with_counted_clients(connection, received: _Received, work):
    """Run ``work`` with every client the connection opens counting what it receives."""
    from screen.dicomweb import connection as module

    original = module.Connection.client

    def counted(self):
        client = original(self)
        client._session.hooks["response"].append(received.hook)  # noqa: SLF001
        return client

    module.Connection.client = counted
    try:
        return work()
    finally:
        module.Connection.client = original


def _index_counted(source, received: _Received, index_pacs):
    return _with_counted_clients(source.connection, received, lambda: index_pacs(source))


def _load(connection, result, n_requests: int) -> dict[str, object]:
    """``n_requests`` series-metadata requests, 4 at a time: the rate Orthanc holds."""
    refs = [(e.series.first.study_instance_uid, e.series.first.series_instance_uid)
            for e in result.entries]
    refs = [refs[i % len(refs)] for i in range(n_requests)]
    client = connection.client()

    def one(ref) -> bool:
        try:
            client.retrieve_series_metadata(*ref)
            return True
        except Exception:  # noqa: BLE001 - counted
            return False

    def run() -> list[bool]:
        with ThreadPoolExecutor(connection.max_connections) as pool:
            return list(pool.map(one, refs))

    outcomes, seconds = timed(run)
    errors = outcomes.count(False)
    return {"load_requests": n_requests, "load_max_connections": connection.max_connections,
            "load_seconds": round(seconds, 2),
            "load_requests_per_second": round(n_requests / seconds, 1),
            "load_errors": errors}


if __name__ == "__main__":
    main()
