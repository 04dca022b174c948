"""The index on real, odd DICOM files: everything placed, nothing crashes, the right calls."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow.parquet as pq
import pydicom.data
import pytest

from screen.index import index, inventory_table, write_outputs
from screen.select import load_rules
from tests.conftest import need

PYDICOM_FILES = Path(pydicom.data.__file__).parent / "test_files"


def _all_files(root: Path) -> set[str]:
    return {os.path.join(d, f) for d, _, files in os.walk(root) for f in files}


@pytest.fixture(scope="module")
def corpus_result(corpus: Path):
    return index([corpus, PYDICOM_FILES], workers=2)


def _placed(result) -> set[str]:
    in_series = {i.path for e in result.entries for i in e.series.instances}
    in_errors = {e.path for e in result.errors}
    assert not in_series & in_errors, "a file is both in a series and in errors"
    return in_series | in_errors


def test_every_file_is_placed_with_a_reason(corpus: Path, corpus_result) -> None:
    expected = _all_files(corpus) | _all_files(PYDICOM_FILES)
    assert _placed(corpus_result) == expected
    assert corpus_result.files_found == len(expected)
    assert all(e.error for e in corpus_result.errors)
    assert all(e.decision.reason for e in corpus_result.entries if not e.decision.eligible)


def _entry_with(result, path: Path):
    matches = [e for e in result.entries if str(path) in {i.path for i in e.series.instances}]
    assert len(matches) == 1, f"{path} is in {len(matches)} series"
    return matches[0]


def test_tilted_ge_head_ct_is_one_series_flagged_and_rejected_as_head(corpus: Path,
                                                                      corpus_result) -> None:
    folder = need(corpus / "dcm_qa_ct/In/GE")
    entry = _entry_with(corpus_result, folder / "01.dcm")
    assert {i.path for i in entry.series.instances} == _all_files(folder)
    g = entry.series.geometry
    assert g.gantry_tilt_deg == pytest.approx(18.5, abs=0.1)
    assert not g.uniform_spacing
    assert g.min_gap_mm == pytest.approx(1.08, abs=0.02)
    assert g.max_gap_mm == pytest.approx(6.99, abs=0.02)
    assert not entry.decision.eligible
    assert entry.decision.rule == "region"
    assert "HEAD" in entry.decision.reason
    assert any("gantry tilt 18.5" in w for w in entry.warnings)


def test_three_slice_abdominal_ct_is_rejected_for_coverage(corpus: Path, corpus_result) -> None:
    entry = _entry_with(corpus_result, need(corpus / "dcmqi/data/segmentations/ct-3slice/01.dcm"))
    assert len(entry.series.instances) == 3
    assert entry.decision.rule == "coverage"
    assert entry.decision.reason.startswith("covers only 2 mm")


@pytest.mark.parametrize("name, rule", [
    ("dcm_qa_ct/In/Philips/S21610/S1000/I10", "localizer"),  # phantom localizer
    ("fo-dicom/test-data/GH342.dcm", "localizer"),  # whole-body localizer
    ("pylibjpeg-data/ljdata/ds/JPEG2000/MAROTECH_CT_JP2Lossy.dcm", "localizer"),
    ("dcm_qa_ct/In/Philips/S21610/S4010/I30", "sop-class"),  # exam summary labelled CT
    ("fo-dicom/test-data/CT-MONO2-16-ankle", "sop-class"),  # 3-D rendering saved as CT
    ("pylibjpeg-data/ljdata/ds/JPEG2000Lossless/TOSHIBA_J2K_SIZ0_PixRep1.dcm", "reformat"),
])
def test_localizers_summaries_and_renderings_are_rejected(corpus: Path, corpus_result, name: str,
                                                          rule: str) -> None:
    entry = _entry_with(corpus_result, need(corpus / name))
    assert not entry.decision.eligible
    assert entry.decision.rule == rule


def test_nothing_in_the_corpus_is_eligible(corpus_result) -> None:
    # No real full-length abdominal CT series exists in the corpus.
    assert corpus_result.eligible == ()


def test_outputs_are_written_with_provenance(tmp_path: Path, corpus: Path, corpus_result) -> None:
    inventory, errors = tmp_path / "inventory.parquet", tmp_path / "errors.parquet"
    write_outputs(corpus_result, inventory, errors, rules=load_rules(), roots=[corpus])
    inv = pq.read_table(inventory)
    assert inv.num_rows == len(corpus_result.entries)
    for column in ("series_instance_uid", "study_instance_uid", "modality", "body_part_examined",
                   "series_description", "n_instances", "eligible", "reason", "gantry_tilt_deg",
                   "uniform_spacing", "z_coverage_mm"):
        assert column in inv.column_names
    err = pq.read_table(errors)
    assert err.num_rows == len(corpus_result.errors)
    meta = pq.read_schema(inventory).metadata[b"screen.provenance"]
    assert b'"rules": "built-in default.toml"' in meta
    assert inventory_table(corpus_result.entries).schema.equals(inv.schema, check_metadata=False)


def test_one_and_two_workers_agree(corpus: Path, corpus_result) -> None:
    single = index([corpus, PYDICOM_FILES], workers=1)
    assert [e.series.key for e in single.entries] == [e.series.key for e in corpus_result.entries]
    assert sorted(e.path for e in single.errors) == sorted(e.path for e in corpus_result.errors)
