"""Generated series for the geometry cases: flipped, oblique, coronal, missing slices, uneven
spacing and gantry tilt. Where SimpleITK reads the series as we do (even spacing, no tilt) it
is the reference; elsewhere the pixels hold a linear function of the LPS position, which
linear interpolation reproduces exactly, so every voxel can be checked against it."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from conftest import compare_with_sitk, series_in, sitk_image, write_ct_series
from pydicom.uid import RLELossless

from screen.headers import read_instance
from screen.series import make_series
from screen.volume import VolumeError, load_volume
from screen.volume.decode import PADDING_HU

ROWS, COLUMNS = 12, 10


def _random_slices(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(-1024, 2000, size=(ROWS, COLUMNS)).astype(np.int16) for _ in range(n)]


def _field(lps: np.ndarray) -> np.ndarray:
    """The HU each voxel should hold: linear in position, so interpolation keeps it exact."""
    return 3.0 * lps[..., 0] - 2.0 * lps[..., 1] + 5.0 * lps[..., 2] + 40.0


def _field_slices(positions, orientation, spacing=(1.0, 1.0), scale: float = 100.0):
    """Stored values (HU x scale) of the field on each slice's pixel grid."""
    row = np.asarray(orientation[:3], float)
    col = np.asarray(orientation[3:], float)
    j, i = np.meshgrid(np.arange(ROWS), np.arange(COLUMNS), indexing="ij")
    out = []
    for p in positions:
        lps = (np.asarray(p, float) + i[..., None] * spacing[1] * row
               + j[..., None] * spacing[0] * col)
        out.append(np.rint(_field(lps) * scale).astype(np.int16))
    return out


def _all_lps(volume) -> np.ndarray:
    grid = np.stack(np.meshgrid(*(np.arange(n) for n in volume.hu.shape), indexing="ij"), -1)
    return volume.to_lps(grid)


def _axial(n: int, step: float = 2.0) -> list[tuple[float, float, float]]:
    return [(-5.0, -6.0, 10.0 + step * k) for k in range(n)]


def test_plain_axial_series_matches_simpleitk(tmp_path: Path) -> None:
    folder = write_ct_series(tmp_path / "s", _random_slices(6), _axial(6), intercept=-1024)
    volume = load_volume(series_in(folder))
    assert volume.hu.shape == (6, ROWS, COLUMNS) and volume.warnings == ()
    np.testing.assert_allclose(np.diag(volume.affine), [1.0, 1.0, 2.0, 1.0])
    compare_with_sitk(volume, sitk_image(sorted(folder.iterdir())), atol=0.0)


@pytest.mark.parametrize("orientation, flips", [
    ((1, 0, 0, 0, -1, 0), "columns run anterior"),
    ((-1, 0, 0, 0, 1, 0), "rows run right, normal runs feet"),
    ((-1, 0, 0, 0, -1, 0), "rows right, columns anterior"),
    ((0, 1, 0, 1, 0, 0), "rows and columns swapped"),
])
def test_flipped_orientations_are_turned_to_lps(tmp_path: Path, orientation, flips) -> None:
    row, col = np.asarray(orientation[:3], float), np.asarray(orientation[3:], float)
    normal = np.cross(row, col)
    positions = [tuple(np.array([3.0, -4.0, 7.0]) + 2.5 * k * normal) for k in range(5)]
    folder = write_ct_series(tmp_path / "s", _random_slices(5, 1), positions,
                             orientation=orientation)
    volume = load_volume(series_in(folder))
    directions = volume.affine[:3, :3]
    assert np.all(np.diag(directions) > 0), flips
    assert np.count_nonzero(np.round(directions, 9)) == 3  # no resampling, only a turn
    compare_with_sitk(volume, sitk_image(sorted(folder.iterdir())), atol=0.0)


