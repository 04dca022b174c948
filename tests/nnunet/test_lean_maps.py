"""The memory-lean ways to a series' maps give what the plain ways give: uint8 labels as
argmax, the organ labelled in its box only, the Feret diameter on a region's surface (made a
block of voxels at a time), the
slice axis resampled a few rows at a time as nnU-Net resamples it whole, and an Outcome's
class maps kept on the crop and expanded to the series grid only when asked for."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from screen.detect import postprocess
from screen.detect.postprocess import feret_diameter_mm, largest
from screen.nnunet import findings
from screen.nnunet.findings import bounding_box, class_labels, largest_region, surface_voxels
from screen.nnunet.folder import Resampling
from screen.nnunet.preprocess import resample
from screen.nnunet.recipe import Outcome
from screen.records import Detection


def _blobs(shape=(30, 40, 50), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return ndimage.gaussian_filter(rng.random(shape), 2)


def test_class_labels_are_argmax_with_ties_to_the_first_class():
    rng = np.random.default_rng(1)
    probs = np.round(rng.random((7, 12, 13, 14)), 1).astype(np.float32)  # many ties
    labels = class_labels(probs)
    assert labels.dtype == np.uint8
    np.testing.assert_array_equal(labels, probs.argmax(axis=0))


def test_class_labels_refuse_more_classes_than_uint8_holds():
    with pytest.raises(ValueError, match="at most 256 classes"):
        class_labels(np.zeros((257, 2, 2, 2), np.float32))


def test_the_largest_region_found_in_the_masks_box_is_the_same():
    blobs = _blobs()
    for cut in (0.5, 0.52, 0.55):
        mask = blobs > cut
        assert mask.any()
        np.testing.assert_array_equal(largest_region(mask), largest(mask))
    empty = np.zeros((4, 5, 6), bool)
    assert bounding_box(empty) is None and not largest_region(empty).any()


def test_the_feret_diameter_on_a_regions_surface_is_the_whole_regions():
    spacing = (1.5, 0.7, 0.7)
    mask = largest(_blobs((40, 50, 60), seed=2) > 0.5)
    voxels = np.argwhere(mask)
    surface = surface_voxels(voxels)
    assert len(surface) < len(voxels)
    assert feret_diameter_mm(surface, spacing) == feret_diameter_mm(voxels, spacing)


def test_a_regions_surface_made_a_block_of_voxels_at_a_time_is_the_whole_regions(monkeypatch):
    mask = largest(_blobs((40, 50, 60), seed=2) > 0.5)
    voxels = np.argwhere(mask)
    lo = voxels.min(axis=0)
    box = mask[tuple(slice(a, b + 1) for a, b in zip(lo, voxels.max(axis=0)))]
    plain = np.argwhere(box & ~ndimage.binary_erosion(box, border_value=0)) + lo
    monkeypatch.setattr(findings, "_VOXELS_A_BLOCK", 500)
    monkeypatch.setattr(postprocess, "_BLOCK", 2 * 50 * 60)
    np.testing.assert_array_equal(surface_voxels(voxels), plain)


def test_the_slice_axis_resampled_in_rows_is_nnunets_resampling():
    resampling_mod = pytest.importorskip(
        "nnunetv2.preprocessing.resampling.default_resampling",
        reason="nnunetv2 (the reference resampling) is not installed (make install)")
    image = (_blobs((12, 30, 34), seed=3) * 10).astype(np.float32)
    spacing, target = (5.0, 0.7, 0.7), (2.0, 0.8, 0.8)  # anisotropic: z apart, 30 rows out
    shape = (30, 26, 30)
    for order_z in (0, 1):
        ours = resample(image, shape, spacing, target, 3, order_z, Resampling(3, order_z),
                        dtype=np.float32)
        theirs = resampling_mod.resample_data_or_seg(
            image[None], shape, is_seg=False, axis=0, order=3, do_separate_z=True,
            order_z=order_z, dtype_out=np.float32)[0]
        np.testing.assert_array_equal(ours, theirs)


def test_an_outcome_expands_its_crop_to_the_series_grid_only_when_asked():
    rng = np.random.default_rng(4)
    crop = rng.random((3, 4, 5, 6)).astype(np.float32)
    box = (slice(2, 6), slice(1, 6), slice(3, 9))
    outcome = Outcome(Detection(0.0, False, 0.0), crop, box, (8, 9, 10), None)
    full = outcome.probabilities
    assert full.shape == (3, 8, 9, 10)
    np.testing.assert_array_equal(full[(slice(None), *box)], crop)
    outside = np.ones((8, 9, 10), bool)
    outside[box] = False
    assert (full[0][outside] == 1).all() and (full[1:][:, outside] == 0).all()
    with pytest.raises(ValueError, match="do not fill the box"):
        Outcome(Detection(0.0, False, 0.0), crop, (slice(0, 4),) * 3, (8, 9, 10), None)
