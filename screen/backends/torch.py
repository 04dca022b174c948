"""PyTorch: the package's weights (state_dict) in the network class, on the CPU or CUDA.

FP16 runs under CUDA autocast; INT8 is not offered here (use TensorRT or ONNX Runtime).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
from typing import TYPE_CHECKING

import numpy as np

from screen.backends.base import check_input

if TYPE_CHECKING:
    from screen.model.package import ModelPackage

logger = logging.getLogger(__name__)

NAME = "torch"
DEPENDENCIES = {"torch": "torch (a CUDA build for GPUs)"}


def is_available() -> tuple[bool, str]:
    # Asked without importing torch: importing it costs seconds in every worker process.
    if importlib.util.find_spec("torch") is None:
        return False, "torch is not installed"
    return True, f"torch {importlib.metadata.version('torch')}"


def auto_device(package: ModelPackage | None) -> tuple[str | None, str]:
    from screen.gpus import find_gpus

    gpus, why = find_gpus()
    if not gpus:  # no need to wake torch's CUDA runtime to learn that there is no GPU
        return None, f"no CUDA device for torch ({why}; ONNX Runtime is faster on the CPU)"
    import torch

    if torch.cuda.is_available():
        return "cuda:0", f"torch on {torch.cuda.get_device_name(0)}"
    return None, "torch sees no CUDA device (a CPU build of torch?)"


class TorchRunner:
    def __init__(self, module, multiple: int, precision: str, device: str):
        self._module = module
        self._multiple = multiple
        self.name = NAME
        self.precision = precision
        self.device = device

    def run(self, x: np.ndarray) -> np.ndarray:
        import torch

        x = check_input(x, self._multiple)
        tensor = torch.from_numpy(x).to(self.device)
        use_fp16 = self.precision == "fp16"
        with torch.inference_mode(), torch.autocast(
            device_type=tensor.device.type, dtype=torch.float16, enabled=use_fp16
        ):
            out = self._module(tensor)
        return out.float().cpu().numpy()


def load(package: ModelPackage, network: str, precision: str = "fp32", device: str = "cpu") -> TorchRunner:
    import torch

    from screen.backends import cpu_threads
    from screen.model.network import WithSoftmax, build

    if cpu_threads() and not device.startswith("cuda"):
        torch.set_num_threads(cpu_threads())
    card = package.network(network)
    if precision == "int8":
        raise ValueError("the torch backend has no int8; use tensorrt or onnxruntime with an int8 engine")
    if precision == "fp16" and not device.startswith("cuda"):
        raise ValueError("the torch backend runs fp16 on CUDA only; use fp32 on the CPU")
    state = torch.load(package.torch_path(network), map_location="cpu", weights_only=True)
    if getattr(package.card, "kind", "") == "nnunet":  # an imported nnU-Net: logits out
        from screen.nnunet.network import build_network

        module = build_network(package.card.architecture, len(package.card.classes))
        try:
            module.load_state_dict(state)
        except RuntimeError as exc:
            raise ValueError(f"{package.torch_path(network)}: weights do not fit the card's "
                             f"architecture: {exc}") from exc
        return TorchRunner(module.eval().to(device), card.shape_multiple, precision, device)
    net = build(card.widths, len(package.card.classes))
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        raise ValueError(f"{package.torch_path(network)}: weights do not fit widths {card.widths}: {exc}") from exc
    module = WithSoftmax(net).eval().to(device)
    return TorchRunner(module, card.shape_multiple, precision, device)
