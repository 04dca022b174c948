"""Series assembly and selection rules on instances built to order."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from screen.records import Instance
from screen.select import load_rules
from screen.series import assemble

AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
CORONAL = (1.0, 0.0, 0.0, 0.0, 0.0, -1.0)


def _slices(n: int, *, uid: str = "1.2.3", step: float = 2.5, **extra) -> list[Instance]:
    base = Instance(
        path="/a/template", sop_instance_uid="", sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
        transfer_syntax_uid="1.2.840.10008.1.2.1", modality="CT", series_instance_uid=uid,
        study_instance_uid="9.8", frame_of_reference_uid="7.7", series_number=2,
        image_type=("ORIGINAL", "PRIMARY", "AXIAL"), image_orientation=AXIAL,
        pixel_spacing=(0.7, 0.7), slice_thickness=step, rows=512, columns=512,
        convolution_kernel="B30f", series_description="ABD PEL W CON", body_part_examined="",
    )
    base = replace(base, **extra)
    return [replace(base, path=f"/a/{uid}/{n - k:04d}", sop_instance_uid=f"{uid}.{k}",
                    image_position=(0.0, 0.0, -300.0 + k * step), instance_number=n - k)
            for k in range(n)]


def test_slices_are_sorted_feet_to_head_whatever_their_names() -> None:
    [series], duplicates = assemble(_slices(80))
    z = [i.image_position[2] for i in series.instances]
    assert z == sorted(z) and not duplicates
    assert series.geometry.uniform_spacing and series.geometry.z_coverage_mm == pytest.approx(197.5)


def test_missing_series_uid_falls_back_to_acquisition_identity() -> None:
    a = _slices(40, uid="", series_number=3, series_description="A")
    b = [replace(i, path=i.path + "b", sop_instance_uid=i.sop_instance_uid + "b")
         for i in _slices(40, uid="", series_number=4, series_description="B")]
    series, _ = assemble(a + b)
    assert len(series) == 2
    assert all(s.key.startswith("derived-") and len(s.instances) == 40 for s in series)


def test_a_uid_holding_a_localizer_and_a_stack_is_split() -> None:
    stack = _slices(60)
    scout = replace(stack[0], path="/a/scout", sop_instance_uid="scout",
                    image_orientation=CORONAL, rows=1024)
    series, _ = assemble(stack + [scout])
    assert [len(s.instances) for s in series] == [60, 1]
    assert series[0].key == "1.2.3#1" and "orientation or image size" in series[0].split_reason


def test_two_acquisitions_at_the_same_positions_are_split() -> None:
    first = _slices(50, acquisition_number=1)
    second = [replace(i, path=i.path + "x", sop_instance_uid=i.sop_instance_uid + "x",
                      acquisition_number=2) for i in first]
    series, _ = assemble(first + second)
    assert [len(s.instances) for s in series] == [50, 50]
    assert all("acquisition number" in s.split_reason for s in series)


def test_of_two_copies_of_an_instance_the_larger_is_kept() -> None:
    slices = _slices(30)
    short = replace(slices[5], path="/a/copy", file_size=10)
    full = replace(slices[5], file_size=500_000)
    [series], duplicates = assemble([*slices[:5], full, *slices[6:], short])
    assert full in series.instances
    [dup] = duplicates
    assert dup.path == "/a/copy" and dup.error.startswith("duplicate of SOP instance 1.2.3.5")


@pytest.mark.parametrize("change, rule, reason", [
    ({"modality": "MR"}, "modality", "not a CT series (Modality: MR)"),
    ({"image_type": ("ORIGINAL", "PRIMARY", "LOCALIZER")}, "localizer", "a localizer"),
    ({"image_type": ("DERIVED", "SECONDARY", "REFORMATTED")}, "reformat", "a derived reformat"),
    ({"convolution_kernel": "B70f"}, "kernel", "reconstructed for lung or bone ('B70f')"),
    ({"series_description": "LUNG 1mm"}, "kernel", "reconstructed for lung or bone"),
    ({"body_part_examined": "HEAD", "series_description": "BRAIN WO"}, "region",
     "does not hold the pancreas ('HEAD')"),
    ({"slice_thickness": 8.0}, "slice-thickness", "slices are 8 mm thick"),
])
def test_each_rejection_names_its_rule(change: dict, rule: str, reason: str) -> None:
    [series], _ = assemble(_slices(80, **change))
    decision, _ = load_rules().decide(series)
    assert (decision.eligible, decision.rule) == (False, rule)
    assert decision.reason.startswith(reason) or reason in decision.reason


def test_short_coverage_and_few_slices() -> None:
    [short], _ = assemble(_slices(10))
    assert load_rules().decide(short)[0].rule == "coverage"


def test_an_abdomen_named_in_no_tag_is_kept_for_a_content_check() -> None:
    [series], _ = assemble(_slices(80, series_description="PV 2mm", body_part_examined="CHEST"))
    decision, confirm = load_rules().decide(series)
    assert decision.eligible
    assert confirm and "the image content must show it" in confirm[0]


def test_a_tilted_axial_acquisition_counts_as_axial() -> None:
    import math

    t = math.radians(15.0)
    tilted = (1.0, 0.0, 0.0, 0.0, math.cos(t), -math.sin(t))
    [series], _ = assemble(_slices(80, image_orientation=tilted, gantry_tilt=15.0))
    assert series.geometry.orientation == "oblique"
    assert load_rules().decide(series)[0].eligible


def test_user_rules_are_checked_in_full(tmp_path: Path) -> None:
    bad = tmp_path / "rules.toml"
    bad.write_text('[[rule]]\nname = "t"\nfacts = ["n_slices"]\nallow = ["x"]\nreason = "r"\n')
    with pytest.raises(ValueError, match="rule 't': numeric facts take min/max, not patterns"):
        load_rules(bad)
    bad.write_text('[[rule]]\nname = "p"\nfacts = ["kernel"]\nreject = ["("]\nreason = "r"\n')
    with pytest.raises(ValueError, match=r"rule 'p': bad pattern '\('"):
        load_rules(bad)
    bad.write_text("not toml [")
    with pytest.raises(ValueError, match="is not valid TOML"):
        load_rules(bad)
