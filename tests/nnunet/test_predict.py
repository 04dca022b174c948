"""screen predict: one series (NIfTI or DICOM) through an imported model, maps written in the
input's own grid under its own affine, and orientation handled as the card states: turned to
L-P-S without resampling, obliquity ignored as nnU-Net ignores it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from screen.cli import app
from screen.model.package import ModelPackage
from screen.nnunet.importer import ImportOptions, import_nnunet
from screen.nnunet.predictor import NnunetModel, predict_array
from tests.conftest import REAL_CT, need
from tests.nnunet.folders import PANCREAS_MODEL, write_folder

nib = pytest.importorskip("nibabel", reason="nibabel is not installed (make install)")
runner = CliRunner()


@pytest.fixture(scope="module")
def pancreas_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The PANORAMA pancreas model's real plans (9 x 4.5 x 4.5 mm) with tiny seeded weights."""
    root = tmp_path_factory.mktemp("pancreas")
    folder = write_folder(root, PANCREAS_MODEL, features=(4, 8, 16), patch=(16, 32, 32))
    import_nnunet(folder, root / "pkg", ImportOptions(mirroring=False))
    return root / "pkg"


def _predict(package: Path, source: Path, tmp_path: Path):
    labels, probs = tmp_path / "labels.nii.gz", tmp_path / "probs.nii.gz"
    result = runner.invoke(app, ["predict", str(source), "--model", str(package), "--out",
                                 str(labels), "--probabilities", str(probs), "--backend", "onnxruntime"])
    assert result.exit_code == 0, result.output
    return nib.load(str(labels)), nib.load(str(probs)), result.output


def test_the_real_ct_gets_maps_in_its_own_grid(pancreas_package: Path, tmp_path: Path) -> None:
    source = need(REAL_CT / "totalsegmentator" / "example_ct_sm.nii.gz")
    labels, probs, output = _predict(pancreas_package, source, tmp_path)
    ct = nib.load(str(source))
    assert labels.shape == ct.shape and probs.shape == (*ct.shape, 2)
    assert np.allclose(labels.affine, ct.affine) and np.allclose(probs.affine, ct.affine)
    assert probs.get_data_dtype() == np.float32 and labels.get_data_dtype() == np.uint8
    p = np.asanyarray(probs.dataobj)
    assert np.abs(p.sum(axis=-1) - 1).max() < 1e-5
    assert (p.argmax(axis=-1) == np.asanyarray(labels.dataobj)).all()
    detection = json.loads(output[:output.rindex("}") + 1])
    assert set(detection) >= {"score", "pancreas_found", "lesion_center_lps", "lesion_location"}
    assert detection["calibrated"] is False
    # The same numbers as the model run directly on the image turned to L-P-S.
    hu = np.asanyarray(ct.dataobj).astype(np.float32).transpose(2, 1, 0)[:, ::-1, ::-1]  # RAS → LPS
    zooms = ct.header.get_zooms()
    model = NnunetModel.open(ModelPackage.load(pancreas_package), "onnxruntime")
    direct = predict_array(model, hu, (zooms[2], zooms[1], zooms[0]), mirroring=False)
    np.testing.assert_allclose(p[..., 1], direct[1][:, ::-1, ::-1].transpose(2, 1, 0), atol=1e-6)


def _write_nifti(path: Path, data_ijk: np.ndarray, affine: np.ndarray) -> Path:
    nib.save(nib.Nifti1Image(data_ijk.astype(np.int16), affine), str(path))
    return path


def test_flipped_and_oblique_series_give_the_same_maps(pancreas_package: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    data = (rng.normal(40, 60, (40, 36, 12)) + np.linspace(-200, 200, 40)[:, None, None])  # i, j, k
    spacing = np.diag([2.0, 2.5, 6.0, 1.0])
    straight = _write_nifti(tmp_path / "straight.nii.gz", data, spacing)
    _, reference, _ = _predict(pancreas_package, straight, tmp_path / "a")
    # The same patient space, stored with i and k reversed.
    flip = spacing.copy()
    flip[:3, 0] *= -1
    flip[:3, 2] *= -1
    flip[:3, 3] = spacing[:3, :3] @ [data.shape[0] - 1, 0, data.shape[2] - 1]
    flipped = _write_nifti(tmp_path / "flipped.nii.gz", data[::-1, :, ::-1], flip)
    _, got, _ = _predict(pancreas_package, flipped, tmp_path / "b")
    np.testing.assert_allclose(np.asanyarray(got.dataobj)[::-1, :, ::-1],
                               np.asanyarray(reference.dataobj), atol=1e-6)
    # Tilted by 12 degrees: the voxels are what the model sees, as in nnU-Net.
    angle = np.deg2rad(12)
    rotation = np.eye(4)
    rotation[:2, :2] = [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
    oblique = _write_nifti(tmp_path / "oblique.nii.gz", data, rotation @ spacing)
    labels, got, _ = _predict(pancreas_package, oblique, tmp_path / "c")
    assert np.allclose(labels.affine, rotation @ spacing)
    np.testing.assert_allclose(np.asanyarray(got.dataobj), np.asanyarray(reference.dataobj), atol=1e-6)


def test_a_dicom_series_gets_maps_on_its_grid(pancreas_package: Path, tmp_path: Path) -> None:
    from tests.volume.conftest import write_ct_series

    rng = np.random.default_rng(5)
    slices = [(rng.normal(1040, 50, (30, 34))).astype(np.int16) for _ in range(10)]
    folder = write_ct_series(tmp_path / "series", slices, [(0.0, 0.0, 6.0 * n) for n in range(10)],
                             pixel_spacing=(2.5, 2.0), intercept=-1024.0)
    labels, probs, output = _predict(pancreas_package, folder, tmp_path)
    assert labels.shape == (34, 30, 10)  # (columns, rows, slices): i, j, k
    assert nib.aff2axcodes(labels.affine) == ("L", "P", "S")  # DICOM's rows run to the left
    assert np.allclose(labels.affine[:3, 3], [0, 0, 0])
    assert np.allclose(np.abs(np.diag(labels.affine)[:3]), [2.0, 2.5, 6.0])
    hu = np.stack(slices).astype(np.float32) - 1024
    model = NnunetModel.open(ModelPackage.load(pancreas_package), "onnxruntime")
    direct = predict_array(model, hu, (6.0, 2.5, 2.0), mirroring=False)
    np.testing.assert_allclose(np.asanyarray(probs.dataobj)[..., 1], direct[1].transpose(2, 1, 0), atol=1e-6)
    assert '"score"' in output


def test_predict_refuses_odd_inputs_outputs_and_models(pancreas_package: Path, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    result = runner.invoke(app, ["predict", str(tmp_path / "notes.txt"), "--model",
                                 str(pancreas_package), "--out", str(tmp_path / "l.nii.gz")])
    assert result.exit_code == 2
    assert "neither a DICOM series folder nor a NIfTI file" in " ".join(result.output.split())
    result = runner.invoke(app, ["predict", str(tmp_path / "notes.txt"), "--model",
                                 str(pancreas_package), "--out", str(tmp_path / "l.png")])
    assert result.exit_code == 2 and "outputs are NIfTI files" in " ".join(result.output.split())
    result = runner.invoke(app, ["predict", str(tmp_path / "notes.txt"), "--model",
                                 "pancreas-phantom-v1", "--out", str(tmp_path / "l.nii.gz")])
    assert result.exit_code == 2 and "is not an imported model" in " ".join(result.output.split())
    assert not (tmp_path / "l.nii.gz").exists()
