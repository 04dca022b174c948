"""TensorRT: strongly typed plans built by ``screen build-engine`` for this GPU model.

Available only where tensorrt imports, NVML sees a GPU and a plan for that GPU was built.
Automatic choice picks it only for a package with a plan on this GPU. Running never builds:
a plan that is missing, was made from another ONNX than the one it should run, or no longer
deserializes (a driver or TensorRT update) is refused with the command that builds it.
Buffers are torch CUDA tensors, so no other CUDA binding is needed.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from screen.artifacts import Artifact, find_artifacts, find_built, list_built
from screen.atomic import file_sha256
from screen.backends.base import check_input

if TYPE_CHECKING:
    from screen.gpus import Gpu
    from screen.model.package import ModelPackage

logger = logging.getLogger(__name__)

NAME = "tensorrt"
DEPENDENCIES = {"tensorrt": "tensorrt>=10.12", "torch": "torch with CUDA", "pynvml": "nvidia-ml-py"}


def tensorrt_version() -> tuple[str | None, str]:
    """TensorRT's version, or None and why it cannot be used."""
    try:
        import tensorrt as trt
    except ImportError:
        return None, "tensorrt is not installed (pip install tensorrt, with an NVIDIA GPU and driver)"
    except Exception as exc:  # a broken install raises anything from its native libraries
        return None, f"tensorrt cannot be imported: {exc}"
    return str(trt.__version__), f"tensorrt {trt.__version__}"


def _gpus() -> tuple[tuple[Gpu, ...], str]:
    """The GPUs this process can run on, in CUDA's order: the n-th is ``cuda:n``."""
    from screen.gpus import cuda_gpus

    return cuda_gpus()


def is_available() -> tuple[bool, str]:
    version, why = tensorrt_version()
    if version is None:
        return False, why
    gpus, why = _gpus()
    if not gpus:
        return False, f"tensorrt {version}, but no GPU: {why}"
    here = {(g.name, g.compute_capability) for g in gpus}
    plans = [a for a in list_built() if a.key.kind == "plan"
             and (a.key.gpu_name, a.key.compute_capability) in here]
    if not plans:
        return False, f"tensorrt {version}, but no plan built for {', '.join(sorted({g.name for g in gpus}))} (run screen build-engine)"
    return True, f"tensorrt {version}, {len(plans)} plan(s) for this machine's GPUs"


def auto_device(package: ModelPackage | None) -> tuple[str | None, str]:
    if package is None:
        return None, "no model package to look for plans of"
    version, _ = tensorrt_version()
    gpus, why = _gpus()
    for n, gpu in enumerate(gpus):
        for precision in ("int8", "fp16", "fp32"):
            if all(find_artifacts(package, net, precision, "plan", gpu=gpu,
                                  tensorrt_version=version) for net in package.card.networks):
                return f"cuda:{n}", f"tensorrt {precision} plans for {gpu.name}"
    return None, f"no TensorRT plan of {package.card.name} for this GPU" if gpus else why


class TrtRunner:
    def __init__(self, engine, input_name: str, output_name: str, multiple: int, precision: str,
                 device: str, path: Path):
        import torch

        self._engine = engine
        self._context = engine.create_execution_context()
        self._input = input_name
        self._output = output_name
        self._multiple = multiple
        self._device = torch.device(device)
        # Inputs per run: the largest batch of the plan's optimisation profile.
        self.max_batch = int(engine.get_tensor_profile_shape(input_name, 0)[2][0])
        self.name = NAME
        self.precision = precision
        self.device = device
        self.path = path

    def run(self, x: np.ndarray) -> np.ndarray:
        import torch

        x = check_input(x, self._multiple)
        with torch.cuda.device(self._device):
            source = torch.from_numpy(x).to(self._device)
            if not self._context.set_input_shape(self._input, tuple(x.shape)):
                raise ValueError(f"{self.path.name}: input shape {x.shape} lies outside the plan's profile")
            shape = tuple(self._context.get_tensor_shape(self._output))
            out = torch.empty(shape, dtype=torch.float32, device=self._device)
            self._context.set_tensor_address(self._input, source.data_ptr())
            self._context.set_tensor_address(self._output, out.data_ptr())
            stream = torch.cuda.current_stream(self._device)
            if not self._context.execute_async_v3(stream.cuda_stream):
                raise ValueError(f"{self.path.name}: TensorRT failed to run")
            stream.synchronize()
        return out.cpu().numpy()


def deserialize(path: Path):
    """The engine in the plan at ``path``; ValueError where this GPU and TensorRT cannot load it."""
    import tensorrt as trt

    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    engine = runtime.deserialize_cuda_engine(path.read_bytes())
    if engine is None:
        raise ValueError(f"{path} does not deserialize on this GPU and TensorRT")
    return engine


def _how_to_build(precision: str) -> str:
    """The command that builds a plan of ``precision``; build-engine makes fp16 and int8 plans."""
    if precision == "int8":
        return "run `screen build-engine --int8 --calib ARCHIVE` on this machine"
    if precision == "fp16":
        return "run `screen build-engine --fp16` on this machine"
    return "run `screen build-engine --fp16` on this machine and scan with --precision fp16"


def find_plan(package: ModelPackage, network: str, precision: str, gpu: Gpu, version: str,
              root: Path | str | None = None) -> Artifact:
    """The registered plan of ``network`` at ``precision`` for ``gpu`` and TensorRT ``version``,
    made from the ONNX it should run (the package's for fp32, else the newest converted one);
    ValueError naming the command that builds it where there is none."""
    name = f"{package.card.name}/{network}"
    source = package.onnx_path(network) if precision == "fp32" else find_built(package, network, precision, root=root)
    if source is None:
        raise ValueError(f"no {precision} ONNX of {name}: {_how_to_build(precision)}")
    plans = find_artifacts(package, network, precision, "plan", root=root, gpu=gpu, tensorrt_version=version)
    if not plans:
        raise ValueError(f"no TensorRT {version} {precision} plan of {name} for {gpu.name}: "
                         f"{_how_to_build(precision)}")
    sha = file_sha256(source)
    current = [p for p in plans if p.key.onnx_sha256 == sha]
    if not current:
        raise ValueError(f"the TensorRT {precision} plan of {name} for {gpu.name} was built from another "
                         f"ONNX than the current one: {_how_to_build(precision)}")
    return current[0]


def load(package: ModelPackage, network: str, precision: str = "fp32", device: str = "cuda:0") -> TrtRunner:
    card = package.network(network)
    if not device.startswith("cuda"):
        raise ValueError(f"tensorrt runs on 'cuda[:N]', not {device!r}")
    index = int(device.split(":")[1]) if ":" in device else 0
    gpus, why = _gpus()
    if index >= len(gpus):
        raise ValueError(f"no GPU {device} for tensorrt: {why}")
    gpu = gpus[index]
    version, why = tensorrt_version()
    if version is None:
        raise ValueError(why)
    artifact = find_plan(package, network, precision, gpu, version)
    try:
        engine = deserialize(artifact.path)
    except ValueError as exc:
        raise ValueError(f"{exc} (a driver update?): {_how_to_build(precision)}") from None
    return TrtRunner(engine, card.input_name, card.output_name, card.shape_multiple, precision, device, artifact.path)
