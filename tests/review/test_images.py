"""Key images rendered from a real DICOM series and a detector-shaped Analysis."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from screen.review import render_series, volume_masks
from screen.review.images import (
    LESION_RGB,
    MIN_WIDTH_PX,
    PANCREAS_RGB,
    SOFT_TISSUE,
    Window,
    key_point,
)
from screen.review.pages import image_paths


def _pixels_of(image: Image.Image, rgb: tuple[int, int, int]) -> int:
    return int(np.all(np.asarray(image) == np.asarray(rgb, np.uint8), axis=-1).sum())


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * float((a & b).sum()) / float(a.sum() + b.sum())


def test_masks_come_back_onto_the_volume_voxels(lesion_case) -> None:
    masks = volume_masks(lesion_case.volume, lesion_case.analysis)
    assert masks.pancreas.shape == lesion_case.volume.hu.shape
    # Nearest resampling through a 1.5-voxel grid loses only a thin rim of the gland.
    assert _dice(masks.pancreas, lesion_case.labels > 0) > 0.8
    assert _dice(masks.lesion, lesion_case.labels == 2) > 0.5
    assert not (masks.lesion & ~masks.pancreas).any()


def test_masks_without_a_lesion_have_no_lesion(clean_case) -> None:
    masks = volume_masks(clean_case.volume, clean_case.analysis)
    assert masks.pancreas.any() and not masks.lesion.any()


def test_render_series_draws_the_lesion_and_the_gland(tmp_path: Path, lesion_case) -> None:
    page = render_series(tmp_path, lesion_case.series, lesion_case.volume, lesion_case.analysis,
                         lesion_case.row)
    assert page == tmp_path / "series" / f"{lesion_case.series.key}.html"
    paths = image_paths(tmp_path, lesion_case.series.key)
    for view in ("axial", "coronal"):
        with Image.open(paths[view]) as image:
            assert image.format == "PNG" and image.mode == "RGB"
            assert image.width >= MIN_WIDTH_PX
            assert _pixels_of(image, LESION_RGB) > 20, f"no lesion contour on the {view} image"
            assert _pixels_of(image, PANCREAS_RGB) > 20, f"no pancreas outline on the {view} image"
    with Image.open(paths["thumb"]) as thumb:
        thumb.verify()


def test_the_axial_slice_is_the_key_slice_and_the_coronal_keeps_the_aspect(tmp_path: Path,
                                                                           lesion_case) -> None:
    volume, detection = lesion_case.volume, lesion_case.analysis.detection
    masks = volume_masks(volume, lesion_case.analysis)
    k, _, _ = key_point(volume, detection, masks)
    assert k == detection.key_slice
    assert masks.lesion[k].any()
    render_series(tmp_path, lesion_case.series, volume, lesion_case.analysis, lesion_case.row)
    sk, _, si = volume.spacing
    n_k, _, n_i = volume.hu.shape
    with Image.open(image_paths(tmp_path, lesion_case.series.key)["coronal"]) as coronal:
        # Square pixels: height over width is the extent in mm along k over that along i.
        assert coronal.height / coronal.width == pytest.approx((n_k * sk) / (n_i * si), rel=0.02)


def test_without_a_lesion_the_images_pass_through_the_gland(tmp_path: Path, clean_case) -> None:
    render_series(tmp_path, clean_case.series, clean_case.volume, clean_case.analysis, clean_case.row)
    masks = volume_masks(clean_case.volume, clean_case.analysis)
    k, _, _ = key_point(clean_case.volume, clean_case.analysis.detection, masks)
    assert masks.pancreas[k].any()
    with Image.open(image_paths(tmp_path, clean_case.series.key)["axial"]) as axial:
        assert _pixels_of(axial, PANCREAS_RGB) > 20
        assert _pixels_of(axial, LESION_RGB) == 0


def test_soft_tissue_window_maps_its_edges_to_black_and_white() -> None:
    values = SOFT_TISSUE.apply(np.array([-1000.0, -160.0, 40.0, 240.0, 3000.0]))
    assert values.tolist() == [0, 0, 128, 255, 255]
    with pytest.raises(ValueError, match="window width must be positive"):
        Window(40.0, 0.0)


def test_a_row_for_another_series_is_refused(tmp_path: Path, lesion_case, clean_case) -> None:
    with pytest.raises(ValueError, match="row is for series"):
        render_series(tmp_path, lesion_case.series, lesion_case.volume, lesion_case.analysis,
                      clean_case.row)
