"""A PACS sweep against a real Orthanc: the same decisions and scores as a file sweep of the
same archive, and the failures a PACS brings (a refused password, a server that goes away,
one series the server cannot send) each ending as the design says."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pyarrow.parquet as pq
import pydicom
import pytest
import requests

from screen.dicomweb.address import DimseAddress
from screen.dicomweb.store import StoreTarget
from screen.dicomweb.sweep import index_pacs
from screen.index import Progress, index
from screen.scan import ScanOptions, scan


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _password(pacs) -> str:
    return pacs.password_file.read_text().strip()


def _rows(path: Path) -> list[dict]:
    return pq.read_table(path).to_pylist()


def _decisions(entries) -> dict[str, tuple[bool, str]]:
    return {e.series.first.series_instance_uid: (e.decision.eligible, e.decision.rule)
            for e in entries if e.series.first.series_instance_uid}


def _screen(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, COLUMNS="200")
    return subprocess.run([sys.executable, "-m", "screen", *args], capture_output=True,
                          text=True, timeout=300, env=env)


def test_index_decides_as_a_file_index_does(pacs) -> None:
    files = index([pacs.archive / "archive"], workers=1)
    remote = index_pacs(pacs.source())
    assert not remote.errors
    by_file, by_pacs = _decisions(files.entries), _decisions(remote.entries)
    # Orthanc holds the CT series with a UID; the file sweep also saw others (junk, MR...).
    ct = {uid for uid, e in zip(by_file, files.entries) if e.series.first.modality == "CT"}
    assert ct and set(by_pacs) <= set(by_file)
    assert {uid: by_file[uid] for uid in by_pacs} == by_pacs
    assert any(eligible for eligible, _ in by_pacs.values())
    # Inventory paths are the instances' WADO-RS URLs.
    first = remote.entries[0].series.first
    assert first.path == (f"{pacs.orthanc.url}/dicom-web/studies/{first.study_instance_uid}"
                          f"/series/{first.series_instance_uid}/instances/"
                          f"{first.sop_instance_uid}")


def test_wrong_password_fails_in_one_line_before_any_work(pacs, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong"
    wrong.write_text("not-it\n")
    out = tmp_path / "w" / "worklist.parquet"
    done = _screen("scan", pacs.orthanc.dicomweb, "--auth", f"basic:screen:{wrong}",
                   "--out", str(out))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"error: cannot search the PACS at {pacs.orthanc.dicomweb}: HTTP 401 Unauthorized: "
        "the PACS refused the credentials (check --auth)"]
    assert not out.parent.exists()
    assert "not-it" not in done.stderr + done.stdout


def test_a_password_on_the_command_line_is_refused(pacs, tmp_path: Path) -> None:
    done = _screen("index", pacs.orthanc.dicomweb, "--auth", f"screen:{_password(pacs)}",
                   "--out", str(tmp_path / "inventory.parquet"))
    assert done.returncode == 2
    assert "--auth is basic:USER:PASSWORD-FILE or token:TOKEN-FILE" in done.stderr
    assert not (tmp_path / "inventory.parquet").exists()


def test_server_down_mid_sweep_is_waited_for(pacs) -> None:
    """Orthanc stops while the metadata is read and comes back 2 s later: the retries carry
    the sweep over the gap and nothing is lost."""
    expected = _decisions(index_pacs(pacs.source()).entries)
    restarted = threading.Event()
    restart = threading.Timer(2.0, pacs.orthanc.start)

    def stop_then_restart(found: int, errors: int) -> None:
        if found and not restarted.is_set():
            restarted.set()
            pacs.orthanc.stop()
            restart.start()

    started = time.monotonic()
    result = index_pacs(pacs.source(), progress=Progress(on_files=stop_then_restart))
    assert restarted.is_set() and time.monotonic() - started >= 2.0
    assert not result.errors
    assert _decisions(result.entries) == expected
    restart.join()  # start() returns once Orthanc answers: it is back for the tests after this
    pacs.orthanc.get("/system")


@pytest.fixture(scope="module")
def sweeps(pacs, cluster: str, tmp_path_factory: pytest.TempPathFactory):
    """The same archive swept from its files and from the PACS, pseudonymised with one key."""
    pytest.importorskip("screen.detect.detector", reason="the detector is absent")
    folder = tmp_path_factory.mktemp("sweeps")
    key = folder / "key"
    from screen.pseudonym import create_key_file

    create_key_file(key)
    files = scan([pacs.archive / "archive"], folder / "files" / "worklist.parquet",
                 options=ScanOptions(scheduler=cluster, gpus=0, pseudonymize_key=key))
    # First to a DICOM node that is not there: the store fails, and the worklist says so.
    nobody = StoreTarget(dimse=DimseAddress("NOBODY", "127.0.0.1", free_port()), retries=1,
                         backoff_seconds=0.1)
    out = folder / "pacs" / "worklist.parquet"
    options = ScanOptions(scheduler=cluster, gpus=0, pseudonymize_key=key, pacs=pacs.source(),
                          store_results=nobody)
    failed_store = scan([], out, options=options)
    failed_rows = _rows(out)
    # Then resumed, storing back into the PACS itself: what failed is stored now.
    remote = scan([], out, options=replace(options, store_results=StoreTarget(
        stow=pacs.connection())))
    return files, remote, failed_store, failed_rows


def test_pacs_scan_scores_as_a_file_scan(pacs, sweeps, package) -> None:
    files, remote, *_ = sweeps
    tolerance = package.card.tolerance["score_abs"]  # the model card's
    by_file = {r["series_instance_uid"]: r for r in _rows(files.worklist)}
    by_pacs = {r["series_instance_uid"]: r for r in _rows(remote.worklist)}
    assert set(by_pacs) == set(by_file) and pacs.failing_series in by_pacs
    compared = 0
    for uid, row in by_pacs.items():
        if uid == pacs.failing_series:
            continue
        assert row["status"] == by_file[uid]["status"], uid
        if row["status"] == "ok":
            assert abs(row["score"] - by_file[uid]["score"]) <= tolerance, uid
            assert row["flagged"] == by_file[uid]["flagged"]
            compared += 1
    assert compared >= 1


def test_a_series_the_pacs_cannot_send_gets_an_error_row_with_its_status(pacs,
                                                                          sweeps) -> None:
    _, remote, *_ = sweeps
    row = next(r for r in _rows(remote.worklist)
               if r["series_instance_uid"] == pacs.failing_series)
    assert row["status"] == "error" and row["score"] is None
    assert row["error"].startswith("could not be loaded: retrieval from the PACS failed: "
                                   "HTTP 500 Internal Server Error from ")
    assert remote.failed == 1 and remote.scored >= 1


def test_pseudonyms_are_the_same_as_for_files_and_no_identifier_leaks(pacs,
                                                                     sweeps) -> None:
    files, remote, *_ = sweeps
    from screen.index import index as file_index

    truth = file_index([pacs.archive / "archive"], workers=1)
    identifiers = {v for e in truth.entries for v in (
        e.series.first.patient_id, e.series.first.accession_number,
        e.series.first.patient_name) if len(v) > 3}
    assert identifiers
    for summary in (files, remote):
        for path in (summary.worklist, summary.inventory, summary.errors):
            text = path.read_bytes().decode("latin-1")
            assert not [i for i in identifiers if i in text], path
    by_file = {r["series_instance_uid"]: (r["patient_id"], r["accession_number"])
               for r in _rows(files.inventory)}
    for r in _rows(remote.inventory):
        assert (r["patient_id"], r["accession_number"]) == by_file[r["series_instance_uid"]]
        assert r["patient_id"].startswith("P-")
    assert _password(pacs) not in "".join(p.read_bytes().decode("latin-1") for p in (
        remote.worklist, remote.inventory, remote.errors))


def test_a_failed_store_is_recorded_then_stored_by_the_resumed_run(pacs, sweeps) -> None:
    _, remote, failed_store, failed_rows = sweeps
    flagged = [r for r in failed_rows if r["flagged"]]
    assert flagged, "the archive's lesion cases should be flagged"
    for r in flagged:
        assert r["stored"] is False
        assert r["store_error"].startswith("C-STORE to dimse://NOBODY@127.0.0.1:")
    assert all(r["stored"] is None for r in failed_rows if not r["flagged"])
    assert remote.resumed == failed_store.scored  # the series that failed (500) is tried again
    rows = [r for r in _rows(remote.worklist) if r["flagged"]]
    assert {r["series_key"] for r in rows} == {r["series_key"] for r in flagged}
    assert all(r["stored"] is True and r["store_error"] is None for r in rows)


def test_stored_results_are_found_by_qido_and_reference_their_series(pacs, sweeps) -> None:
    _, remote, *_ = sweeps
    client = pacs.connection().client()
    for row in (r for r in _rows(remote.worklist) if r["flagged"]):
        study, source = row["study_instance_uid"], row["series_instance_uid"]
        found = {s["00080060"]["Value"][0]: s["0020000E"]["Value"][0]
                 for s in client.search_for_series(study, search_filters={"Modality": "SR"})
                 + client.search_for_series(study, search_filters={"Modality": "SEG"})}
        assert set(found) == {"SR", "SEG"}
        seg, = client.retrieve_series(study, found["SEG"])
        sr, = client.retrieve_series(study, found["SR"])
        assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == source
        evidence = {s.SeriesInstanceUID for st in sr.CurrentRequestedProcedureEvidenceSequence
                    for s in st.ReferencedSeriesSequence}
        assert evidence == {source, seg.SeriesInstanceUID}


def test_results_go_back_by_c_store_too(pacs, sweeps) -> None:
    """The same SR and SEG sent to Orthanc's DICOM port: removed from it first (through its
    own REST API), then stored by C-STORE and found again by QIDO."""
    _, remote, *_ = sweeps
    sent = sorted(remote.worklist.with_name(remote.worklist.name + ".dicom").glob("*.dcm"))
    assert sent
    datasets = [pydicom.dcmread(p) for p in sent]
    for ds in datasets:
        found = requests.post(f"{pacs.orthanc.url}/tools/lookup", data=ds.SOPInstanceUID,
                              auth=pacs.orthanc.auth, timeout=30).json()
        for item in found:
            requests.delete(f"{pacs.orthanc.url}{item['Path']}", auth=pacs.orthanc.auth,
                            timeout=30).raise_for_status()
    client = pacs.connection().client()
    assert not client.search_for_instances(
        search_filters={"SOPInstanceUID": datasets[0].SOPInstanceUID})
    target = StoreTarget.parse(f"dimse://{pacs.orthanc.aet}@127.0.0.1:{pacs.orthanc.dicom_port}")
    target.send(datasets)
    for ds in datasets:
        assert client.search_for_instances(search_filters={"SOPInstanceUID": ds.SOPInstanceUID})


def test_screen_index_of_a_pacs_names_instances_by_url_and_hides_the_secret(pacs,
                                                                           tmp_path: Path) -> None:
    out = tmp_path / "inventory.parquet"
    done = _screen("index", pacs.orthanc.dicomweb, "--auth", pacs.auth, "--out", str(out))
    assert done.returncode == 0, done.stderr
    rows = _rows(out)
    assert rows and any(r["eligible"] for r in rows)
    assert all(f.startswith(f"{pacs.orthanc.url}/dicom-web/studies/{r['study_instance_uid']}/")
               for r in rows for f in r["files"])
    secret = _password(pacs)
    assert secret not in done.stderr + done.stdout
    assert secret not in out.read_bytes().decode("latin-1")


def test_cache_keeps_a_retrieved_series_and_serves_it_again(pacs, tmp_path: Path) -> None:
    from screen.dicomweb import PacsSource, parse_auth
    from screen.dicomweb.connection import Connection
    from screen.volume import load_volume

    cache = tmp_path / "cache"
    source = pacs.source(cache=cache)
    entry = next(e for e in index_pacs(source).eligible
                 if e.series.first.series_instance_uid != pacs.failing_series)
    volume = load_volume(entry.series, read=source.reader(entry.series))
    assert len(list(cache.rglob("*.dcm"))) == len(entry.series.instances)
    # From the cache alone: these credentials would be refused, were a request made.
    wrong = tmp_path / "wrong"
    wrong.write_text("wrong")
    offline = PacsSource(Connection(source.address, parse_auth(f"basic:screen:{wrong}")),
                         cache=cache)
    again = load_volume(entry.series, read=offline.reader(entry.series))
    assert (again.hu == volume.hu).all()


def test_retrieval_waits_for_a_pacs_that_restarts(pacs) -> None:
    """Orthanc is down when a series' retrieval starts and back 2 s later: the series loads."""
    from screen.volume import load_volume

    source = pacs.source()
    entry = next(e for e in index_pacs(source).eligible
                 if e.series.first.series_instance_uid != pacs.failing_series)
    pacs.orthanc.stop()
    restart = threading.Timer(2.0, pacs.orthanc.start)
    restart.start()
    try:
        started = time.monotonic()
        volume = load_volume(entry.series, read=source.reader(entry.series))
    finally:
        restart.join()
    assert time.monotonic() - started >= 2.0
    assert volume.hu.shape[0] == len(entry.series.instances)


def test_filters_select_studies_on_the_pacs(pacs) -> None:
    from screen.dicomweb import Filters

    studies = pacs.source().studies()
    assert len(studies) >= 2
    one = studies[0]
    only = pacs.source(filters=Filters(study_uids=(one.uid,))).studies()
    assert [s.uid for s in only] == [one.uid]
    entries = index_pacs(pacs.source(filters=Filters(study_uids=(one.uid,)))).entries
    assert entries and {e.series.first.study_instance_uid for e in entries} == {one.uid}
    dates = sorted({e.series.first.study_date for e in index_pacs(pacs.source()).entries})
    later = pacs.source(filters=Filters(since=dates[-1])).studies()
    assert later and len(later) < len(studies)
