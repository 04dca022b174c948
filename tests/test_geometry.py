"""Slice geometry decided once, at assembly, and followed by the loader: order, repeated
positions, spacing and tilt stored on the Series; a voxel's LPS position mapped both ways on
the Volume."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from screen import geometry
from screen.records import Instance, Volume
from screen.series import assemble, make_series, without
from screen.volume import VolumeError
from screen.volume.plan import plan_slices

AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def _slices(z: list[float], *, orientation=AXIAL, spacing=(0.7, 0.7), **extra) -> list[Instance]:
    base = Instance(
        path="/a/template", sop_instance_uid="", sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
        transfer_syntax_uid="1.2.840.10008.1.2.1", modality="CT", series_instance_uid="1.2.3",
        image_orientation=orientation, pixel_spacing=spacing, rows=64, columns=64, **extra)
    # Named and numbered head first, as many scanners store them.
    return [replace(base, path=f"/a/{n:04d}", sop_instance_uid=f"1.2.3.{n}", instance_number=n,
                    image_position=(-20.0, -30.0, value))
            for n, value in enumerate(sorted(z, reverse=True), start=1)]


def test_assembly_measures_the_layout_once_and_single_frames_need_no_order() -> None:
    [series], _ = assemble(_slices([2.0 * k for k in range(10)]))
    g = series.geometry
    assert [i.image_position[2] for i in series.instances] == [2.0 * k for k in range(10)]
    assert g.slice_order == () and g.first_repeat is None  # files listed in slice order already
    assert g.unique_positions and g.uniform_spacing and g.slice_spacing_mm == pytest.approx(2.0)
    assert g.shear_deg == 0.0 and not g.sheared and g.gantry_tilt_deg == 0.0
    plan = plan_slices(series)
    assert [s.distance_mm for s in plan.sources] == pytest.approx([2.0 * k for k in range(10)])
    assert plan.affine[2, 2] == pytest.approx(2.0) and plan.warnings == ()


def test_a_repeated_position_is_found_at_assembly_and_named_by_the_loader() -> None:
    instances = _slices([0.0, 2.0, 4.0, 6.0])
    instances.append(replace(instances[1], path="/a/copy", sop_instance_uid="1.2.3.99",
                             instance_number=99))
    series = make_series("dup", instances)
    g = series.geometry
    assert not g.unique_positions and g.first_repeat == 2
    with pytest.raises(VolumeError, match=r"two slices at the same position \(4\.00 mm along the "
                                          r"slice normal, instance 2 and instance 99\)"):
        plan_slices(series)


def test_a_tilted_series_is_sheared_and_its_one_tilt_angle_names_the_correction() -> None:
    t = math.radians(15.0)
    tilted = (1.0, 0.0, 0.0, 0.0, math.cos(t), -math.sin(t))
    # No GantryDetectorTilt tag: the angle comes from the positions alone.
    series = make_series("tilt", _slices([2.0 * k for k in range(8)], orientation=tilted))
    g = series.geometry
    assert g.sheared and g.shear_deg == pytest.approx(-15.0)
    assert g.gantry_tilt_deg == pytest.approx(-15.0)
    plan = plan_slices(series)
    assert any("gantry tilt of 15.0 degrees corrected" in w for w in plan.warnings)
    middle = len(plan.sources) // 2
    assert plan.sources[middle].shift_px == (0.0, 0.0)
    # Every slice moves back onto the stack by its drift along the columns, in pixels.
    rows_moved = [s.shift_px[0] for s in plan.sources]
    assert np.all(np.diff(rows_moved) < 0) and plan.sources[0].shift_px[1] == pytest.approx(0.0)


def test_a_stack_drifting_along_its_rows_is_corrected_and_its_angle_named() -> None:
    # Turned about the column direction: each slice lies further along the rows, none along
    # the columns, where a gantry tilts; the warning names the drift's own angle.
    t = math.radians(15.0)
    turned = (math.cos(t), 0.0, -math.sin(t), 0.0, 1.0, 0.0)
    series = make_series("turn", _slices([2.0 * k for k in range(8)], orientation=turned))
    assert series.geometry.sheared and series.geometry.shear_deg == pytest.approx(0.0)
    plan = plan_slices(series)
    assert any("gantry tilt of 15.0 degrees corrected" in w for w in plan.warnings), plan.warnings
    assert all(s.shift_px[0] == pytest.approx(0.0) for s in plan.sources)
    assert len({round(s.shift_px[1], 6) for s in plan.sources}) == len(plan.sources)


def test_a_drift_below_a_twentieth_of_a_pixel_is_rounding_not_a_tilt() -> None:
    instances = [replace(i, image_position=(i.image_position[0] + 0.001 * n, *i.image_position[1:]))
                 for n, i in enumerate(_slices([2.0 * k for k in range(8)]))]
    series = make_series("round", instances)
    assert not series.geometry.sheared
    assert all(s.shift_px == (0.0, 0.0) for s in plan_slices(series).sources)


def test_a_series_without_a_slice_is_measured_again() -> None:
    series = make_series("gap", _slices([2.0 * k for k in range(8)]))
    gone = series.instances[4].path
    fewer = without(series, {gone})
    assert [i.path for i in fewer.instances] == [i.path for i in series.instances if i.path != gone]
    assert series.geometry.uniform_spacing and not fewer.geometry.uniform_spacing
    assert fewer.geometry.max_gap_mm == pytest.approx(4.0)
    plan = plan_slices(fewer)
    assert len(plan.outputs) == 8  # the gap is filled, as loading a damaged series does
    assert any("1 gap(s) of 4.0-4.0 mm" in w for w in plan.warnings)


def test_frames_of_a_multiframe_file_are_put_in_slice_order(corpus: Path) -> None:
    from screen.headers import read_instance

    path = corpus / "pydicom-data/data_store/data/eCT_Supplemental.dcm"
    series = make_series("ect", [read_instance(str(path))])
    # Its frames were stored head first: the geometry says to take them the other way round.
    assert series.geometry.slice_order == (1, 0)
    plan = plan_slices(series)
    assert [s.frame for s in plan.sources] == [1, 0]
    assert plan.sources[0].distance_mm < plan.sources[1].distance_mm


def test_a_geometry_measured_on_other_slices_is_refused(corpus: Path) -> None:
    from screen.headers import read_instance

    path = corpus / "pydicom-data/data_store/data/eCT_Supplemental.dcm"
    series = make_series("ect", [read_instance(str(path))])
    unordered = replace(series, geometry=replace(series.geometry, slice_order=()))
    with pytest.raises(ValueError, match="its geometry was not measured on these slices"):
        plan_slices(unordered)
    [axial] = assemble(_slices([0.0, 2.0, 4.0]))[0]
    unmeasured = replace(axial.geometry, shear_deg=None)
    with pytest.raises(ValueError, match="its geometry was not measured on these slices"):
        plan_slices(replace(axial, geometry=unmeasured))


def test_frames_name_the_file_whose_positions_are_missing() -> None:
    [instance] = _slices([0.0])
    broken = replace(instance, number_of_frames=3, frame_positions=((0.0, 0.0, 0.0),))
    with pytest.raises(ValueError, match=r"/a/0001: 3 frames but 1 frame positions"):
        geometry.frames([broken])
    series = make_series("broken", [broken])
    assert not series.geometry.unique_positions  # the rules turn it away, for its positions
    with pytest.raises(VolumeError, match=r"/a/0001: 3 frames but 1 frame positions"):
        plan_slices(series)


def test_from_lps_undoes_to_lps_on_an_oblique_affine() -> None:
    a, b = math.radians(20), math.radians(12)
    row = np.array([math.cos(a), math.sin(a), 0.0])
    col = np.array([-math.sin(a) * math.cos(b), math.cos(a) * math.cos(b), -math.sin(b)])
    affine = geometry.affine(tuple(row) + tuple(col), (10.0, -40.0, 200.0), (0.7, 0.8),
                             2.5 * np.cross(row, col))
    volume = Volume(hu=np.zeros((6, 5, 4), np.float32), affine=affine, slice_uids=("",) * 6)
    kji = np.random.default_rng(0).uniform(-3, 9, size=(2, 7, 3))
    lps = volume.to_lps(kji)
    np.testing.assert_allclose(volume.from_lps(lps), kji, atol=1e-9)
    np.testing.assert_allclose(volume.from_lps(tuple(lps[0, 0])), kji[0, 0], atol=1e-9)
    assert volume.from_lps(lps).shape == (2, 7, 3)
