"""Archives as hospitals have them at their worst: Latin-1 folder names, huge sparse files
with a DICM marker, headers that never end, outputs that cannot be written."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from screen import paths
from screen.cli import app
from screen.headers import HEADER_LIMIT_BYTES, TIME_LIMIT_S, read_instance
from screen.index import index
from screen.records import FileError, Instance
from tests.conftest import need

LATIN1_FOLDER = b"M\xfcller"  # what an old export names a patient folder, in Latin-1


@dataclass(frozen=True)
class Ran:
    returncode: int
    stderr: str  # all the command said, progress and summary included


def _screen(*args: str) -> Ran:
    """The command line, run in this process as a user would run it."""
    result = CliRunner().invoke(app, list(args))
    said = result.output
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        said += "Traceback: " + repr(result.exception)
    return Ran(result.exit_code, said)


def _copy_series(source: Path, archive: Path, folder: bytes) -> bytes:
    """Copy a real series into ``archive`` under a folder name given as bytes."""
    target = os.path.join(os.fsencode(archive), folder)
    shutil.copytree(os.fsencode(source), target)
    return target


def test_a_latin1_patient_folder_is_indexed_and_kept_exactly(corpus: Path, tmp_path: Path) -> None:
    archive = tmp_path / "x"
    archive.mkdir()
    folder = _copy_series(need(corpus / "dcm_qa_ct/In/GE"), archive, LATIN1_FOLDER)
    out = tmp_path / "out" / "inventory.parquet"
    run = _screen("index", str(archive), "--out", str(out), "--workers", "1")
    assert run.returncode == 0, run.stderr[-2000:]
    assert "Traceback" not in run.stderr
    [row] = pq.read_table(out).to_pylist()
    assert row["n_instances"] == len(os.listdir(folder)) == 28
    # The text form in the table gives back the bytes on disk, and so the file itself.
    written = {paths.to_bytes(p) for p in row["files"]}
    assert written == {os.path.join(folder, name) for name in os.listdir(folder)}
    assert all(os.path.isfile(paths.from_text(p)) for p in row["files"])
    assert all("M\\xfcller" in p for p in row["files"])


def test_path_text_form_is_lossless() -> None:
    for raw in [b"/a/M\xfcller/IM1", b"/plain/IM1", "/a/Müller/x".encode(), b"/a/back\\slash\\x41",
                b"/a/\\xfc literal/\xff\xfe", b"/a/\\\\double"]:
        path = os.fsdecode(raw)
        text = paths.to_text(path)
        text.encode("utf-8")  # always valid UTF-8, as Parquet needs
        assert paths.to_bytes(text) == raw
    assert paths.to_text("/plain/IM1") == "/plain/IM1"
    assert paths.readable(paths.to_text(os.fsdecode(b"M\xfcller"))) == "Müller"


@pytest.fixture()
def sparse_dicm(tmp_path: Path) -> Path:
    """20 GB of nothing with a DICM marker at byte 128, as `truncate` and `dd` make it."""
    (tmp_path / "archive").mkdir()
    path = tmp_path / "archive" / "x.dcm"
    subprocess.run(["truncate", "-s", "20G", str(path)], check=True)
    with open(path, "r+b") as f:
        f.seek(128)
        f.write(b"DICM")
    if os.stat(path).st_blocks * 512 > 1 << 20:
        pytest.skip("this file system does not keep sparse files sparse")
    return path


def test_a_huge_sparse_file_with_a_dicm_marker_is_refused_quickly(sparse_dicm: Path) -> None:
    started = time.monotonic()
    outcome = read_instance(str(sparse_dicm))
    assert isinstance(outcome, FileError)
    assert outcome.error.startswith("header not read: over 64 KiB of zero bytes in the header")
    assert time.monotonic() - started < TIME_LIMIT_S


def test_a_huge_sparse_file_goes_to_the_errors_of_an_index(sparse_dicm: Path,
                                                           tmp_path: Path) -> None:
    out = tmp_path / "inv.parquet"  # outside the archive: outputs inside it are refused
    run = _screen("index", str(sparse_dicm.parent), "--out", str(out), "--workers", "1")
    assert run.returncode == 0, run.stderr[-2000:]
    [error] = pq.read_table(out.with_name("errors.parquet")).to_pylist()
    assert error["path"] == str(sparse_dicm) and error["stage"] == "header"
    assert "sparse or zero-filled" in error["error"]


def _meta_end(data: bytes) -> int:
    """Where the file meta group of an explicit little-endian file ends."""
    pos = 132
    while data[pos:pos + 2] == b"\x02\x00":
        vr = data[pos + 4:pos + 6]
        if vr in (b"OB", b"UN", b"UT", b"SQ"):
            pos += 12 + int.from_bytes(data[pos + 8:pos + 12], "little")
        else:
            pos += 8 + int.from_bytes(data[pos + 6:pos + 8], "little")
    return pos


def endless_header(source: Path, target: Path, *, element_bytes: int, total: int) -> Path:
    """A real file meta header followed by ``total`` bytes of private elements: a header that
    never reaches the image."""
    data = source.read_bytes()
    value = b"\x20" * (element_bytes - 12)
    element = b"\x09\x00\x00\x10UN\x00\x00" + len(value).to_bytes(4, "little") + value
    with open(target, "wb") as f:
        f.write(data[:_meta_end(data)])
        f.write(element * (total // len(element)))
    return target


def test_a_header_that_never_ends_stops_at_the_size_limit(corpus: Path, tmp_path: Path) -> None:
    source = need(corpus / "dcm_qa_ct/In/GE/01.dcm")
    path = endless_header(source, tmp_path / "long", element_bytes=60_000,
                          total=HEADER_LIMIT_BYTES + (1 << 20))
    outcome = read_instance(str(path))
    assert isinstance(outcome, FileError)
    assert outcome.error == "header not read: no end of the header within its first 8 MiB (limit)"


def test_a_header_too_slow_to_read_stops_at_the_time_limit(corpus: Path, tmp_path: Path) -> None:
    source = need(corpus / "dcm_qa_ct/In/GE/01.dcm")
    # Tiny elements cost the parser most per byte: on most machines it runs out of time
    # before it reaches the size limit; either way it stops, and soon.
    path = endless_header(source, tmp_path / "slow", element_bytes=12,
                          total=HEADER_LIMIT_BYTES + (4 << 20))
    started = time.monotonic()
    outcome = read_instance(str(path))
    assert isinstance(outcome, FileError)
    assert outcome.error.startswith("header not read: ")
    assert time.monotonic() - started < TIME_LIMIT_S + 2


def test_a_real_series_still_reads_whole(corpus: Path) -> None:
    folder = need(corpus / "dcm_qa_ct/In/GE")
    result = index([folder], workers=1)
    assert not result.errors and len(result.entries[0].series.instances) == 28
    assert all(isinstance(read_instance(str(p)), Instance) for p in sorted(folder.iterdir()))


def test_index_to_an_unwritable_out_fails_before_any_work(corpus: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a folder")
    out = blocker / "inventory.parquet"
    started = time.monotonic()
    run = _screen("index", str(need(corpus / "dcm_qa_ct/In/GE")), "--out", str(out))
    assert run.returncode == 2
    assert "Traceback" not in run.stderr
    said = " ".join(run.stderr.replace("│", " ").split())
    assert "cannot write" in said and "reading headers" not in said
    assert time.monotonic() - started < 60


def test_links_out_of_the_archive_are_followed_only_when_asked(corpus: Path,
                                                                tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    archive.mkdir()
    (archive / "series").symlink_to(need(corpus / "dcm_qa_ct/In/GE"))
    (archive / "zero").symlink_to("/dev/zero")
    out = tmp_path / "inv.parquet"
    run = _screen("index", str(archive), "--out", str(out), "--workers", "1")
    assert run.returncode == 0, run.stderr[-2000:]
    errors = {Path(r["path"]).name: r["error"] for r in
              pq.read_table(tmp_path / "errors.parquet").to_pylist()}
    assert errors["series"].startswith("symbolic link to a place outside the archive")
    assert errors["zero"] == "symbolic link to a special file (device, socket or pipe), not read"
    assert pq.read_table(out).num_rows == 0
    run = _screen("index", str(archive), "--out", str(out), "--workers", "1", "--follow-links")
    assert run.returncode == 0, run.stderr[-2000:]
    assert pq.read_table(out)["n_instances"].to_pylist() == [28]
