"""Masks on the volume's voxels: the lesion outlined is the one the Analysis carries."""

from __future__ import annotations

import numpy as np
import pytest

from screen.detect.detector import Analysis
from screen.detect.masks import volume_masks
from screen.detect.preprocess import Grid, to_volume_labels
from screen.records import Detection, Volume

SHAPE = (12, 20, 20)


def _volume() -> Volume:
    affine = np.diag([0.8, 0.8, 2.0, 1.0])
    affine[:3, 3] = (-8.0, -8.0, 40.0)
    return Volume(hu=np.zeros(SHAPE, np.float32), affine=affine,
                  slice_uids=tuple(str(k) for k in range(SHAPE[0])))


def _two_lesions() -> tuple[Grid, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A grid twice as coarse as the volume, a gland and two lesion regions in it."""
    grid = Grid((0.0, 0.0, 0.0), (2.0, 2.0, 2.0), (6, 10, 10))
    gland = np.zeros(grid.shape, bool)
    gland[1:5, 2:8, 1:9] = True
    bright = np.argwhere(np.ones((2, 2, 2), bool)) + (1, 3, 2)
    faint = np.argwhere(np.ones((2, 2, 2), bool)) + (3, 5, 6)
    prob = np.zeros((3, *grid.shape), np.float32)
    prob[1][gland] = 0.9
    prob[2][tuple(bright.T)] = 0.95
    prob[2][tuple(faint.T)] = 0.7
    return grid, gland, prob, bright, faint


def _analysis(detection: Detection, grid, prob, gland, lesion=None) -> Analysis:
    return Analysis(detection, {}, grid, grid, prob, gland, lesion=lesion)


def test_the_carried_lesion_is_outlined_and_no_other_region() -> None:
    volume = _volume()
    grid, gland, prob, bright, faint = _two_lesions()
    # The fainter region is the one reported (by a recipe ranking candidates its own way).
    centre = tuple(float(v) for v in volume.to_lps(grid.to_volume(faint.mean(axis=0))))
    detection = Detection(0.8, True, 10.0, lesion_center_lps=centre, lesion_diameter_mm=4.0)
    masks = volume_masks(volume, _analysis(detection, grid, prob, gland, lesion=faint))
    np.testing.assert_array_equal(masks.lesion, _on_volume(faint, grid))
    assert masks.lesion.any() and not (masks.lesion & _on_volume(bright, grid)).any()
    assert not (masks.lesion & ~masks.pancreas).any()


def _on_volume(voxels: np.ndarray, grid: Grid) -> np.ndarray:
    on_grid = np.zeros(grid.shape, bool)
    on_grid[tuple(voxels.T)] = True
    return to_volume_labels(on_grid, grid, SHAPE).astype(bool)


def test_without_a_reported_lesion_nothing_is_outlined_whatever_the_map() -> None:
    grid, gland, prob, _, _ = _two_lesions()
    masks = volume_masks(_volume(), _analysis(Detection(0.3, True, 10.0), grid, prob, gland))
    assert masks.pancreas.any() and not masks.lesion.any()


def test_an_analysis_refuses_a_lesion_region_it_cannot_place() -> None:
    grid, gland, prob, bright, _ = _two_lesions()
    detection = Detection(0.8, True, 10.0, lesion_center_lps=(0.0, 0.0, 0.0), lesion_diameter_mm=4.0)
    with pytest.raises(ValueError, match=r"lesion must be \(n, 3\) voxel indices, got \(8,\)"):
        _analysis(detection, grid, prob, gland, lesion=bright[:, 0])
    with pytest.raises(ValueError, match="a lesion region needs the grid it lies on and a "
                                         "Detection that reports it"):
        _analysis(Detection(0.8, True, 10.0), grid, prob, gland, lesion=bright)
