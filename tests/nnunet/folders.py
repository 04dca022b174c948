"""Writing nnU-Net trained-model folders as nnU-Net leaves them on disk: the real PANORAMA
plans and dataset files (optionally shrunk: fewer stages, narrower features, a smaller patch)
beside ``fold_N/checkpoint_*.pth`` files holding seeded random weights."""

from __future__ import annotations

import copy
import json
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import SHARED_DATA, need

PANORAMA = SHARED_DATA / "nnunet" / "panorama-baseline"
PANCREAS_MODEL = (PANORAMA / "Dataset103_PANORAMA_baseline_Pancreas_Segmentation"
                  / "nnUNetTrainer__nnUNetPlans__3d_fullres")
DETECTOR_MODEL = (PANORAMA / "Dataset104_PANORAMA_baseline_PDAC_Detection"
                  / "nnUNetTrainer_Loss_CE_checkpoints__nnUNetPlans__3d_fullres")


def needs_architectures() -> None:
    pytest.importorskip("dynamic_network_architectures",
                        reason="dynamic-network-architectures is not installed (make install)")


def shrink_plans(plans: dict, configuration: str, *, features: Sequence[int] | None = None,
                 patch: Sequence[int] | None = None, residual: bool = False,
                 spacing: Sequence[float] | None = None) -> dict:
    """A copy of the plans with fewer/narrower stages, a smaller patch and (for sweeps of
    whole generated archives) a coarser spacing; all else kept."""
    plans = copy.deepcopy(plans)
    config = plans["configurations"][configuration]
    if spacing is not None:
        config["spacing"] = list(spacing)
    n = len(features) if features is not None else None
    if patch is not None:
        config["patch_size"] = list(patch)
    if "architecture" in config:
        kw = config["architecture"]["arch_kwargs"]
        if n is not None:
            kw["n_stages"] = n
            kw["features_per_stage"] = list(features)
            for key in ("kernel_sizes", "strides", "n_conv_per_stage", "n_blocks_per_stage"):
                if key in kw:
                    kw[key] = kw[key][:n]
            kw["n_conv_per_stage_decoder"] = kw["n_conv_per_stage_decoder"][:n - 1]
        if residual:
            config["architecture"]["network_class_name"] = (
                "dynamic_network_architectures.architectures.unet.ResidualEncoderUNet")
            kw["n_blocks_per_stage"] = [1] + [2] * (kw["n_stages"] - 1)
            kw.pop("n_conv_per_stage", None)
            kw["n_conv_per_stage_decoder"] = [1] * (kw["n_stages"] - 1)
    elif n is not None:  # the older format
        config["UNet_base_num_features"] = features[0]
        config["unet_max_num_features"] = features[-1]
        for key in ("n_conv_per_stage_encoder", "conv_kernel_sizes", "pool_op_kernel_sizes"):
            config[key] = config[key][:n]
        config["n_conv_per_stage_decoder"] = config["n_conv_per_stage_decoder"][:n - 1]
    return plans


def write_folder(
    dest: Path, source: Path, *, folds: Sequence[int | str] = (0,), seed: int = 0,
    features: Sequence[int] | None = None, patch: Sequence[int] | None = None,
    residual: bool = False, trainer: str | None = None, spacing: Sequence[float] | None = None,
    checkpoint: str = "checkpoint_final.pth",
    mirror_axes: tuple[int, ...] | None = (0, 1, 2), configuration: str = "3d_fullres",
) -> Path:
    """A trained-model folder under ``dest`` named as nnU-Net names it."""
    import torch

    needs_architectures()
    need(source)
    name_trainer, plans_name, _ = source.name.split("__")
    folder = dest / f"{trainer or name_trainer}__{plans_name}__{configuration}"
    folder.mkdir(parents=True)
    plans = json.loads((source / "plans.json").read_text())
    plans = shrink_plans(plans, configuration, features=features, patch=patch, residual=residual,
                         spacing=spacing)
    (folder / "plans.json").write_text(json.dumps(plans, indent=2))
    shutil.copy(source / "dataset.json", folder / "dataset.json")
    dataset = json.loads((source / "dataset.json").read_text())
    from screen.nnunet.folder import _architecture
    from screen.nnunet.network import build_network

    arch = _architecture(plans["configurations"][configuration], folder / "plans.json")
    for i, fold in enumerate(folds):
        torch.manual_seed(seed * 100 + i)
        network = build_network(arch, len(dataset["labels"]))
        network.apply(network.initialize)  # nnU-Net's own He initialisation
        with torch.no_grad():  # biases away from 0, so the classes differ
            for module in network.modules():
                if isinstance(module, torch.nn.Conv3d) and module.bias is not None:
                    module.bias.normal_(0, 0.2)
        (folder / f"fold_{fold}").mkdir()
        torch.save({
            "network_weights": network.state_dict(),
            "optimizer_state": {}, "grad_scaler_state": None,
            "logging": {"mean_fg_dice": [np.float64(0.5)], "ema_fg_dice": [0.5]},
            "_best_ema": np.float64(0.5), "current_epoch": 1000,
            "init_args": {"plans": plans, "configuration": configuration, "fold": fold,
                          "dataset_json": dataset, "device": torch.device("cpu")},
            "trainer_name": trainer or name_trainer,
            "inference_allowed_mirroring_axes": mirror_axes,
        }, folder / f"fold_{fold}" / checkpoint)
    return folder
