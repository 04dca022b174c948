"""Writing a trained network as the package's artifacts: ONNX (canonical) and a state_dict."""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Mapping
from pathlib import Path

import torch

from screen.model.card import CARD_FILE, ModelCard
from screen.model.network import UNet3D, WithSoftmax

logger = logging.getLogger(__name__)

OPSET = 17
_SPATIAL = {2: "k", 3: "j", 4: "i"}


def export_onnx(net: UNet3D, path: Path, input_name: str = "image", output_name: str = "probs") -> None:
    """ONNX with dynamic spatial axes; BatchNorm is folded into the convolutions on export."""
    module = WithSoftmax(net).eval()
    m = net.shape_multiple
    example = torch.zeros(1, 1, 2 * m, 2 * m, 2 * m)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation notices are not ours to act on
        torch.onnx.export(
            module, (example,), str(path), dynamo=False, opset_version=OPSET,
            input_names=[input_name], output_names=[output_name],
            dynamic_axes={input_name: dict(_SPATIAL), output_name: dict(_SPATIAL)},
        )
    net.eval()
    logger.info("wrote %s", path)


def save_weights(net: UNet3D, path: Path) -> None:
    torch.save({k: v.detach().cpu() for k, v in net.state_dict().items()}, str(path))


def write_package(out: Path, nets: Mapping[str, UNet3D], card: ModelCard) -> None:
    """A whole package: each network's ONNX and weights under the card's names, then the card."""
    out.mkdir(parents=True, exist_ok=True)
    missing = set(card.networks) - set(nets)
    if missing:
        raise ValueError(f"no trained network for {sorted(missing)}")
    for name, network in card.networks.items():
        export_onnx(nets[name], out / network.onnx, network.input_name, network.output_name)
        save_weights(nets[name], out / network.torch)
    (out / CARD_FILE).write_text(json.dumps(card.to_dict(), indent=2) + "\n", encoding="utf-8")
