"""Keyed pseudonyms: stable, key-dependent, applied to rows, tables and paths, and checkable."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from screen import tables
from screen.pseudonym import (
    KEY_BYTES,
    KeyFileError,
    Pseudonymizer,
    create_key_file,
    find_identifiers,
    read_key_file,
)
from screen.worklist_row import SCHEMA, WorklistRow

KEY_A = bytes(range(32))
KEY_B = bytes(range(1, 33))


def test_key_files_are_created_private_and_read_back(tmp_path: Path) -> None:
    path = create_key_file(tmp_path / "keys" / "screen.key")
    assert (path.stat().st_mode & 0o777) == 0o600
    key = read_key_file(path)
    assert len(key) == KEY_BYTES
    assert re.fullmatch(r"[0-9a-f]{64}\n", path.read_text())
    with pytest.raises(FileExistsError, match="already exists"):
        create_key_file(path)
    assert Pseudonymizer.from_key_file(path).patient_id("123") == Pseudonymizer(key).patient_id("123")


def test_missing_and_short_keys_are_refused(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="key file .* not found"):
        read_key_file(tmp_path / "absent.key")
    short = tmp_path / "short.key"
    short.write_text("00ff" * 4)
    with pytest.raises(KeyFileError, match="is 8 bytes; at least 32"):
        Pseudonymizer.from_key_file(short)
    raw = tmp_path / "raw.key"
    raw.write_bytes(bytes(range(200, 240)))  # 40 raw bytes, not hex text: used as they are
    assert read_key_file(raw) == bytes(range(200, 240))
    with pytest.raises(TypeError, match="must be bytes"):
        Pseudonymizer("x" * 40)  # type: ignore[arg-type]


def test_pseudonyms_are_stable_prefixed_and_depend_on_the_key() -> None:
    a1, a2, b = Pseudonymizer(KEY_A), Pseudonymizer(KEY_A), Pseudonymizer(KEY_B)
    assert a1.patient_id("12345678") == a2.patient_id("12345678")
    assert re.fullmatch(r"P-[0-9a-f]{16}", a1.patient_id("12345678") or "")
    assert re.fullmatch(r"A-[0-9a-f]{16}", a1.accession_number("ACC99") or "")
    assert (a1.patient_name("DOE^JOHN") or "").startswith("N-")
    assert (a1.birth_date("19500101") or "").startswith("B-")
    assert a1.patient_id("12345678") != b.patient_id("12345678")
    # The same value as another field is another pseudonym: fields cannot be linked.
    assert a1.patient_id("777")[2:] != a1.accession_number("777")[2:]  # type: ignore[index]
    assert a1.patient_id("") == "" and a1.patient_id(None) is None
    once = a1.patient_id("12345678")
    assert a1.patient_id(once) == once  # applying twice changes nothing
    with pytest.raises(ValueError, match="unknown identifier field 'ssn'"):
        a1.pseudonym("ssn", "1")


def test_a_folder_named_after_the_patient_is_rewritten() -> None:
    p = Pseudonymizer(KEY_A)
    pid, acc = p.patient_id("12345678"), p.accession_number("ACC4711")
    p.patient_name("DOE^JOHN")
    path = "/exports/pacs/12345678/ACC4711_CT/IM00001.dcm"
    assert p.pseudonymize_path(path) == f"/exports/pacs/{pid}/{acc}/IM00001.dcm"
    renamed = p.pseudonymize_path("/exports/Doe_John_12345678/series 2/1.dcm")
    assert "Doe" not in renamed and "12345678" not in renamed and renamed.endswith("/series 2/1.dcm")
    assert p.pseudonymize_path("/exports/other/IM1") == "/exports/other/IM1"


def test_short_identifiers_match_only_whole_tokens() -> None:
    p = Pseudonymizer(KEY_A)
    pid = p.patient_id("42")
    assert p.pseudonymize_path("/data/42/4213/IM1") == f"/data/{pid}/4213/IM1"
    assert p.pseudonymize_text("patient 42 in 4242") == f"patient {pid} in 4242"


def _worklist_rows() -> list[dict[str, object]]:
    base = {name: None for name in SCHEMA.names}
    return [
        base | {"rank": 1, "score": 0.9, "flagged": True, "patient_id": "12345678",
                "accession_number": "ACC4711", "series_key": "1.2.3", "status": "ok"},
        base | {"patient_id": "87654321", "accession_number": "ACC0815", "series_key": "1.2.4",
                "status": "error", "error": "could not read /exports/87654321/IM1: truncated"},
    ]


def test_tables_rows_and_errors_are_pseudonymised(tmp_path: Path) -> None:
    p = Pseudonymizer(KEY_A)
    worklist = pa.Table.from_pylist(_worklist_rows(), schema=SCHEMA)
    out = p.pseudonymize_table(worklist)
    assert out.schema == worklist.schema and out.num_rows == 2
    assert out["patient_id"].to_pylist() == [p.patient_id("12345678"), p.patient_id("87654321")]
    assert "87654321" not in out["error"][1].as_py()
    errors = pa.Table.from_pylist(
        [{"path": "/exports/12345678/IM9", "stage": "header", "error": "bad file /exports/12345678/IM9"}],
        schema=tables.ERRORS_SCHEMA)
    scrubbed = p.pseudonymize_table(errors)  # rows with paths only: identifiers seen before
    assert scrubbed["path"][0].as_py() == f"/exports/{p.patient_id('12345678')}/IM9"
    assert "12345678" not in scrubbed["error"][0].as_py()
    row = p.pseudonymize_row({"files": ["/e/12345678/a", "/e/x/b"], "n_instances": 2})
    assert row == {"files": [f"/e/{p.patient_id('12345678')}/a", "/e/x/b"], "n_instances": 2}


def test_reidentification_recomputes_pseudonyms_of_known_ids() -> None:
    p = Pseudonymizer(KEY_A)
    table = p.pseudonymize_table(pa.Table.from_pylist(_worklist_rows(), schema=SCHEMA))
    back = Pseudonymizer(KEY_A).reidentify_table(table, patient_ids=["12345678", "99999999"],
                                                 accession_numbers=["ACC4711"])
    assert back["patient_id"].to_pylist() == ["12345678", p.patient_id("87654321")]
    assert back["accession_number"].to_pylist() == ["ACC4711", p.accession_number("ACC0815")]
    wrong = Pseudonymizer(KEY_B).reidentify_table(table, patient_ids=["12345678"])
    assert wrong["patient_id"].to_pylist() == table["patient_id"].to_pylist()


def test_find_identifiers_searches_names_bytes_and_parquet_values(tmp_path: Path) -> None:
    (tmp_path / "review" / "12345678").mkdir(parents=True)
    (tmp_path / "review" / "12345678" / "page.html").write_text("<p>nothing here</p>")
    (tmp_path / "review" / "clean.html").write_bytes(b"\x00\x01 patient acc4711 \xff")
    table = pa.Table.from_pylist(_worklist_rows(), schema=SCHEMA)
    pq.write_table(table, tmp_path / "worklist.parquet", compression="zstd")
    hits = find_identifiers(tmp_path, ["12345678", "ACC4711", "NOT-THERE"])
    where = {(h.path.name, h.identifier, h.where.split(" ")[0]) for h in hits}
    assert ("page.html", "12345678", "file") in where
    assert ("clean.html", "ACC4711", "byte") in where
    assert ("worklist.parquet", "12345678", "column") in where
    assert not [h for h in hits if h.identifier == "NOT-THERE"]

    # After pseudonymisation nothing is left to find.
    p = Pseudonymizer(KEY_A)
    clean = tmp_path / "clean"
    clean.mkdir()
    pq.write_table(p.pseudonymize_table(table), clean / "worklist.parquet", compression="zstd")
    assert find_identifiers(clean, p.seen) == []
    with pytest.raises(ValueError, match="at least one non-empty identifier"):
        find_identifiers(clean, ["", " "])


def _known_patient() -> Pseudonymizer:
    p = Pseudonymizer(KEY_A)
    p.observe({"patient_id": "HO1270000", "patient_name": "MÜLLER^JÖRG",
               "accession_number": "ACC-0815", "birth_date": "19500101"})
    return p


@pytest.mark.parametrize("folder", ["MULLER^JORG", "muller_jorg", "Mueller Joerg", "JORG MULLER",
                                    "Müller", "M\\xfcller", "ACC0815", "acc_0815_ct",
                                    "ho1270000", "HO-127-0000", "1950-01-01"])
def test_variants_of_an_identifier_in_folder_names_are_replaced(folder: str) -> None:
    p = _known_patient()
    written = p.pseudonymize_path(f"/exports/{folder}/IM00055.dcm")
    assert re.fullmatch(r"/exports/[PNBA]-[0-9a-f]{16}(_[PNBA]-[0-9a-f]{16})*/IM00055.dcm",
                        written), written


def test_latin1_bytes_in_a_folder_name_are_read_as_the_name_they_spell() -> None:
    import os

    p = _known_patient()
    raw = os.fsdecode(b"/exports/M\xfcller/IM1")  # as the crawl holds it
    assert p.pseudonymize_path(raw) == f"/exports/{p.patient_name('MÜLLER^JÖRG')}/IM1"


def test_other_folders_are_left_alone() -> None:
    p = _known_patient()
    for path in ["/exports/other/CT/IM00055.dcm", "/exports/SE001/IM1", "/exports/MULLE/IM1",
                 "/exports/HO127/IM1"]:
        assert p.pseudonymize_path(path) == path


def test_a_path_reads_the_same_in_a_message_as_in_the_inventory() -> None:
    p = _known_patient()
    path = "/exports/muller jorg/ACC0815/series 2/IM00055.dcm"
    written = p.pseudonymize_path(path)
    assert p.pseudonymize_text(f"duplicate of SOP instance 1.2.3; kept the copy at {path}") == \
        f"duplicate of SOP instance 1.2.3; kept the copy at {written}"
    assert p.pseudonymize_text(f"{path}: pixel data of JPEG 2000 is damaged: ValueError") == \
        f"{written}: pixel data of JPEG 2000 is damaged: ValueError"
    name, pid = p.patient_name("MÜLLER^JÖRG"), p.patient_id("HO1270000")
    assert p.pseudonymize_text("patient MULLER, JORG (HO1270000)") == f"patient {name} {name} {pid}"


def test_the_key_fingerprint_names_the_key_and_not_its_bytes() -> None:
    a, b = Pseudonymizer(KEY_A), Pseudonymizer(KEY_B)
    assert re.fullmatch(r"K-[0-9a-f]{16}", a.fingerprint)
    assert a.fingerprint == Pseudonymizer(KEY_A).fingerprint != b.fingerprint
    assert KEY_A.hex()[:16] not in a.fingerprint


def test_log_messages_are_pseudonymised_in_every_logger(caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from screen.pseudonym import hide_in_logs

    p = _known_patient()
    hide_in_logs(p)
    try:
        with caplog.at_level(logging.WARNING):
            logging.getLogger("screen.volume.load").warning(
                "%s; leaving it out of series %s",
                "/exports/HO1270000/MULLER^JORG/IM00055.dcm: pixel data is damaged", "1.2.3")
            try:
                raise ValueError("cannot read /exports/ho1270000/IM1")
            except ValueError:
                logging.getLogger("some.library").exception("failed")
    finally:
        hide_in_logs(None)
    text = caplog.text
    assert f"/exports/{p.patient_id('HO1270000')}/{p.patient_name('MÜLLER^JÖRG')}/IM00055.dcm" \
        in text
    assert "leaving it out of series 1.2.3" in text
    assert "HO1270000".lower() not in text.lower() and "MULLER" not in text.upper()
    # Stopped again, messages pass as they are.
    with caplog.at_level(logging.WARNING):
        logging.getLogger("screen").warning("plain /exports/HO1270000")
    assert "plain /exports/HO1270000" in caplog.text


def _part_rows() -> list[WorklistRow]:
    base = {name: None for name in SCHEMA.names}
    return [WorklistRow.from_dict(base | {
        "score": 0.5, "patient_id": "P-0000000000000000", "series_key": "1.2.3", "status": "ok",
        "model_sha256": "abc"})]


@pytest.mark.parametrize("first, second, words", [
    (None, KEY_A, "written without pseudonymisation, and this run pseudonymises with key K-"),
    (KEY_A, None, "pseudonymised with key K-.*, and this run does not pseudonymise"),
    (KEY_A, KEY_B, "pseudonymised with key K-.*, and this run pseudonymises with key K-"),
])
def test_parts_written_otherwise_are_never_resumed(tmp_path: Path, first, second, words) -> None:
    from screen.worklist import PartStore

    out = tmp_path / "worklist.parquet"
    PartStore(out, Pseudonymizer(first) if first else None).write(_part_rows())
    again = PartStore(out, Pseudonymizer(second) if second else None)
    with pytest.raises(ValueError, match=f"{words}.*: resuming would mix them; run with "
                                         "--no-resume, or write to another --out"):
        again.done("abc")
    same = PartStore(out, Pseudonymizer(first) if first else None)
    assert same.done("abc") == {"1.2.3"}
    again.clear()  # what --no-resume does: afresh, then nothing is mixed
    assert again.done("abc") == set()


def test_private_parts_keep_no_raw_command_line(tmp_path: Path, monkeypatch) -> None:
    import sys

    from screen.worklist import PartStore

    p = _known_patient()
    monkeypatch.setattr(sys, "argv", ["screen", "scan", "/exports/MULLER^JORG", "--out",
                                      str(tmp_path / "worklist.parquet")])
    store = PartStore(tmp_path / "worklist.parquet", p)
    store.write(_part_rows())
    [part] = store.folder.glob("part-*.parquet")
    provenance = tables.read_provenance(part)
    assert provenance["pseudonymized_with"] == p.fingerprint
    assert provenance["command"][2] == f"/exports/{p.patient_name('MÜLLER^JÖRG')}"
    assert find_identifiers(store.folder, ["MULLER", "JORG", "HO1270000"]) == []


# -- a whole pseudonymised sweep, as the hospital runs it ---------------------------------------

VARIANTS = ["HO1270000", "HO-127-0000", "MULLER", "MÜLLER", "MUELLER", "JORG", "JÖRG",
            "ACC0815", "ACC-0815", "M\\xfcller"]


@pytest.fixture(scope="module")
def named_archive(small_archive: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One abdominal series of a patient MÜLLER^JÖRG (HO1270000, ACC-0815) in folders that
    spell those identifiers other ways (one in Latin-1 bytes), with a damaged slice, a second
    copy of one, and junk."""
    import csv

    import pydicom

    with open(small_archive / "manifest.csv", newline="") as f:
        [first, *_] = [r for r in csv.DictReader(f) if r["kind"] == "abdominal_ct"]
    source = small_archive / "archive" / first["folders"].split(";")[0]
    archive = tmp_path_factory.mktemp("named") / "archive"
    # The series itself lies under a Latin-1 folder name (not UTF-8: kept as bytes).
    series = Path(os.fsdecode(os.path.join(os.fsencode(archive / "MULLER^JORG"),
                                           b"M\xfcller ACC0815", b"SE001")))
    series.mkdir(parents=True)
    written = []
    for path in sorted(source.iterdir()):
        try:
            ds = pydicom.dcmread(path)
        except pydicom.errors.InvalidDicomError:
            continue
        if ds.get("SeriesInstanceUID") != first["series_instance_uid"]:
            continue
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.PatientName, ds.PatientID, ds.AccessionNumber = "MÜLLER^JÖRG", "HO1270000", "ACC-0815"
        ds.save_as(series / path.name)
        written.append(series / path.name)
    middle = written[len(written) // 2]
    middle.write_bytes(middle.read_bytes()[:-3000])  # pixel data cut short, as by a transfer
    copy = archive / "HO-127-0000" / "IM1.dcm"
    copy.parent.mkdir()
    copy.write_bytes(written[3].read_bytes()[:-10])  # a second, shorter copy of one slice
    (archive / "muller_jorg").mkdir()
    (archive / "muller_jorg" / "notes.txt").write_text("not an image")
    return archive


def _scan(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "screen", "scan", *args, "--workers", "1",
                           "--gpus", "0"], capture_output=True, text=True, timeout=600)


