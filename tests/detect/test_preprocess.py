"""Resampling onto a network's grid, windowing, and the boxes the grids are laid over."""

from __future__ import annotations

import numpy as np
import pytest

from screen.detect.preprocess import (
    AIR_HU,
    STAND_IN_GLAND_HU,
    Grid,
    body_box,
    body_grid,
    box_grid,
    gland_hu,
    preprocess,
    resample,
    resample_labels,
    to_volume_labels,
)
from screen.model.card import NetworkCard
from screen.records import Volume

NET = NetworkCard(
    name="t", onnx="t.onnx", torch="t.pt", widths=(4, 8), spacing_kji=(2.0, 2.0, 2.0),
    window_hu=(-100.0, 100.0), shape_multiple=8, crop="body",
)


def _volume(hu: np.ndarray, spacing_kji=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0)) -> Volume:
    affine = np.diag([spacing_kji[2], spacing_kji[1], spacing_kji[0], 1.0])
    affine[:3, 3] = origin
    return Volume(hu=hu.astype(np.float32), affine=affine, slice_uids=tuple(str(k) for k in range(hu.shape[0])))


def test_resample_reproduces_a_linear_ramp_exactly_when_upsampling():
    k, j, i = np.meshgrid(np.arange(10), np.arange(12), np.arange(14), indexing="ij")
    hu = (3.0 * k - 2.0 * j + 0.5 * i).astype(np.float32)
    grid = Grid(origin=(1.25, 2.5, 0.75), step=(0.5, 0.75, 0.5), shape=(8, 8, 16))
    out = resample(hu, grid)
    kk, jj, ii = np.meshgrid(*(grid.origin[a] + grid.step[a] * np.arange(grid.shape[a]) for a in range(3)), indexing="ij")
    np.testing.assert_allclose(out, 3.0 * kk - 2.0 * jj + 0.5 * ii, atol=1e-4)


def test_resample_averages_when_downsampling_so_noise_does_not_alias():
    rng = np.random.default_rng(0)
    hu = rng.normal(0.0, 100.0, (40, 40, 40)).astype(np.float32)
    out = resample(hu, Grid((4.0, 4.0, 4.0), (4.0, 4.0, 4.0), (8, 8, 8)))
    # A 4x tent average over 3 axes cuts white noise by far more than half.
    assert out.std() < 25.0


def test_samples_outside_the_volume_are_air():
    hu = np.full((4, 4, 4), 50.0, np.float32)
    out = resample(hu, Grid((-3.0, 0.0, 0.0), (1.0, 1.0, 1.0), (8, 4, 4)))
    assert np.all(out[:2] == AIR_HU)
    np.testing.assert_allclose(out[3:7], 50.0)
    assert np.all(out[7] == AIR_HU)


def test_labels_round_trip_through_a_grid():
    labels = np.zeros((20, 30, 30), np.uint8)
    labels[5:15, 10:20, 8:22] = 1
    grid = Grid((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), (24, 32, 32))
    there = resample_labels(labels, grid)
    back = to_volume_labels(there, grid, labels.shape)
    np.testing.assert_array_equal(back, labels)


def test_body_box_finds_the_tissue_and_the_grid_covers_it_in_multiples():
    hu = np.full((30, 64, 64), -1000.0, np.float32)
    hu[5:25, 10:50, 20:60] = 40.0
    volume = _volume(hu, spacing_kji=(2.5, 0.8, 0.8))
    lo, hi = body_box(volume)
    assert lo[0] == 5 and hi[0] == 24
    assert lo[1] <= 10 and hi[1] >= 49 - 3  # in-plane found on a strided view
    grid = body_grid(volume, NET)
    assert all(n % 8 == 0 for n in grid.shape)
    np.testing.assert_allclose(grid.step, (2.0 / 2.5, 2.0 / 0.8, 2.0 / 0.8))
    # The grid's middle sits on the box's middle.
    middle = grid.to_volume((np.asarray(grid.shape) - 1) / 2.0)
    np.testing.assert_allclose(middle, (lo + hi) / 2.0)


