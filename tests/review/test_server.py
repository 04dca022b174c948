"""`screen review` as a user starts it, and what the server refuses to record."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from screen.review.server import ReviewServer


def _post(url: str, body: dict[str, object]) -> urllib.error.HTTPError | dict[str, object]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return json.loads(reply.read())
    except urllib.error.HTTPError as refused:
        return refused


def test_the_command_serves_the_report_at_an_address_with_a_key(review_report: Path) -> None:
    command = [sys.executable, "-m", "screen", "review", str(review_report), "--reviewer", "dr-west"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    server = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env)
    try:
        said = ""
        deadline = time.monotonic() + 60
        while "http://" not in said and time.monotonic() < deadline:
            said += server.stderr.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+/[\w-]{20,}/index\.html", said)
        assert url, said
        with urllib.request.urlopen(url.group(0), timeout=10) as page:
            assert page.status == 200 and b"Pancreas screening worklist" in page.read()
        with pytest.raises(urllib.error.HTTPError, match="403"):
            urllib.request.urlopen(url.group(0).rsplit("/", 2)[0] + "/index.html", timeout=10)
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=30)
    assert server.returncode == 0


def test_only_decisions_on_series_of_the_report_are_recorded(review_report: Path, lesion_case) -> None:
    with ReviewServer(review_report, "dr-east") as server:
        post = server.url.replace("index.html", "decision")
        refused = _post(post, {"series_key": "not-a-series", "decision": "agree"})
        assert isinstance(refused, urllib.error.HTTPError) and refused.code == 400
        assert "is not in this report" in refused.read().decode()
        refused = _post(post, {"series_key": lesion_case.series.key, "decision": "probably"})
        assert isinstance(refused, urllib.error.HTTPError) and refused.code == 400
        assert "agree, disagree or unsure" in refused.read().decode()
        recorded = _post(post, {"series_key": lesion_case.series.key, "decision": "unsure",
                                "note": "needs the arterial phase"})
        assert recorded["reviewer"] == "dr-east" and recorded["decision"] == "unsure"
        with pytest.raises(urllib.error.HTTPError, match="404"):
            urllib.request.urlopen(server.url.replace("index.html", "../../etc/passwd"), timeout=10)
        with pytest.raises(urllib.error.HTTPError, match="404"):
            urllib.request.urlopen(server.url.replace("index.html", ".decisions.lock"), timeout=10)


def test_a_folder_without_a_report_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="is not a review report"):
        ReviewServer(tmp_path, "dr-east")


def test_a_viewer_link_that_would_carry_the_real_accession_is_refused_before_any_work(
        tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from screen.cli import app

    archive = tmp_path / "archive"
    archive.mkdir()
    key = tmp_path / "key.bin"
    done = CliRunner().invoke(app, [
        "scan", str(archive), "--out", str(tmp_path / "out" / "worklist.parquet"),
        "--review-dir", str(tmp_path / "review"), "--pseudonymize", "--pseudonymize-key", str(key),
        "--viewer-url", "https://pacs.example/open?acc={accession}"])
    assert done.exit_code == 2
    assert "cannot be used with --pseudonymize" in " ".join(done.output.split())
    assert not key.exists() and not (tmp_path / "out").exists() and not (tmp_path / "review").exists()
    done = CliRunner().invoke(app, ["scan", str(archive), "--viewer-url", "https://x/?s={study}"])
    assert done.exit_code == 2 and "--viewer-url needs --review-dir" in done.output
