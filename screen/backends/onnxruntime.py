"""ONNX Runtime: the package's ONNX networks on the CPU, or on CUDA where that build is installed."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from screen.backends.base import check_input

if TYPE_CHECKING:
    from screen.model.package import ModelPackage

logger = logging.getLogger(__name__)

NAME = "onnxruntime"
DEPENDENCIES = {"onnxruntime": "onnxruntime>=1.18 (onnxruntime-gpu for CUDA)"}


def is_available() -> tuple[bool, str]:
    try:
        import onnxruntime as ort
    except ImportError:
        return False, "onnxruntime is not installed (pip install 'onnxruntime>=1.18')"
    return True, f"onnxruntime {ort.__version__}, providers {', '.join(ort.get_available_providers())}"


def auto_device(package: ModelPackage | None) -> tuple[str | None, str]:
    return "cpu", "onnxruntime on the CPU"


class OrtRunner:
    def __init__(self, path: Path, input_name: str, multiple: int, precision: str, device: str):
        import onnxruntime as ort

        providers: list[str] = ["CPUExecutionProvider"]
        if device.startswith("cuda"):
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise ValueError("device cuda needs onnxruntime-gpu (CUDAExecutionProvider is missing)")
            index = int(device.split(":")[1]) if ":" in device else 0
            providers = [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]  # type: ignore[list-item]
        elif device != "cpu":
            raise ValueError(f"onnxruntime runs on 'cpu' or 'cuda[:N]', not {device!r}")
        options = ort.SessionOptions()
        options.log_severity_level = 3  # warnings about unused initialisers are noise here
        from screen.backends import cpu_threads

        if cpu_threads():
            options.intra_op_num_threads = cpu_threads()
            options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(str(path), options, providers=providers)
        first = next((i.shape[0] for i in self._session.get_inputs() if i.name == input_name), None)
        # Inputs per run: a network exported with a fixed batch takes that many, else any.
        self.max_batch = first if isinstance(first, int) and first > 0 else None
        self._input = input_name
        self._multiple = multiple
        self.name = NAME
        self.precision = precision
        self.device = device
        self.path = path

    def run(self, x: np.ndarray) -> np.ndarray:
        x = check_input(x, self._multiple)
        return np.asarray(self._session.run(None, {self._input: x})[0], dtype=np.float32)


def load(
    package: ModelPackage, network: str, precision: str = "fp32", device: str = "cpu",
    model_path: Path | None = None,
) -> OrtRunner:
    """A runner for ``network``. FP16/INT8 run a converted ONNX file built by
    ``screen build-engine``: ``model_path``, or else the newest one in the engine cache."""
    card = package.network(network)
    if model_path is None and precision == "fp32":
        model_path = package.onnx_path(network)
    elif model_path is None:
        from screen.artifacts import find_built

        model_path = find_built(package, network, precision)
        if model_path is None:
            raise ValueError(
                f"onnxruntime {precision} needs a converted model (screen build-engine --{precision}); "
                "the package itself holds fp32 only"
            )
    return OrtRunner(Path(model_path), card.input_name, card.shape_multiple, precision, device)
