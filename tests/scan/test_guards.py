"""What a sweep refuses before any work: outputs inside an archive, an --out another sweep
holds; and who may connect to its cluster."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from screen.cli import app
from screen.outputs import LockedError, OutputLock, refuse_inside_archives

runner = CliRunner()


def said(result) -> str:
    """The output without the line breaks and frames rich puts into long messages."""
    return "".join(result.output.replace("│", " ").split())


def words(text: str) -> str:
    return "".join(text.split())


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    folder = tmp_path / "archive"
    (folder / "patient").mkdir(parents=True)
    (folder / "patient" / "IM1.dcm").write_bytes(b"\0" * 132)
    return folder


@pytest.mark.parametrize("option", ["--out", "--inventory", "--errors", "--review-dir",
                                    "--dicom-out"])
def test_scan_refuses_any_output_inside_the_archive(tmp_path: Path, archive: Path,
                                                    option: str) -> None:
    # Issue reproduction: outputs under an archive root were written into the archive, and
    # the next sweep crawled its own SR and SEG.
    inside = archive / "patient" / ("w.parquet" if option in ("--out", "--inventory",
                                                              "--errors") else "dir")
    args = ["scan", str(archive), "--out", str(tmp_path / "w.parquet"), option, str(inside)]
    before = sorted(p.name for p in archive.rglob("*"))
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert words(f"{option} {inside} is inside the archive {archive}") in said(result)
    assert result.output.startswith("error:") and result.output.count("error:") == 1
    assert sorted(p.name for p in archive.rglob("*")) == before
    assert not (tmp_path / "w.parquet").exists() and not (tmp_path / "inventory.parquet").exists()


def test_a_link_into_the_archive_is_seen_through(tmp_path: Path, archive: Path) -> None:
    (tmp_path / "results").symlink_to(archive / "patient")
    out = tmp_path / "results" / "w.parquet"
    result = runner.invoke(app, ["scan", str(archive), "--out", str(out)])
    assert result.exit_code == 2 and words("is inside the archive") in said(result)
    linked = tmp_path / "linked-archive"
    linked.symlink_to(archive)
    result = runner.invoke(app, ["index", str(linked), "--out", str(archive / "inv.parquet")])
    assert result.exit_code == 2
    assert words(f"--out {archive / 'inv.parquet'} is inside the archive {linked}") in \
        said(result)
    assert not (archive / "inv.parquet").exists()


def test_outputs_beside_the_archive_are_fine(tmp_path: Path, archive: Path) -> None:
    # A sibling whose name starts like the archive's is not inside it.
    refuse_inside_archives([archive], {"--out": tmp_path / "archive2" / "w.parquet",
                                       "--review-dir": tmp_path / "review", "--dicom-out": None})
    with pytest.raises(ValueError, match="--out .* is inside the archive"):
        refuse_inside_archives([archive], {"--out": archive})


_HOLD = """
import sys, time
from screen.outputs import OutputLock
with OutputLock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(120)
"""


def _holder(out: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", _HOLD, str(out)], stdout=subprocess.PIPE,
                            text=True, env=dict(os.environ))
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_the_lock_names_the_sweep_that_holds_it(tmp_path: Path) -> None:
    out = tmp_path / "w.parquet"
    holder = _holder(out)
    try:
        with pytest.raises(LockedError, match=rf"w\.parquet is in use by another sweep \(pid "
                                              rf"{holder.pid} on {socket.gethostname()}, since"):
            with OutputLock(out):
                pass
    finally:
        holder.terminate()
        holder.wait(timeout=30)
    with OutputLock(out) as lock:  # free again once its holder has ended
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()
    assert not lock.path.exists()  # released and removed on exit


def test_a_lock_left_by_a_killed_sweep_is_stale_and_taken_over(tmp_path: Path) -> None:
    out = tmp_path / "w.parquet"
    holder = _holder(out)
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=30)
    assert (tmp_path / "w.parquet.lock").exists()  # nobody removed it
    with OutputLock(out) as lock:
        assert lock.stale is not None and lock.stale.pid == holder.pid


def test_the_local_cluster_refuses_clients_without_its_certificate() -> None:
    # Issue reproduction: another account could connect to 127.0.0.1:<port> and run code as
    # the sweep's user.
    from distributed import Client
    from distributed.security import Security

    from screen.cluster import connect

    with connect(scheduler=None, cpu_workers=1, gpus=()) as client:
        address = client.scheduler.address
        assert address.startswith("tls://127.0.0.1:")
        assert client.submit(sum, [1, 2]).result() == 3  # its own client and worker do connect
        # A plain client, and one speaking TLS with a certificate of its own.
        for attempt, security in ((address.replace("tls://", "tcp://"), None),
                                  (address, Security.temporary())):
            with pytest.raises((OSError, TimeoutError)):
                Client(attempt, security=security, timeout="5s").close()
        assert client.submit(sum, [3, 4]).result() == 7


def test_a_site_cluster_is_reached_with_its_security_file(tmp_path: Path) -> None:
    from distributed.security import Security

    from screen.cluster import connect, site_security

    # A site's certificates, as files (one self-signed pair serves every role here).
    temporary = Security.temporary()
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text(temporary.tls_ca_file)
    key.write_text(temporary.tls_client_key)
    config = tmp_path / "security.yaml"
    config.write_text(f"distributed:\n  comm:\n    tls:\n      ca-file: {cert}\n"
                      f"      client:\n        cert: {cert}\n        key: {key}\n")
    scheduler_file = tmp_path / "scheduler.json"
    scheduler = subprocess.Popen(
        [sys.executable, "-m", "dask", "scheduler", "--host", "127.0.0.1", "--port", "0",
         "--protocol", "tls", "--tls-ca-file", str(cert), "--tls-cert", str(cert),
         "--tls-key", str(key), "--no-dashboard", "--scheduler-file", str(scheduler_file)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not scheduler_file.exists():
            assert time.monotonic() < deadline and scheduler.poll() is None
            time.sleep(0.2)
        address = json.loads(scheduler_file.read_text())["address"]
        with connect(scheduler=address, cpu_workers=1, gpus=(),
                     security=site_security(config)) as client:
            assert client.scheduler_info()["address"] == address
    finally:
        scheduler.terminate()
        scheduler.wait(timeout=30)

    config.write_text("distributed:\n  comm:\n    tls:\n      ca-file: /nowhere.pem\n")
    with pytest.raises(ValueError, match=r"security\.yaml: distributed\.comm\.tls\.ca-file "
                                         r"/nowhere\.pem is not a file"):
        site_security(config)
    config.write_text("distributed: [\n")
    with pytest.raises(ValueError, match=r"security\.yaml: .*malformed"):
        site_security(config)


def test_a_new_key_file_is_not_created_inside_the_archive(tmp_path: Path, archive: Path) -> None:
    key = archive / "key.bin"
    result = runner.invoke(app, ["scan", str(archive), "--out", str(tmp_path / "w.parquet"),
                                 "--pseudonymize", "--pseudonymize-key", str(key)])
    assert result.exit_code == 2
    assert words(f"--pseudonymize-key {key} is inside the archive") in said(result)
    assert not key.exists()