def test_oblique_series_keeps_its_obliquity_in_the_affine(tmp_path: Path) -> None:
    a, b = math.radians(20), math.radians(12)
    # Rotated 20 degrees about S, then the normal tilted 12 degrees towards posterior.
    row = np.array([math.cos(a), math.sin(a), 0.0])
    col = np.array([-math.sin(a) * math.cos(b), math.cos(a) * math.cos(b), -math.sin(b)])
    normal = np.cross(row, col)
    orientation = tuple(row) + tuple(col)
    positions = [tuple(np.array([1.0, 2.0, 3.0]) + 1.5 * k * normal) for k in range(5)]
    folder = write_ct_series(tmp_path / "s", _random_slices(5, 2), positions,
                             orientation=orientation, pixel_spacing=(0.7, 0.8))
    volume = load_volume(series_in(folder))
    np.testing.assert_allclose(volume.affine[:3, 0] / 0.8, row, atol=1e-6)
    np.testing.assert_allclose(volume.affine[:3, 1] / 0.7, col, atol=1e-6)
    np.testing.assert_allclose(volume.affine[:3, 2] / 1.5, normal, atol=1e-6)
    assert volume.warnings == ()
    compare_with_sitk(volume, sitk_image(sorted(folder.iterdir())), atol=0.0)


def test_coronal_acquisition_turns_and_keeps_slice_uids_on_its_axis(tmp_path: Path) -> None:
    orientation = (1, 0, 0, 0, 0, -1)  # rows to the left, columns to the feet
    normal = np.cross([1, 0, 0], [0, 0, -1])  # towards anterior
    positions = [tuple(np.array([0.0, 0.0, 50.0]) + 3.0 * k * normal) for k in range(4)]
    folder = write_ct_series(tmp_path / "s", _random_slices(4, 3), positions,
                             orientation=orientation)
    series = series_in(folder)
    volume = load_volume(series)
    assert volume.hu.shape == (ROWS, 4, COLUMNS)  # (S, P, L): the slices run along j
    assert volume.slice_axis == 1
    # Slices were stored anterior first; along +P the first is the most posterior.
    by_y = sorted(series.instances, key=lambda i: i.image_position[1])
    assert volume.slice_uids == tuple(i.sop_instance_uid for i in by_y)
    compare_with_sitk(volume, sitk_image(sorted(folder.iterdir())), atol=0.0)


def test_one_missing_slice_is_interpolated_with_a_warning(tmp_path: Path) -> None:
    positions = [p for k, p in enumerate(_axial(8)) if k != 4]
    folder = write_ct_series(tmp_path / "s", _field_slices(positions, (1, 0, 0, 0, 1, 0)),
                             positions, slope=0.01)
    volume = load_volume(series_in(folder))
    assert volume.hu.shape[0] == 8
    assert volume.spacing[0] == pytest.approx(2.0)
    np.testing.assert_allclose(volume.hu, _field(_all_lps(volume)), atol=0.006)
    assert any("1 gap(s) of 4.0-4.0 mm (1 missing slice(s)" in w for w in volume.warnings)
    # The filled slice is traced to its nearest source slice.
    assert len(volume.slice_uids) == 8 and len(set(volume.slice_uids)) == 7


def test_a_wider_gap_is_refused_naming_the_gap(tmp_path: Path) -> None:
    positions = [p for k, p in enumerate(_axial(10)) if k not in (4, 5, 6)]
    folder = write_ct_series(tmp_path / "s", _field_slices(positions, (1, 0, 0, 0, 1, 0)),
                             positions, slope=0.01)
    series = series_in(folder)
    with pytest.raises(VolumeError, match=r"gap of 8\.0 mm \(about 3 slices .* between "
                                          r"instance 4 at 16\.0 mm and instance 5 at 24\.0 mm"):
        load_volume(series)
    volume = load_volume(series, max_gap_slices=3)
    np.testing.assert_allclose(volume.hu, _field(_all_lps(volume)), atol=0.006)


