"""Fixtures for the engine tests: a tiny model package exported from the real network code."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from screen.model.card import Calibration, Postprocess
from screen.model.package import ModelPackage

TINY_WIDTHS = (2, 4, 8, 16)


def write_tiny_package(folder: Path, seed: int = 0) -> ModelPackage:
    """The shipped package's card with tiny, randomly initialised networks (real exports)."""
    from screen.model.export import export_onnx, save_weights
    from screen.model.network import UNet3D
    from screen.training.card_writing import card_for
    from screen.training.recipe import LOCATE, SEGMENT

    torch.manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    networks = {}
    for card in (LOCATE, SEGMENT):
        card = dataclasses.replace(card, widths=TINY_WIDTHS)
        net = UNet3D(card.widths).eval()
        with torch.no_grad():  # favour the pancreas class so the detector reaches the segmenter
            net.head.bias.copy_(torch.tensor([0.0, 1.5, 0.5]))
        export_onnx(net, folder / card.onnx)
        save_weights(net, folder / card.torch)
        networks[card.name] = card
    card = dataclasses.replace(
        card_for(Calibration(("lesion_logit", "lesion_log_mm3"), (1.0, 0.1), 0.0), 0.5,
                    Postprocess(), {}, {}),
        networks=networks,
    )
    (folder / "model.json").write_text(json.dumps(card.to_dict(), indent=2), encoding="utf-8")
    return ModelPackage.load(folder)


@pytest.fixture(scope="session")
def tiny_package(tmp_path_factory: pytest.TempPathFactory) -> ModelPackage:
    return write_tiny_package(tmp_path_factory.mktemp("tiny") / "tiny-package")
