from __future__ import annotations

from pathlib import Path

import pydicom
import pytest

from screen.headers import read_instance
from screen.records import FileError, Instance, Stage
from tests.conftest import need


def test_reads_the_tags_the_rules_need_from_a_real_ct(corpus: Path) -> None:
    path = need(corpus / "dcm_qa_ct/In/GE/01.dcm")
    inst = read_instance(str(path))
    full = pydicom.dcmread(path, stop_before_pixels=True)
    assert isinstance(inst, Instance)
    assert inst.series_instance_uid == full.SeriesInstanceUID
    assert inst.modality == "CT"
    assert inst.image_position == tuple(float(v) for v in full.ImagePositionPatient)
    assert inst.image_orientation == tuple(float(v) for v in full.ImageOrientationPatient)
    assert inst.gantry_tilt == pytest.approx(float(full.GantryDetectorTilt))
    assert inst.body_part_examined == full.BodyPartExamined


def test_enhanced_ct_gets_per_frame_positions(corpus: Path) -> None:
    path = need(corpus / "pydicom-data/data_store/data/eCT_Supplemental.dcm")
    inst = read_instance(str(path))
    full = pydicom.dcmread(path, stop_before_pixels=True)
    assert isinstance(inst, Instance)
    assert inst.number_of_frames == int(full.NumberOfFrames) == len(inst.frame_positions)
    first = full.PerFrameFunctionalGroupsSequence[0].PlanePositionSequence[0]
    assert inst.frame_positions[0] == tuple(float(v) for v in first.ImagePositionPatient)


@pytest.mark.parametrize("name, reason", [
    ("fo-dicom/License.txt", "not DICOM: no 'DICM' marker"),
    ("dcm_qa_ct/DICOMDIR", "DICOM but not an image: a DICOM media directory"),
])
def test_files_that_are_not_images_say_why(corpus: Path, name: str, reason: str) -> None:
    outcome = read_instance(str(need(corpus / name)))
    assert isinstance(outcome, FileError)
    assert outcome.stage is Stage.HEADER
    assert outcome.error.startswith(reason)


def test_file_without_preamble_is_read_as_a_bare_data_set(tmp_path: Path, corpus: Path) -> None:
    source = pydicom.dcmread(need(corpus / "dcmqi/data/segmentations/ct-3slice/01.dcm"))
    source.preamble = None
    del source.file_meta
    bare = tmp_path / "bare"
    pydicom.dcmwrite(bare, source, implicit_vr=True, little_endian=True)
    assert bare.read_bytes()[128:132] != b"DICM"
    inst = read_instance(str(bare))
    assert isinstance(inst, Instance)
    assert inst.sop_instance_uid == source.SOPInstanceUID


def test_empty_and_unreadable_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.dcm"
    empty.write_bytes(b"")
    assert read_instance(str(empty)).error == "empty file (0 bytes)"
    missing = read_instance(str(tmp_path / "gone"))
    assert isinstance(missing, FileError)
    assert missing.error.startswith("cannot be read")
