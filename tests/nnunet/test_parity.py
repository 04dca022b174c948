"""screen's nnU-Net inference against nnU-Net's own predictor on generated CT: the same
probabilities (max abs difference under 1e-3) and labels (>= 99.9 % of voxels), anisotropic
and isotropic, mirrored or not, one fold or two, PlainConvUNet and ResidualEncoderUNet,
through ONNX Runtime and torch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from screen.model.package import ModelPackage
from screen.nnunet.importer import ImportOptions, import_nnunet
from screen.nnunet.predictor import NnunetModel, predict_array
from tests.nnunet.folders import DETECTOR_MODEL, write_folder

pytest.importorskip("nnunetv2", reason="nnunetv2 (the reference predictor) is not installed (make install)")

TINY = dict(features=(4, 8, 8), patch=(16, 32, 32))
# (name, shape, spacing): 5 mm slices are resampled apart (nearest along z); 1.5 mm are not.
VOLUMES = {
    "anisotropic": ((6, 36, 32), (5.0, 0.8, 0.8)),
    "isotropic": ((12, 24, 22), (1.5, 1.5, 1.5)),
}


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Tiny networks run fastest on one thread; torch's default of all cores only contends."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def ct_like(shape: tuple[int, int, int], seed: int) -> np.ndarray:
    """A body of soft tissue in air, an organ and a darker lesion, a zero border (scanner padding)."""
    rng = np.random.default_rng(seed)
    k, j, i = np.indices(shape, dtype=float)
    centre = np.array(shape) / 2
    body = ((j - centre[1]) / (0.42 * shape[1])) ** 2 + ((i - centre[2]) / (0.45 * shape[2])) ** 2 < 1
    hu = np.where(body, 40.0, -1000.0) + rng.normal(0, 15, shape)
    organ = ((k - centre[0]) ** 2 / 9 + (j - centre[1]) ** 2 / 30 + (i - centre[2] - 3) ** 2 / 40) < 1
    hu[organ] = 110 + rng.normal(0, 10, int(organ.sum()))
    hu[(k - centre[0]) ** 2 + (j - centre[1]) ** 2 + (i - centre[2] - 3) ** 2 < 6] = 30
    hu[:, :2] = 0
    return hu.astype(np.float32)


def reference(folder: Path, folds: tuple[int, ...], mirroring: bool, image: np.ndarray,
              spacing: tuple[float, ...]) -> np.ndarray:
    """nnU-Net's predictor with the network nnU-Net itself builds from the plans."""
    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    plans = json.loads((folder / "plans.json").read_text())
    dataset = json.loads((folder / "dataset.json").read_text())
    manager = PlansManager(plans)
    config = manager.get_configuration("3d_fullres")
    network = get_network_from_plans(
        config.network_arch_class_name, config.network_arch_init_kwargs,
        config.network_arch_init_kwargs_req_import, 1, len(dataset["labels"]),
        allow_init=False, deep_supervision=False)
    checkpoints = [torch.load(folder / f"fold_{f}" / "checkpoint_final.pth", weights_only=False)
                   for f in folds]
    predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=mirroring,
                                device=torch.device("cpu"), allow_tqdm=False)
    predictor.manual_initialization(
        network, manager, config, [c["network_weights"] for c in checkpoints], dataset,
        checkpoints[0]["trainer_name"], checkpoints[0]["inference_allowed_mirroring_axes"])
    _, probabilities = predictor.predict_single_npy_array(
        image[None], {"spacing": list(spacing)}, None, None, True)
    return probabilities


CASES = [  # architecture, folds, mirroring, volume, backends
    ("plain", (0, 1), True, "anisotropic", ("onnxruntime", "torch")),
    ("plain", (0,), False, "isotropic", ("onnxruntime", "torch")),
    ("residual", (0,), True, "isotropic", ("onnxruntime",)),
    ("residual", (0, 1), False, "anisotropic", ("torch",)),
]


@pytest.mark.parametrize(("architecture", "folds", "mirroring", "volume", "backends"), CASES,
                         ids=[f"{a}-{len(f)}fold-{'mirror' if m else 'nomirror'}-{v}"
                              for a, f, m, v, _ in CASES])
def test_probabilities_match_nnunet_s_predictor(
    tmp_path: Path, architecture: str, folds: tuple[int, ...], mirroring: bool, volume: str,
    backends: tuple[str, ...],
) -> None:
    folder = write_folder(tmp_path, DETECTOR_MODEL, folds=folds, residual=architecture == "residual",
                          seed=len(folds), **TINY)
    import_nnunet(folder, tmp_path / "pkg", ImportOptions(mirroring=mirroring))
    package = ModelPackage.load(tmp_path / "pkg")
    shape, spacing = VOLUMES[volume]
    image = ct_like(shape, seed=3)
    expected = reference(folder, folds, mirroring, image, spacing)
    assert expected.shape == (7, *shape)
    assert expected.max(axis=(1, 2, 3)).min() < 0.99  # the weights give several classes a say
    for backend in backends:
        got = predict_array(NnunetModel.open(package, backend), image, spacing)
        assert got.shape == expected.shape and got.dtype == np.float32
        assert np.abs(got - expected).max() < 1e-3, backend
        assert (got.argmax(0) == expected.argmax(0)).mean() >= 0.999, backend
