"""Postprocessing units: components, diameters, head/body/tail, LPS through the affine."""

from __future__ import annotations

import numpy as np
import pytest

from screen.detect import postprocess
from screen.detect.postprocess import (
    components,
    feret_diameter_mm,
    largest,
    location_at,
    location_in_mask,
    position_along,
    position_in_mask,
    voxels_of,
)
from screen.records import Location, Volume


def _ball(shape, centre, radius_vox):
    k, j, i = np.indices(shape)
    return (k - centre[0]) ** 2 + (j - centre[1]) ** 2 + (i - centre[2]) ** 2 <= radius_vox ** 2


@pytest.mark.parametrize("diameter", [6.0, 15.0, 30.0])
def test_diameter_of_a_sampled_sphere_is_close_to_its_diameter(diameter):
    spacing = (1.5, 1.5, 1.5)
    mask = _ball((40, 40, 40), (20, 20, 20), diameter / 2 / 1.5)
    measured = feret_diameter_mm(np.argwhere(mask), spacing)
    assert measured == pytest.approx(diameter, abs=1.6)


def test_diameter_takes_the_longest_axis_with_anisotropic_voxels():
    mask = np.zeros((5, 40, 40), bool)
    mask[2, 20, 5:35] = True  # 30 voxels along i at 0.5 mm = 15 mm
    assert feret_diameter_mm(np.argwhere(mask), (3.0, 0.5, 0.5)) == pytest.approx(14.5 + 4 / 3)


def test_components_come_most_suspicious_first_and_largest_keeps_the_biggest():
    prob = np.zeros((20, 20, 20), np.float32)
    prob[_ball(prob.shape, (5, 5, 5), 3)] = 0.6
    prob[_ball(prob.shape, (14, 14, 14), 2)] = 0.9
    found = components(prob > 0.5, prob)
    assert [round(c.peak, 2) for c in found] == [0.9, 0.6]
    np.testing.assert_allclose(found[0].centre, (14, 14, 14))
    big = largest(prob > 0.5)
    assert big[5, 5, 5] and not big[14, 14, 14]


def _gland() -> np.ndarray:
    """Points along a curved gland in LPS: head at patient right (x = -60), tail at left."""
    t = np.linspace(0.0, 1.0, 400)
    x = -60.0 + 150.0 * t
    y = 10.0 * np.sin(np.pi * t)
    z = 15.0 * t
    return np.stack([x, y, z], axis=1)


@pytest.mark.parametrize(("t", "expected"), [(0.1, Location.HEAD), (0.5, Location.BODY), (0.9, Location.TAIL)])
def test_location_along_the_gland(t, expected):
    gland = _gland()
    point = gland[int(t * (len(gland) - 1))]
    assert location_at(float(position_along(gland, point[None])[0])) is expected


def test_head_is_the_patient_right_end_whatever_order_the_points_come_in():
    gland = _gland()[::-1]
    assert float(position_along(gland, gland[-1:])[0]) == pytest.approx(0.0, abs=0.05)
    assert location_at(float(position_along(gland, np.array([[-58.0, 0.5, 0.2]]))[0])) \
        is Location.HEAD


def test_location_needs_points():
    with pytest.raises(ValueError, match="pancreas points must be"):
        position_along(np.zeros((1, 3)), np.zeros((1, 3)))
    with pytest.raises(ValueError, match="pancreas points must be"):
        location_in_mask(np.zeros((4, 4, 4), bool), lambda v: v.astype(float), np.zeros(3))


def _position_by_svd(gland: np.ndarray, points: np.ndarray) -> np.ndarray:
    """The principal axis as a singular value decomposition of every centred point finds it."""
    centre = gland.mean(axis=0)
    axis = np.linalg.svd(gland - centre, full_matrices=False)[2][0]
    axis = -axis if axis[0] < 0 else axis
    lo, hi = np.percentile((gland - centre) @ axis, [2.0, 98.0])
    return ((points - centre) @ axis - lo) / (hi - lo)


def _oblique_volume(shape) -> Volume:
    turn = np.array([[0.8, -0.6, 0.0], [0.6, 0.8, 0.0], [0.0, 0.0, 1.0]]) @ np.diag([0.7, 0.9, 2.5])
    affine = np.eye(4)
    affine[:3, :3], affine[:3, 3] = turn, (-120.0, 40.0, -300.0)
    return Volume(hu=np.zeros(shape, np.float32), affine=affine, slice_uids=("",) * shape[0])


def test_the_axis_from_blocks_of_points_is_the_singular_vector_of_them_all(monkeypatch):
    # A noisy curved gland, read 1000 points a block: the scatter matrix summed block by block
    # gives the same axis as the decomposition of all the points together.
    rng = np.random.default_rng(3)
    gland = _gland()[rng.integers(0, 400, 20_000)] + rng.normal(0, 3.0, (20_000, 3))
    points = gland[::997]
    monkeypatch.setattr(postprocess, "_BLOCK", 1000)
    np.testing.assert_allclose(position_along(gland, points), _position_by_svd(gland, points),
                               rtol=0, atol=1e-9)


def test_a_gland_mask_read_in_slabs_is_placed_as_its_voxels_are(monkeypatch):
    # The memory-lean way (a slab of the mask at a time) against every voxel's LPS at once.
    volume = _oblique_volume((30, 60, 80))
    k, j, i = np.indices(volume.hu.shape)
    mask = (np.abs(j - 30 - 12 * np.sin(i / 25.0)) < 6) & (np.abs(k - 15 - i / 8.0) < 4) & (i > 5)
    gland_lps = volume.to_lps(np.argwhere(mask))
    points = gland_lps[::101]
    monkeypatch.setattr(postprocess, "_BLOCK", 2 * 60 * 80)  # two slices a slab
    lean = position_in_mask(mask, volume.to_lps, points)
    np.testing.assert_allclose(lean, _position_by_svd(gland_lps, points), rtol=0, atol=1e-9)
    for point in points:
        assert location_in_mask(mask, volume.to_lps, point) is \
            location_at(float(_position_by_svd(gland_lps, point[None])[0]))


def test_lps_centre_through_a_flipped_affine():
    # A volume stored with i running towards patient right (a flipped row direction): the
    # same voxel index lands on the mirrored x.
    spacing = (2.0, 0.8, 0.8)
    flipped = np.array([
        [-0.8, 0.0, 0.0, 200.0],
        [0.0, 0.8, 0.0, -100.0],
        [0.0, 0.0, 2.0, -300.0],
        [0.0, 0.0, 0.0, 1.0],
    ])
    volume = Volume(hu=np.zeros((10, 20, 30), np.float32), affine=flipped, slice_uids=tuple("0123456789"))
    assert volume.spacing == spacing
    np.testing.assert_allclose(volume.to_lps(np.array([4.0, 10.0, 25.0])), [200 - 20.0, -100 + 8.0, -300 + 8.0])


def test_a_regions_voxels_read_in_slabs_are_argwheres(monkeypatch):
    mask = np.random.default_rng(5).random((17, 9, 11)) > 0.6
    monkeypatch.setattr(postprocess, "_BLOCK", 3 * 9 * 11)  # three slices a slab
    np.testing.assert_array_equal(voxels_of(mask), np.argwhere(mask))
    assert voxels_of(np.zeros((2, 3, 4), bool)).shape == (0, 3)
