"""What a sweep hands to people: review pages, DICOM for the PACS, and no patient identity
in anything that leaves when pseudonymisation is asked for."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pydicom
import pytest

from screen.index import index
from screen.pseudonym import create_key_file, find_identifiers
from screen.scan import ScanOptions, scan

pytest.importorskip("screen.review", reason="the review report writer is absent")


def _identifiers(archive: Path) -> set[str]:
    found: set[str] = set()
    for entry in index([archive], workers=1).entries:
        first = entry.series.first
        found |= {first.patient_id, first.patient_name, first.accession_number,
                  first.patient_birth_date}
    # Names are written family^given: each part alone is identifying too.
    found |= {part for value in list(found) for part in value.split("^") if len(part) >= 4}
    return {v for v in found if v and len(v) >= 4}


@pytest.fixture(scope="module")
def private_sweep(small_archive: Path, tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("private")
    key = create_key_file(folder / "key.bin")
    out = folder / "out" / "worklist.parquet"
    options = ScanOptions(workers=2, gpus=0, review_dir=folder / "out" / "review",
                          review_top=2, dicom_out=folder / "pacs", pseudonymize_key=key,
                          threshold=0.0)  # flag everything, so every kind of output is written
    summary = scan([small_archive / "archive"], out, options=options)
    return folder, out, summary


def test_no_identifier_reaches_any_output(small_archive: Path, private_sweep) -> None:
    folder, out, _ = private_sweep
    identifiers = _identifiers(small_archive / "archive")
    assert identifiers, "the archive should carry patient identifiers to hide"
    assert find_identifiers(out.parent, identifiers) == []
    rows = pq.read_table(out).to_pylist()
    assert all(r["patient_id"].startswith("P-") for r in rows)
    assert all(r["accession_number"] is None or r["accession_number"].startswith("A-")
               for r in rows)


def test_review_pages_exist_for_every_flagged_series(private_sweep) -> None:
    folder, out, summary = private_sweep
    review = out.parent / "review"
    assert (review / "index.html").is_file()
    pages = list((review / "series").glob("*.html"))
    assert len(pages) == summary.flagged > 0
    html = (review / "index.html").read_text()
    assert "http://" not in html and "https://" not in html


def test_dicom_for_the_pacs_keeps_real_identity(small_archive: Path, private_sweep) -> None:
    folder, _, summary = private_sweep
    sr = sorted((folder / "pacs").glob("*.sr.dcm"))
    seg = sorted((folder / "pacs").glob("*.seg.dcm"))
    assert len(sr) == len(seg) == summary.flagged
    ds = pydicom.dcmread(sr[0])
    assert ds.Modality == "SR" and not ds.PatientID.startswith("P-")
    assert ds.PatientID in _identifiers(small_archive / "archive")


def test_each_row_records_its_inputs_for_monitoring(private_sweep) -> None:
    from screen.tables import read_provenance

    _, out, summary = private_sweep
    rows = [r for r in pq.read_table(out).to_pylist() if r["status"] == "ok"]
    assert rows and all(r["slice_thickness_mm"] and r["scanner"] and r["convolution_kernel"]
                        for r in rows)
    # The phantoms' blood pool reads as one of the three phases, not as bone or air.
    assert all(r["contrast_phase"] in ("non_contrast", "portal_venous", "arterial") for r in rows)
    assert all(0.0 < r["aorta_hu"] < 500.0 for r in rows)
    provenance = read_provenance(out)
    assert provenance["eligible_by_tags"] == summary.eligible + provenance["rejected_by_content"]


def test_review_pages_show_the_final_rank_and_the_stack(private_sweep) -> None:
    _, out, _ = private_sweep
    rows = {r["series_key"]: r for r in pq.read_table(out).to_pylist()}
    pages = sorted((out.parent / "review" / "series").glob("*.html"))
    assert pages
    for page in pages:
        text = page.read_text()
        assert "<dt>Rank</dt><dd>—</dd>" not in text and 'id="stack-png"' in text
    assert {r["rank"] for r in rows.values() if r["flagged"]} >= {1}
