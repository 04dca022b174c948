"""Addresses and credentials of a PACS sweep: parsed once, refused clearly, secrets hidden."""

from __future__ import annotations

from pathlib import Path

import pytest

from screen.dicomweb.address import DimseAddress, PacsAddress, parse_auth
from screen.dicomweb.source import Filters
from screen.dicomweb.store import StoreTarget


def test_an_address_keeps_its_path_and_names_instances_by_wado_url() -> None:
    address = PacsAddress.parse("dicomweb+https://pacs.example.org:8443/dicom-web/")
    assert address.url == "https://pacs.example.org:8443/dicom-web"
    assert str(address) == "dicomweb+https://pacs.example.org:8443/dicom-web"
    assert address.instance("1.2", "1.2.3", "1.2.3.4") == (
        "https://pacs.example.org:8443/dicom-web/studies/1.2/series/1.2.3/instances/1.2.3.4")


@pytest.mark.parametrize("text, message", [
    ("dicomweb+ftp://pacs/dicom-web", "a DICOMweb address is dicomweb\\+http\\(s\\)://HOST/PATH"),
    ("dicomweb+https://user:secret@pacs/dicom-web", "give credentials with --auth"),
    ("https://pacs/dicom-web", "a DICOMweb address starts with dicomweb\\+"),
])
def test_a_bad_address_is_refused(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PacsAddress.parse(text)


def test_credentials_come_from_a_file_and_never_show(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("s3cret-value\n")
    basic = parse_auth(f"basic:screen:{secret}")
    assert (basic.kind, basic.user, basic.secret) == ("basic", "screen", "s3cret-value")
    assert "s3cret-value" not in repr(basic)
    token = parse_auth(f"token:{secret}")
    assert token.kind == "token" and "s3cret-value" not in repr(token.requests_auth())


@pytest.mark.parametrize("text, message", [
    ("screen:s3cret", "--auth is basic:USER:PASSWORD-FILE or token:TOKEN-FILE, not 'screen'"),
    ("basic:screen", "--auth basic needs basic:USER:PASSWORD-FILE"),
    ("basic:screen:/no/such/file", "cannot read the secret file /no/such/file"),
])
def test_bad_credentials_are_refused(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_auth(text)


def test_an_empty_secret_file_is_refused(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(ValueError, match="the secret file .* is empty"):
        parse_auth(f"token:{empty}")


def test_filters_check_their_dates_and_search_per_listed_study() -> None:
    with pytest.raises(ValueError, match="--since is a date as YYYYMMDD, got '2024-01-01'"):
        Filters(since="2024-01-01")
    with pytest.raises(ValueError, match="--since 20240201 is after --until 20240101"):
        Filters(since="20240201", until="20240101")
    queries = list(Filters(since="20240101", study_uids=("1.2", "1.3")).study_queries())
    assert queries == [
        {"ModalitiesInStudy": "CT", "StudyDate": "20240101-", "StudyInstanceUID": "1.2"},
        {"ModalitiesInStudy": "CT", "StudyDate": "20240101-", "StudyInstanceUID": "1.3"}]


def test_store_targets(tmp_path: Path) -> None:
    node = StoreTarget.parse("dimse://ORTHANC@127.0.0.1:4242").dimse
    assert node == DimseAddress("ORTHANC", "127.0.0.1", 4242)
    with pytest.raises(ValueError, match="--store-results is dicomweb\\+http\\(s\\)://HOST/PATH"):
        StoreTarget.parse("ftp://somewhere")
    with pytest.raises(ValueError, match="an AE title has 1 to 16 characters"):
        DimseAddress.parse("dimse://A-VERY-LONG-AE-TITLE-X@host:104")


def test_a_stow_target_takes_the_swept_pacs_credentials_only_on_the_same_origin(
        tmp_path: Path) -> None:
    from screen.dicomweb.connection import Connection

    secret = tmp_path / "password"
    secret.write_text("s3cret-value")
    swept = Connection(PacsAddress.parse("dicomweb+https://pacs.example.org/dicom-web"),
                       parse_auth(f"basic:screen:{secret}"))
    same = StoreTarget.parse("dicomweb+https://pacs.example.org/stow", like=swept)
    other = StoreTarget.parse("dicomweb+https://elsewhere.example.org/dicom-web", like=swept)
    assert same.stow.credentials == swept.credentials
    assert other.stow.credentials is None


def _said(result) -> str:
    return " ".join((result.output or "").split())


def test_pacs_options_are_refused_for_folders_and_bad_targets_before_work(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from screen.cli import app

    runner = CliRunner()
    folder = tmp_path / "archive"
    folder.mkdir()
    secret = tmp_path / "password"
    secret.write_text("s3cret-value")
    out = tmp_path / "out" / "worklist.parquet"
    result = runner.invoke(app, ["index", str(folder), "--auth", f"basic:screen:{secret}",
                                 "--out", str(out)])
    assert result.exit_code == 2
    assert "apply to a PACS (dicomweb+https://HOST/PATH) only" in _said(result)
    result = runner.invoke(app, ["scan", str(folder), "--since-last-run", "--out", str(out)])
    assert result.exit_code == 2
    assert "--since-last-run applies to a PACS (dicomweb+https://HOST/PATH) only" in _said(result)
    result = runner.invoke(app, ["scan", str(folder), "--store-results", "ftp://pacs",
                                 "--out", str(out)])
    assert result.exit_code == 2
    assert "--store-results is dicomweb+http(s)://HOST/PATH or dimse://AET@HOST:PORT" in \
        _said(result)
    result = runner.invoke(app, ["index", "dicomweb+ftp://pacs/x", "--out", str(out)])
    assert result.exit_code == 2 and "a DICOMweb address is dicomweb+http(s)://HOST/PATH" in \
        _said(result)
    assert not out.parent.exists()