def test_box_grid_adds_the_margin_and_respects_min_and_max_extent():
    net = NetworkCard(
        name="s", onnx="model.onnx", torch="model.pt", widths=(4, 8), spacing_kji=(1.0, 1.0, 1.0),
        window_hu=(-100.0, 100.0), shape_multiple=8, crop="pancreas", margin_mm=4.0,
        min_extent_mm=(16.0, 16.0, 16.0), max_extent_mm=(32.0, 32.0, 32.0),
    )
    volume = _volume(np.zeros((100, 100, 100)))
    small = box_grid(volume, np.array([50, 50, 50.0]), np.array([51, 51, 51.0]), net)
    assert small.shape == (16, 16, 16)
    wide = box_grid(volume, np.array([0, 40, 45.0]), np.array([99, 50, 55.0]), net)
    assert wide.shape == (32, 24, 24)  # cut to the maximum along k; 11 + 8 margin -> 24


def test_preprocess_windows_onto_minus_one_to_one():
    hu = np.full((16, 32, 32), -1000.0, np.float32)
    hu[4:12, 8:24, 8:24] = 500.0
    x = preprocess(_volume(hu), NET)
    assert x.dtype == np.float32 and x.shape[:2] == (1, 1)
    assert x.min() == pytest.approx(-1.0) and x.max() == pytest.approx(1.0)


RELATIVE = NetworkCard(
    name="r", onnx="model.onnx", torch="model.pt", widths=(4, 8), spacing_kji=(1.0, 1.0, 1.0),
    window_hu=(-100.0, 100.0), shape_multiple=8, crop="pancreas", window_relative_to="gland",
)


def test_a_window_relative_to_the_gland_moves_with_it():
    hu = np.array([0.0, 40.0, 100.0, 140.0, 240.0], np.float32)
    # The same lesion 40 HU below its gland looks the same in an unenhanced and an enhanced scan.
    assert RELATIVE.normalise(hu[:2], gland_hu=40.0).tolist() == pytest.approx([-0.4, 0.0])
    assert RELATIVE.normalise(hu[2:4], gland_hu=140.0).tolist() == pytest.approx([-0.4, 0.0])
    assert RELATIVE.normalise(hu[4:], gland_hu=40.0).tolist() == [1.0]
    with pytest.raises(ValueError, match="needs the gland's HU"):
        RELATIVE.normalise(hu)
    # Calibration data without a gland found fall back to a stated stand-in.
    volume = _volume(np.full((16, 32, 32), STAND_IN_GLAND_HU, np.float32))
    assert np.allclose(preprocess(volume, RELATIVE), 0.0)


def test_only_the_pancreas_network_can_window_relative_to_the_gland():
    with pytest.raises(ValueError, match="only a network that looks at the pancreas"):
        NetworkCard(name="b", onnx="b.onnx", torch="b.pt", widths=(4, 8), spacing_kji=(1.0, 1.0, 1.0),
                    window_hu=(-100.0, 100.0), shape_multiple=8, crop="body", window_relative_to="gland")
    with pytest.raises(ValueError, match="window_relative_to"):
        NetworkCard(name="b", onnx="b.onnx", torch="b.pt", widths=(4, 8), spacing_kji=(1.0, 1.0, 1.0),
                    window_hu=(-100.0, 100.0), shape_multiple=8, crop="pancreas", window_relative_to="liver")


def test_the_gland_is_measured_without_its_rim_of_fat():
    hu = np.full((12, 12, 12), -100.0, np.float32)  # fat
    gland = np.zeros(hu.shape, bool)
    gland[2:10, 2:10, 2:10] = True
    hu[3:9, 3:9, 3:9] = 90.0  # the rim of the mask lies in the fat, as on a coarse grid
    assert gland_hu(hu, gland) == 90.0
    thin = np.zeros(hu.shape, bool)
    thin[5, 5, 2:10] = True  # too thin to erode: measured whole
    assert gland_hu(hu, thin) == pytest.approx(float(np.median(hu[thin])))
    assert gland_hu(hu, np.zeros(hu.shape, bool)) is None


def test_grid_rejects_nonsense():
    with pytest.raises(ValueError, match="steps must be positive"):
        Grid((0.0, 0.0, 0.0), (1.0, 0.0, 1.0), (8, 8, 8))
