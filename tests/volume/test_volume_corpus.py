"""Real files: every transfer syntax, Enhanced CT, a flipped slice and a tilted head CT,
checked voxel by voxel and centre by centre against SimpleITK."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import compare_with_sitk, series_of, sitk_affine, sitk_image
from scipy import ndimage

from screen.volume import VolumeError, load_volume

pytest.importorskip("SimpleITK", reason="SimpleITK is the independent reader")

CORNERSTONE = "cornerstone/testImages"
LOSSLESS = [
    "CTImage.dcm",
    "CTImage.dcm_BigEndianExplicitTransferSyntax_1.2.840.10008.1.2.2.dcm",
    "CTImage.dcm_DeflatedExplicitVRLittleEndianTransferSyntax_1.2.840.10008.1.2.1.99.dcm",
    "CTImage.dcm_JPEG2000LosslessOnlyTransferSyntax_1.2.840.10008.1.2.4.90.dcm",
    "CTImage.dcm_JPEGLSLosslessTransferSyntax_1.2.840.10008.1.2.4.80.dcm",
    "CTImage.dcm_JPEGProcess14SV1TransferSyntax_1.2.840.10008.1.2.4.70.dcm",
    "CTImage.dcm_JPEGProcess14TransferSyntax_1.2.840.10008.1.2.4.57.dcm",
    "CTImage.dcm_LittleEndianExplicitTransferSyntax_1.2.840.10008.1.2.1.dcm",
    "CTImage.dcm_LittleEndianImplicitTransferSyntax_1.2.840.10008.1.2.dcm",
    "CTImage.dcm_RLELosslessTransferSyntax_1.2.840.10008.1.2.5.dcm",
]
# Lossy: two decoders may round differently, by one stored unit (slope up to 32 HU).
LOSSY = {
    "CTImage.dcm_JPEG2000TransferSyntax_1.2.840.10008.1.2.4.91.dcm": 1.0,
    "CTImage.dcm_JPEGLSLossyTransferSyntax_1.2.840.10008.1.2.4.81.dcm": 1.0,
    "CTImage.dcm_JPEGProcess1TransferSyntax_1.2.840.10008.1.2.4.50.dcm": 32.2,
    "CTImage.dcm_JPEGProcess2_4TransferSyntax_1.2.840.10008.1.2.4.51.dcm": 2.1,
}
RETIRED = [
    "CTImage.dcm_JPEGProcess6_8TransferSyntax_1.2.840.10008.1.2.4.53.dcm",
    "CTImage.dcm_JPEGProcess10_12TransferSyntax_1.2.840.10008.1.2.4.55.dcm",
]


@pytest.mark.parametrize("name", LOSSLESS)
def test_lossless_syntaxes_match_simpleitk_exactly(corpus: Path, name: str) -> None:
    path = corpus / CORNERSTONE / name
    volume = load_volume(series_of([path]))
    assert volume.hu.dtype == np.float32 and volume.hu.shape == (1, 512, 512)
    compare_with_sitk(volume, sitk_image([path]), atol=0.0)


@pytest.mark.parametrize("name", sorted(LOSSY))
def test_lossy_syntaxes_match_simpleitk_within_one_stored_unit(corpus: Path, name: str) -> None:
    path = corpus / CORNERSTONE / name
    volume = load_volume(series_of([path]))
    compare_with_sitk(volume, sitk_image([path]), atol=LOSSY[name])


@pytest.mark.parametrize("name", RETIRED)
def test_retired_jpeg_syntaxes_decode_through_gdcm(corpus: Path, name: str) -> None:
    pytest.importorskip("gdcm", reason="python-gdcm decodes the retired JPEG processes")
    path = corpus / CORNERSTONE / name
    volume = load_volume(series_of([path]))
    compare_with_sitk(volume, sitk_image([path]), atol=1e-3)


def test_file_without_pixel_data_is_refused_with_reason(corpus: Path) -> None:
    path = corpus / CORNERSTONE / "no-pixel-data.dcm"
    with pytest.raises(VolumeError, match="lack ImagePositionPatient"):
        load_volume(series_of([path]))


def test_flipped_orientation_is_turned_to_lps_without_resampling(corpus: Path) -> None:
    path = corpus / "pydicom-data/data_store/data/explicit_VR-UN.dcm"
    volume = load_volume(series_of([path]))
    # The file's columns run towards anterior ([1,0,0,0,-1,0]); ours run posterior.
    assert volume.affine[1, 1] > 0 and volume.affine[0, 0] > 0
    compare_with_sitk(volume, sitk_image([path]), atol=0.0)


def test_three_slice_abdomen_series_matches_simpleitk(corpus: Path) -> None:
    paths = sorted((corpus / "dcmqi/data/segmentations/ct-3slice").glob("*.dcm"))
    volume = load_volume(series_of(paths))
    assert volume.hu.shape == (3, 512, 512) and volume.warnings == ()
    assert volume.affine[2, 2] > 0  # k runs towards the head
    # PixelPaddingValue -2000 with intercept -1024: SimpleITK shows -3024, we show air.
    compare_with_sitk(volume, sitk_image(paths), atol=0.0, padding_hu=-3024.0)
    z_of_k = volume.to_lps(np.array([[k, 0, 0] for k in range(3)]))[:, 2]
    assert np.all(np.diff(z_of_k) > 0)


def test_enhanced_ct_frames_placed_from_functional_groups(corpus: Path) -> None:
    path = corpus / "pydicom-data/data_store/data/eCT_Supplemental.dcm"
    volume = load_volume(series_of([path]))
    # Rows ran towards patient right and frames were stored head first: both turned.
    assert volume.hu.shape == (2, 512, 512)
    assert volume.affine[0, 0] > 0 and volume.affine[2, 2] == pytest.approx(10.0)
    # Rescale intercept -1024 comes from the shared Pixel Value Transformation group.
    assert volume.hu.min() == -1024.0
    compare_with_sitk(volume, sitk_image([path]), atol=0.0)


def test_tilted_ge_head_ct_is_unsheared_resampled_and_sensible(corpus: Path) -> None:
    paths = sorted((corpus / "dcm_qa_ct/In/GE").glob("*.dcm"))
    series = series_of(paths)
    volume = load_volume(series)
    # 144.1 mm from first to last slice at the 4.0 mm median gap: 37 slices.
    assert volume.hu.shape == (37, 512, 512)
    k_mm, j_mm, i_mm = volume.spacing
    assert k_mm == pytest.approx(144.088 / 36, abs=1e-3)
    assert (j_mm, i_mm) == pytest.approx((0.4882812, 0.4882812))
    # Orthogonal: the shear is gone from the affine.
    columns = volume.affine[:3, :3] / np.linalg.norm(volume.affine[:3, :3], axis=0)
    np.testing.assert_allclose(columns.T @ columns, np.eye(3), atol=1e-9)
    assert any("gantry tilt of 18.5 degrees corrected" in w for w in volume.warnings)
    assert any("13 gap(s) of 7.0-7.0 mm" in w for w in volume.warnings)
    # Padding (-1500 stored) became air; the brain reads as soft tissue.
    assert volume.hu.min() >= -1024.0
    middle = volume.hu[18, 200:312, 200:312]
    assert 0.0 < float(np.median(middle)) < 80.0
    first = {i.sop_instance_uid for i in series.instances[:1]}
    last = {i.sop_instance_uid for i in series.instances[-1:]}
    assert {volume.slice_uids[0]} == first and {volume.slice_uids[-1]} == last

    # The first and last output slices lie on source slices: sample those source files
    # (read by SimpleITK) at our voxel centres with bilinear interpolation, and compare.
    for k, path in ((0, series.instances[0].path), (36, series.instances[-1].path)):
        image = sitk_image([path])
        ref = np_array(image)
        inverse = np.linalg.inv(sitk_affine(image))
        j, i = np.meshgrid(np.arange(512), np.arange(512), indexing="ij")
        kji = np.stack([np.full_like(j, k), j, i], axis=-1).reshape(-1, 3)
        xyz = volume.to_lps(kji) @ inverse[:3, :3].T + inverse[:3, 3]
        assert np.abs(xyz[:, 2]).max() < 1e-3  # on the source slice's plane
        inside = ((xyz[:, 0] >= 0) & (xyz[:, 0] <= 511) & (xyz[:, 1] >= 0)
                  & (xyz[:, 1] <= 511))
        coords = [xyz[inside, 1], xyz[inside, 0]]
        expected = ndimage.map_coordinates(ref, coords, order=1)
        # Where the interpolation touches padding (-1500 stored) the two differ by design.
        near_padding = ndimage.map_coordinates((ref == -1500).astype(float), coords, order=1)
        ours = volume.hu[k].reshape(-1)[inside]
        real = near_padding == 0
        assert real.mean() > 0.3
        np.testing.assert_allclose(ours[real], expected[real], atol=0.05)


def np_array(image) -> np.ndarray:
    import SimpleITK as sitk

    return sitk.GetArrayFromImage(image)[0].astype(np.float64)