def test_a_pseudonymised_sweep_names_no_patient_anywhere(named_archive: Path, package,
                                                         tmp_path: Path) -> None:
    out = tmp_path / "out" / "worklist.parquet"
    key = tmp_path / "key"
    run = _scan(str(named_archive), "--out", str(out), "--pseudonymize", "--pseudonymize-key",
                str(key))
    assert run.returncode == 0, run.stderr[-3000:]
    # stderr (progress, warnings from the workers, the summary) names no one.
    for variant in VARIANTS:
        assert variant.lower() not in run.stderr.lower(), variant
    if "damaged" in run.stderr:  # the worker's warning names the slice by its private path
        assert "/P-" in run.stderr or "/N-" in run.stderr
    # Nor does any output: tables, their metadata, the part files.
    assert find_identifiers(out.parent, VARIANTS) == []
    errors = pq.read_table(out.parent / "errors.parquet").to_pylist()
    assert {e["stage"] for e in errors} >= {"header", "group"}
    kept = next(e for e in errors if "kept the copy at" in e["error"])
    inventory_paths = {p for r in pq.read_table(out.parent / "inventory.parquet")["files"]
                       .to_pylist() for p in r}
    assert kept["error"].rsplit("kept the copy at ", 1)[1] in inventory_paths
    # The series under the Latin-1 folder was screened, and scored.
    [row] = pq.read_table(out).to_pylist()
    assert row["status"] == "ok", row["error"]

    # The same --out without pseudonymisation would mix real IDs into these rows: refused.
    plain = _scan(str(named_archive), "--out", str(out))
    assert plain.returncode == 2
    said = " ".join(plain.stderr.split())  # as one line, however the terminal wrapped it
    assert "pseudonymised with key K-" in said
    assert "resuming would mix them; run with --no-resume, or write to another --out" in said
    assert "Traceback" not in plain.stderr


def test_names_in_other_scripts_are_matched_too() -> None:
    p = Pseudonymizer(KEY_A)
    name = p.patient_name("ИВАНОВ^ИВАН")
    assert p.pseudonymize_path("/exports/иванов_иван/IM1") == f"/exports/{name}/IM1"
    assert p.pseudonymize_path("/exports/ПЕТРОВ/IM1") == "/exports/ПЕТРОВ/IM1"
