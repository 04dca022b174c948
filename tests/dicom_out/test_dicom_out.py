"""SR and SEG written for a real series, read back with highdicom and checked by dciodvfy."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest

from screen.dicom_out import source_frames, write_seg, write_sr
from screen.review import volume_masks

MODEL, VERSION = "pancreas-phantom-v1", "1.0.0"


def _dciodvfy(path: Path) -> list[str]:
    tool = shutil.which("dciodvfy")
    if tool is None:
        pytest.skip("dciodvfy not found (Debian: apt-get install dicom3tools)")
    done = subprocess.run([tool, str(path)], capture_output=True, text=True, timeout=120, check=False)
    return [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]


def _unexplained(messages: list[str]) -> list[str]:
    # The one expected warning: dciodvfy does not know our declared private coding scheme.
    return [m for m in messages if re.match(r"(Error|Warning)", m)
            and "Unrecognized defined term <99SCREEN>" not in m]


def _texts(item: pydicom.Dataset) -> dict[str, str]:
    """TEXT content items under ``item``, by concept code."""
    found: dict[str, str] = {}
    for child in item.get("ContentSequence", []):
        if child.ValueType == "TEXT":
            found[child.ConceptNameCodeSequence[0].CodeValue] = child.TextValue
        found |= _texts(child)
    return found


@pytest.fixture(scope="module")
def sr_path(tmp_path_factory: pytest.TempPathFactory, lesion_case) -> Path:
    detection = lesion_case.analysis.detection
    return write_sr(tmp_path_factory.mktemp("sr"), lesion_case.series, detection, MODEL, VERSION,
                    detection.score)


@pytest.fixture(scope="module")
def seg_path(tmp_path_factory: pytest.TempPathFactory, lesion_case) -> Path:
    return write_seg(tmp_path_factory.mktemp("seg"), lesion_case.series, lesion_case.volume,
                     lesion_case.analysis, model_name=MODEL, model_version=VERSION)


def test_sr_holds_the_lesion_centre_size_site_score_and_model(sr_path: Path, lesion_case) -> None:
    sr = hd.sr.srread(sr_path)
    first = lesion_case.series.first
    assert sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.34"  # Comprehensive 3D SR
    assert sr.PatientID == first.patient_id and sr.StudyInstanceUID == first.study_instance_uid
    groups = sr.content.get_volumetric_roi_measurement_groups()
    assert len(groups) == 1
    group = groups[0]
    detection = lesion_case.analysis.detection
    surface = group.roi
    assert surface.graphic_type == hd.sr.GraphicTypeValues3D.POINT
    assert surface.frame_of_reference_uid == first.frame_of_reference_uid
    np.testing.assert_allclose(np.asarray(surface.graphic_data).reshape(-1, 3),
                               [detection.lesion_center_lps], atol=1e-3)
    assert surface.source_series_for_segmentation.value == first.series_instance_uid
    sites = [s.value.value for s in group.finding_sites]
    assert sites == ["40133006"]  # body of pancreas, as the detection says
    values = {m.name.meaning: (m.value, m.unit.value) for m in group.get_measurements()}
    assert values["Diameter"] == (pytest.approx(detection.lesion_diameter_mm), "mm")
    assert values["Pancreatic lesion suspicion score"] == (pytest.approx(detection.score), "1")
    for measurement in group.get_measurements():
        texts = _texts(measurement[0])
        assert (texts["111001"], texts["111003"]) == (MODEL, VERSION)  # algorithm name, version
    evidence = {ref.ReferencedSOPInstanceUID
                for study in sr.CurrentRequestedProcedureEvidenceSequence
                for series in study.ReferencedSeriesSequence
                for ref in series.ReferencedSOPSequence}
    assert evidence == {i.sop_instance_uid for i in lesion_case.series.instances}


def test_sr_uids_are_stable_across_reruns(tmp_path: Path, sr_path: Path, lesion_case) -> None:
    detection = lesion_case.analysis.detection
    again = write_sr(tmp_path, lesion_case.series, detection, MODEL, VERSION, detection.score)
    assert pydicom.dcmread(again).SOPInstanceUID == pydicom.dcmread(sr_path).SOPInstanceUID
    other = write_sr(tmp_path / "v2", lesion_case.series, detection, MODEL, "2.0.0", detection.score)
    assert pydicom.dcmread(other).SOPInstanceUID != pydicom.dcmread(sr_path).SOPInstanceUID


def test_sr_without_a_lesion_reports_the_score_alone(tmp_path: Path, clean_case) -> None:
    path = write_sr(tmp_path, clean_case.series, clean_case.analysis.detection, MODEL, VERSION, 0.04)
    sr = hd.sr.srread(path)
    assert sr.content.get_volumetric_roi_measurement_groups() == []
    assert sr.content.get_planar_roi_measurement_groups() == []
    groups = [item for item in sr.ContentSequence
              if item.ConceptNameCodeSequence[0].CodeValue == "126010"]  # Imaging Measurements
    score = [m for g in groups for m in g.ContentSequence[0].ContentSequence
             if m.ConceptNameCodeSequence[0].CodeValue == "LESION-SCORE"]
    assert len(score) == 1
    assert float(score[0].MeasuredValueSequence[0].NumericValue) == pytest.approx(0.04)


def test_sr_refuses_an_unnamed_model(tmp_path: Path, lesion_case) -> None:
    with pytest.raises(ValueError, match="must name the model"):
        write_sr(tmp_path, lesion_case.series, lesion_case.analysis.detection, "", VERSION, 0.5)
    with pytest.raises(ValueError, match="score must be a probability"):
        write_sr(tmp_path, lesion_case.series, lesion_case.analysis.detection, MODEL, VERSION, 1.5)


def test_seg_has_pancreas_and_lesion_over_the_source_images(seg_path: Path, lesion_case) -> None:
    seg = hd.seg.segread(seg_path)
    assert seg.SegmentationType == "BINARY"
    assert seg.get_segment_numbers() == [1, 2]
    labels = [seg.get_segment_description(n).segment_label for n in (1, 2)]
    assert labels == ["Pancreas", "Suspected lesion"]
    assert seg.get_segment_description(1).segmented_property_type.value == "15776009"
    first = lesion_case.series.first
    assert seg.PatientID == first.patient_id and seg.FrameOfReferenceUID == first.frame_of_reference_uid
    referenced = {uid for _, _, uid in seg.get_source_image_uids()}
    assert referenced == {i.sop_instance_uid for i in lesion_case.series.instances}

    # Every voxel of each mask comes back on the source image it was loaded from.
    volume = lesion_case.volume
    masks = volume_masks(volume, lesion_case.analysis)
    uids = list(volume.slice_uids)
    pixels = seg.get_pixels_by_source_instance(source_sop_instance_uids=uids,
                                               segment_numbers=[1, 2], assert_missing_frames_are_empty=True)
    assert pixels.shape[0] == len(uids)
    for channel, mask in enumerate((masks.pancreas, masks.lesion)):
        per_slice = pixels[..., channel].reshape(len(uids), -1).sum(axis=1)
        np.testing.assert_array_equal(per_slice, mask.reshape(len(uids), -1).sum(axis=1))
    assert masks.lesion.sum() > 0


def test_source_frames_follow_the_instances(lesion_case) -> None:
    masks = volume_masks(lesion_case.volume, lesion_case.analysis)
    frames = source_frames(lesion_case.series, lesion_case.volume, masks)
    first = lesion_case.series.first
    assert frames.shape == (len(lesion_case.series.instances), first.rows, first.columns, 2)
    assert frames[..., 0].sum() == masks.pancreas.sum()


def test_seg_refuses_a_volume_without_a_pancreas(tmp_path: Path, lesion_case) -> None:
    from dataclasses import replace

    empty = replace(lesion_case.analysis, segment_grid=None, pancreas_mask=None,
                    lesion_probability=None, lesion=None)
    with pytest.raises(ValueError, match="found no pancreas to segment"):
        write_seg(tmp_path, lesion_case.series, lesion_case.volume, empty)


def test_dciodvfy_finds_no_errors(sr_path: Path, seg_path: Path) -> None:
    for path in (sr_path, seg_path):
        messages = _dciodvfy(path)
        assert not [m for m in messages if m.startswith("Error")], messages
        assert _unexplained(messages) == [], messages


def test_sr_lists_its_seg_in_the_evidence(tmp_path: Path, seg_path: Path, lesion_case) -> None:
    detection = lesion_case.analysis.detection
    path = write_sr(tmp_path, lesion_case.series, detection, MODEL, VERSION, detection.score,
                    segmentation=seg_path)
    sr, seg = hd.sr.srread(path), pydicom.dcmread(seg_path)
    evidence = {(series.SeriesInstanceUID, ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID)
                for study in sr.CurrentRequestedProcedureEvidenceSequence
                for series in study.ReferencedSeriesSequence
                for ref in series.ReferencedSOPSequence}
    assert (seg.SeriesInstanceUID, seg.SOPClassUID, seg.SOPInstanceUID) in evidence
    sources = {uid for _, _, uid in evidence} - {seg.SOPInstanceUID}
    assert sources == {i.sop_instance_uid for i in lesion_case.series.instances}


def test_seg_names_the_ai_algorithm_family_and_display_colours(seg_path: Path) -> None:
    seg = pydicom.dcmread(seg_path)
    for segment in seg.SegmentSequence:
        family = segment.SegmentationAlgorithmIdentificationSequence[0] \
            .AlgorithmFamilyCodeSequence[0]
        assert (family.CodeValue, family.CodingSchemeDesignator, family.CodeMeaning) == (
            "123110", "DCM", "Artificial Intelligence")
    colours = {s.SegmentLabel: hd.color.CIELabColor.from_dicom_value(
        tuple(s.RecommendedDisplayCIELabValue)).to_rgb() for s in seg.SegmentSequence}
    assert colours["Pancreas"] == pytest.approx((249, 180, 111), abs=2)
    assert colours["Suspected lesion"] == pytest.approx((255, 0, 0), abs=2)
