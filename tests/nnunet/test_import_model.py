"""screen import-model nnunet: real PANORAMA plans with seeded weights in nnU-Net's on-disk
format → model packages, and every refusal with its one-line reason and nothing written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from screen.cli import app
from screen.model.package import ModelPackage
from screen.nnunet.card import NnunetCard
from tests.nnunet.folders import DETECTOR_MODEL, PANCREAS_MODEL, needs_architectures, write_folder

runner = CliRunner()
TINY = dict(features=(4, 8, 8), patch=(16, 32, 32))


def said(result) -> str:
    """The output as one line of words, however the terminal wrapped it."""
    return " ".join(result.output.split())


@pytest.fixture(scope="module")
def detector_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_folder(tmp_path_factory.mktemp("detector"), DETECTOR_MODEL, folds=(0, 1), **TINY)


def _import(*args: str):
    return runner.invoke(app, ["import-model", "nnunet", *args])


def test_the_detector_imports_with_a_card_from_its_plans(detector_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "pdac"
    result = _import(str(detector_folder), "--out", str(out))
    assert result.exit_code == 0, said(result)
    package = ModelPackage.load(out)
    card = package.card
    assert isinstance(card, NnunetCard)
    plans = json.loads((DETECTOR_MODEL / "plans.json").read_text())
    stats = plans["foreground_intensity_properties_per_channel"]["0"]
    assert card.spacing == pytest.approx(plans["configurations"]["3d_fullres"]["spacing"])
    assert card.patch_size == (16, 32, 32)
    assert (card.intensity.mean, card.intensity.std) == pytest.approx((stats["mean"], stats["std"]))
    assert (card.intensity.lower, card.intensity.upper) == (stats["percentile_00_5"], stats["percentile_99_5"])
    assert (card.data_resampling.order, card.data_resampling.order_z) == (3, 0)
    assert card.probability_resampling.order == 1
    assert card.classes[1] == "tumor" and card.lesion_label == "tumor"
    assert card.pancreas_label == "pancreas" and card.index("pancreas") == 4
    assert [n.fold for n in card.networks.values()] == ["0", "1"]
    assert card.mirror_axes == (0, 1, 2) and card.tile_step == 0.5
    # A custom trainer's name is kept, without its code.
    assert card.source["trainer"] == "nnUNetTrainer_Loss_CE_checkpoints"
    assert card.source["folder"] == str(detector_folder.resolve())
    assert len(card.source["checkpoint_sha256"]["0"]) == 64
    assert not card.calibrated and "uncalibrated" in card.limitations[0]
    import onnx

    model = onnx.load(str(out / "fold_0.onnx"))
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param for d in dims] == ["n", "", "k", "j", "i"]  # dynamic batch and space
    assert (out / "fold_1.pt").is_file()


def test_older_plans_without_an_architecture_entry_are_rebuilt(tmp_path: Path) -> None:
    folder = write_folder(tmp_path, PANCREAS_MODEL, features=(4, 8, 16), patch=(16, 32, 32))
    out = tmp_path / "pancreas"
    result = _import(str(folder), "--out", str(out), "--name", "panorama-pancreas")
    assert result.exit_code == 0, said(result)
    card = ModelPackage.load(out).card
    assert card.name == "panorama-pancreas"
    assert card.architecture.class_name.endswith("PlainConvUNet")
    assert card.architecture.kwargs["features_per_stage"] == [4, 8, 16]
    assert card.lesion_label is None and card.pancreas_label == "pancreas"
    assert card.spacing == (9.0, 4.5, 4.5)


def test_folds_checkpoint_mirroring_and_labels_can_be_chosen(tmp_path: Path) -> None:
    folder = write_folder(tmp_path, DETECTOR_MODEL, folds=(0, 1, 2), checkpoint="checkpoint_best_panorama.pth", **TINY)
    out = tmp_path / "pkg"
    result = _import(str(folder), "--out", str(out), "--folds", "2,0", "--checkpoint",
                     "checkpoint_best_panorama.pth", "--no-mirroring", "--lesion-label", "5",
                     "--pancreas-label", "pancreas")
    assert result.exit_code == 0, said(result)
    card = ModelPackage.load(out).card
    assert [n.fold for n in card.networks.values()] == ["2", "0"]
    assert card.mirror_axes is None
    assert card.lesion_label == "pancreatic duct"


def _remove(path: Path) -> None:
    path.unlink()


def _break_plans_architecture(folder: Path) -> None:
    plans = json.loads((folder / "plans.json").read_text())
    plans["configurations"]["3d_fullres"]["architecture"]["network_class_name"] = "my_lab.SwinUNETR"
    (folder / "plans.json").write_text(json.dumps(plans))


def _widen_plans(folder: Path) -> None:
    plans = json.loads((folder / "plans.json").read_text())
    plans["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"]["features_per_stage"] = [8, 16, 16]
    (folder / "plans.json").write_text(json.dumps(plans))


@pytest.mark.parametrize(("damage", "args", "reason"), [
    (lambda f: _remove(f / "plans.json"), (), "no plans.json; not an nnU-Net trained-model folder"),
    (lambda f: _remove(f / "dataset.json"), (), "no dataset.json; not an nnU-Net trained-model folder"),
    (lambda f: [shutil.rmtree(p) for p in f.glob("fold_*")], (), "no fold_N folder holds checkpoint_final.pth"),
    (_break_plans_architecture, (), "unknown network architecture 'my_lab.SwinUNETR'"),
    (_widen_plans, (), "weights do not fit the plans' architecture"),
    (lambda f: None, ("--folds", "3"), "no fold_3/checkpoint_final.pth; present: 0, 1"),
    (lambda f: None, ("--lesion-label", "liver"), "no label 'liver' in dataset.json"),
    (lambda f: (f / "fold_0" / "checkpoint_final.pth").write_bytes(b"not a checkpoint"), (),
     "not a readable nnU-Net checkpoint"),
], ids=["no-plans", "no-dataset", "no-fold", "unknown-architecture", "weights-do-not-fit",
        "missing-fold", "unknown-label", "broken-checkpoint"])
def test_a_folder_that_is_not_a_usable_model_is_refused(
    detector_folder: Path, tmp_path: Path, damage, args: tuple[str, ...], reason: str,
) -> None:
    folder = tmp_path / detector_folder.name
    shutil.copytree(detector_folder, folder)
    damage(folder)
    out = tmp_path / "pkg"
    result = _import(str(folder), "--out", str(out), *args)
    assert result.exit_code == 2
    assert reason in said(result)
    assert said(result).count("error:") == 1 and "Traceback" not in said(result)
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [folder.name]  # no staging left


def test_mirroring_the_checkpoint_forbids_is_refused(tmp_path: Path) -> None:
    folder = write_folder(tmp_path, DETECTOR_MODEL, mirror_axes=None, **TINY)
    result = _import(str(folder), "--out", str(tmp_path / "pkg"), "--mirroring")
    assert result.exit_code == 2
    assert "the checkpoint allows no mirroring" in said(result)
    assert not (tmp_path / "pkg").exists()


def test_an_existing_package_folder_is_not_overwritten(detector_folder: Path, tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "mine.txt").write_text("keep")
    result = _import(str(detector_folder), "--out", str(tmp_path / "pkg"))
    assert result.exit_code == 2
    assert "already exists" in said(result)
    assert (tmp_path / "pkg" / "mine.txt").read_text() == "keep"


def test_onnx_and_torch_give_the_checkpoint_network_s_logits(detector_folder: Path, tmp_path: Path) -> None:
    needs_architectures()
    import torch

    from screen.backends import load_runner
    from screen.nnunet.folder import read_folder
    from screen.nnunet.network import build_network, load_weights, read_checkpoint

    out = tmp_path / "pkg"
    assert _import(str(detector_folder), "--out", str(out)).exit_code == 0
    package = ModelPackage.load(out)
    folder = read_folder(detector_folder)
    net = build_network(folder.architecture, len(folder.labels))
    load_weights(net, read_checkpoint(detector_folder / "fold_1" / "checkpoint_final.pth"))
    x = np.random.default_rng(1).normal(size=(3, 1, 16, 32, 64)).astype(np.float32)  # a batch, another size
    with torch.no_grad():
        expected = net(torch.from_numpy(x)).numpy()
    for backend in ("onnxruntime", "torch"):
        got = load_runner(package, "fold_1", backend).run(x)
        assert got.shape == (3, 7, 16, 32, 64)
        np.testing.assert_allclose(got, expected, atol=1e-4)


def test_doctor_lists_imported_models(detector_folder: Path, tmp_path: Path, monkeypatch) -> None:
    from rich.console import Console

    from screen.doctor import doctor_report, render_doctor

    assert _import(str(detector_folder), "--out", str(tmp_path / "site" / "pdac"), "--name",
                   "pdac").exit_code == 0
    monkeypatch.setenv("SCREEN_ENGINES", str(tmp_path / "site"))
    report = doctor_report(cache=tmp_path / "cache")
    imported = [m for m in report.models if m.name == "pdac"]
    assert imported and imported[0].kind == "imported nnU-Net"
    assert imported[0].detail == "2 fold(s), single model, uncalibrated"
    assert any(m.kind == "bundled" for m in report.models)
    console = Console(record=True, width=250)
    render_doctor(report, console)
    assert "imported nnU-Net" in console.export_text()
