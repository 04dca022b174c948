"""The PANORAMA baseline's two-stage recipe on its real plans (tiny seeded weights): the
pancreas model localises, the detector looks at the widened crop, lesion candidates give the
score; a series without a pancreas is an ordinary result, never a crash."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from screen.cli import app
from screen.model.package import ModelPackage
from screen.nnunet import recipe
from screen.nnunet.findings import lesion_candidates
from screen.nnunet.predictor import NnunetModel
from screen.records import Volume
from tests.nnunet.folders import DETECTOR_MODEL, PANCREAS_MODEL, write_folder

runner = CliRunner()


def _bias_class(folder: Path, fold: int, channel: int, value: float) -> None:
    """Push one output class's bias, so seeded weights localise everywhere or nowhere."""
    path = folder / f"fold_{fold}" / "checkpoint_final.pth"
    checkpoint = torch.load(path, weights_only=False)
    weights = checkpoint["network_weights"]
    key = max(k for k in weights if k.startswith("decoder.seg_layers.") and k.endswith(".bias"))
    weights[key][channel] += value
    torch.save(checkpoint, path)


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("panorama")
    detector = write_folder(root / "det", DETECTOR_MODEL, features=(4, 8, 8), patch=(16, 32, 32),
                            spacing=(3.0, 3.0, 3.0), mirror_axes=None)
    found = write_folder(root / "found", PANCREAS_MODEL, features=(4, 8, 16), patch=(16, 32, 32),
                         mirror_axes=None)
    nothing = write_folder(root / "nothing", PANCREAS_MODEL, features=(4, 8, 16), patch=(16, 32, 32),
                           mirror_axes=None)
    _bias_class(found, 0, 1, 3.0)
    _bias_class(nothing, 0, 1, -50.0)
    _bias_class(detector, 0, 4, 3.0)  # pancreas, so the lesion mask covers the crop
    return {"detector": detector, "found": found, "nothing": nothing, "root": root}


def _volume(shape=(24, 60, 56), spacing=(5.0, 3.0, 3.0)) -> Volume:
    rng = np.random.default_rng(2)
    hu = rng.normal(40, 40, shape).astype(np.float32)
    affine = np.diag([spacing[2], spacing[1], spacing[0], 1.0])
    affine[:3, 3] = (-80.0, -90.0, 100.0)
    return Volume(hu=hu, affine=affine, slice_uids=tuple(str(n) for n in range(shape[0])))


def _import(folders, localiser: str, name: str) -> Path:
    out = folders["root"] / name
    result = runner.invoke(app, ["import-model", "nnunet", str(folders["detector"]), "--out", str(out),
                                 "--recipe", "panorama", "--localiser", str(folders[localiser])])
    assert result.exit_code == 0, result.output
    return out


def test_the_two_stages_run_end_to_end(folders) -> None:
    package = ModelPackage.load(_import(folders, "found", "panorama"))
    card = package.card
    assert card.recipe.margins_mm == (100.0, 50.0, 15.0)
    assert card.recipe.mask_labels == ("pancreas", "pancreatic duct")
    assert json.loads((package.path / "model.json").read_text())["recipe"]["kind"] == "panorama"
    assert ModelPackage.load(package.path / "localiser").card.spacing == (9.0, 4.5, 4.5)
    volume = _volume()
    outcome = recipe.run(NnunetModel.open(package, "onnxruntime"), volume)
    assert outcome.detection.pancreas_found
    assert outcome.probabilities.shape == (7, *volume.hu.shape)
    assert 0.0 <= outcome.detection.score <= 1.0
    if outcome.detection.lesion_center_lps is not None:
        assert 0 <= outcome.detection.key_slice < volume.hu.shape[0]


def test_no_pancreas_is_a_result_not_a_crash(folders) -> None:
    package = ModelPackage.load(_import(folders, "nothing", "panorama-nothing"))
    outcome = recipe.run(NnunetModel.open(package, "onnxruntime"), _volume())
    assert not outcome.detection.pancreas_found
    assert outcome.detection.score == 0.0 and outcome.detection.lesion_center_lps is None
    assert (outcome.probabilities[0] == 1).all()


def test_the_recipe_needs_its_localiser(folders, tmp_path: Path) -> None:
    result = runner.invoke(app, ["import-model", "nnunet", str(folders["detector"]), "--out",
                                 str(tmp_path / "p"), "--recipe", "panorama"])
    assert result.exit_code == 2
    assert "--recipe panorama needs --localiser FOLDER" in " ".join(result.output.split())
    assert not (tmp_path / "p").exists()


def test_candidates_follow_the_dynamic_threshold() -> None:
    prob = np.zeros((20, 20, 20), np.float32)
    prob[2:6, 2:6, 2:6] = 0.9   # 64 voxels: a candidate
    prob[3, 3, 3] = 0.95
    prob[12:15, 12:15, 12:15] = 0.5  # 27 voxels above 0.95 / 2.5: a second candidate
    prob[18, 18, 18] = 0.6  # one voxel: too small
    found = lesion_candidates(prob)
    assert found.peak == pytest.approx(0.95)
    assert len(found.voxels) == 64
    assert np.unique(found.map) == pytest.approx([0.0, 0.5, 0.95])
    assert (found.map[12:15, 12:15, 12:15] == 0.5).all() and found.map[18, 18, 18] == 0


def test_the_reported_candidate_travels_to_the_masks_on_the_volume_grid(folders) -> None:
    from screen.detect.imported import analyse_imported
    from screen.detect.masks import volume_masks

    package = ModelPackage.load(_import(folders, "found", "panorama-lesion"))
    volume = _volume()
    analysis = analyse_imported(volume, NnunetModel.open(package, "onnxruntime"))
    d = analysis.detection
    assert d.lesion_center_lps is not None and analysis.lesion is not None
    # Found on the crop, carried back onto the whole series' voxels.
    np.testing.assert_allclose(volume.to_lps(analysis.lesion.mean(axis=0)), d.lesion_center_lps,
                               atol=1e-9)
    masks = volume_masks(volume, analysis)
    assert masks.lesion.sum() == len(analysis.lesion)
    assert masks.lesion[tuple(analysis.lesion.T)].all()