def test_uneven_spacing_is_resampled_to_the_median(tmp_path: Path) -> None:
    steps = [2.0, 2.3, 1.8, 2.0, 2.6, 1.5, 2.0]
    z = np.concatenate([[0.0], np.cumsum(steps)])
    positions = [(-5.0, -6.0, float(v)) for v in z]
    folder = write_ct_series(tmp_path / "s", _field_slices(positions, (1, 0, 0, 0, 1, 0)),
                             positions, slope=0.01)
    volume = load_volume(series_in(folder))
    assert volume.hu.shape[0] == round(z[-1] / 2.0) + 1
    assert volume.to_lps(np.array([volume.hu.shape[0] - 1, 0, 0]))[2] == pytest.approx(z[-1])
    np.testing.assert_allclose(volume.hu, _field(_all_lps(volume)), atol=0.006)
    assert any("uneven slice spacing (1.50-2.60 mm)" in w for w in volume.warnings)


def test_gantry_tilt_shear_is_corrected_and_the_affine_is_orthogonal(tmp_path: Path) -> None:
    tilt = math.radians(15)
    orientation = (1, 0, 0, 0, math.cos(tilt), -math.sin(tilt))
    # As scanners store a tilted series: positions step straight along z.
    positions = [(-5.0, -6.0, 2.0 * k) for k in range(8)]
    folder = write_ct_series(tmp_path / "s", _field_slices(positions, orientation), positions,
                             orientation=orientation, slope=0.01, tilt=15.0)
    volume = load_volume(series_in(folder))
    columns = volume.affine[:3, :3] / np.linalg.norm(volume.affine[:3, :3], axis=0)
    np.testing.assert_allclose(columns.T @ columns, np.eye(3), atol=1e-9)
    assert volume.spacing[0] == pytest.approx(2.0 * math.cos(tilt))
    assert any("gantry tilt of 15.0 degrees corrected" in w for w in volume.warnings)
    expected = _field(_all_lps(volume))
    inside = volume.hu != PADDING_HU  # what came in from outside the field of view is air
    assert inside.mean() > 0.6
    np.testing.assert_allclose(volume.hu[inside], expected[inside], atol=0.006)


def test_rle_unsigned_with_padding_matches_simpleitk(tmp_path: Path) -> None:
    stored = [s.astype(np.int32) + 1024 for s in _random_slices(4, 5)]
    for s in stored:
        s[:2, :] = 0  # outside the field of view
    folder = write_ct_series(tmp_path / "s", [s.astype(np.uint16) for s in stored], _axial(4),
                             signed=False, intercept=-1024, slope=1, padding=0,
                             syntax=RLELossless)
    volume = load_volume(series_in(folder))
    assert np.all(volume.hu[:, :2, :] == PADDING_HU)
    compare_with_sitk(volume, sitk_image(sorted(folder.iterdir())), atol=0.0,
                      padding_hu=-1024.0)


def test_signed_pixels_with_fewer_bits_stored_are_sign_extended(tmp_path: Path) -> None:
    stored = [np.full((ROWS, COLUMNS), -100, dtype=np.int16)]
    # Bits above BitsStored (12) hold garbage in some exports; -100 must still read -100.
    raw = stored[0].view(np.uint16) & 0x0FFF | 0x5000
    folder = write_ct_series(tmp_path / "s", [raw.view(np.int16)], _axial(1), bits_stored=12)
    volume = load_volume(series_in(folder))
    assert np.all(volume.hu == -100.0)


def test_two_slices_at_one_position_are_refused(tmp_path: Path) -> None:
    positions = _axial(3) + [_axial(3)[1]]
    folder = write_ct_series(tmp_path / "s", _random_slices(4), positions)
    # Assembly would split these by acquisition; built directly they are one stack.
    instances = [read_instance(str(p)) for p in sorted(folder.iterdir())]
    with pytest.raises(VolumeError, match="two slices at the same position"):
        load_volume(make_series("dup", instances))


@pytest.mark.parametrize("value, error, message", [
    (1.5, TypeError, "max_gap_slices must be an int"),
    (-1, ValueError, "max_gap_slices must be >= 0"),
])
def test_max_gap_slices_is_checked(tmp_path: Path, value, error, message) -> None:
    folder = write_ct_series(tmp_path / "s", _random_slices(2), _axial(2))
    with pytest.raises(error, match=message):
        load_volume(series_in(folder), max_gap_slices=value)
