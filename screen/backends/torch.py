"""PyTorch: the package's weights (state_dict) in the network class, on the CPU or CUDA.

FP16 runs under CUDA autocast (float16 or bfloat16); INT8 is not offered here (use TensorRT or
ONNX Runtime). On CUDA, :class:`CudaOptions` (set once per process with
:func:`set_cuda_options`, before the runners load) choose the rest: InstanceNorm kept in
float32 under autocast, channels-last-3D layout, ``torch.compile`` with CUDA graphs for
networks fed fixed patch shapes. Each thread that runs a network gets its own CUDA stream,
so that an inference service's batches overlap their copies and kernels.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from screen.backends.base import check_input

if TYPE_CHECKING:
    from screen.model.package import ModelPackage

logger = logging.getLogger(__name__)

NAME = "torch"
DEPENDENCIES = {"torch": "torch (a CUDA build for GPUs)"}
AUTOCAST_DTYPES = ("float16", "bfloat16")


@dataclass(frozen=True, slots=True)
class CudaOptions:
    """How torch runs a network on CUDA. The defaults are the safe ones; which of the others
    pays is for ``bench/gpu_bench.py`` to measure on the GPU at hand."""

    autocast: str = "float16"  # what --precision fp16 computes in: float16 or bfloat16
    norm_fp32: bool = True  # InstanceNorm in float32 under autocast (fp16 statistics may hurt)
    channels_last: bool = False  # channels-last-3D memory layout for weights and inputs
    compile: bool = False  # torch.compile(mode="reduce-overhead"): CUDA graphs per input shape

    def __post_init__(self) -> None:
        if self.autocast not in AUTOCAST_DTYPES:
            raise ValueError(f"autocast must be one of {', '.join(AUTOCAST_DTYPES)}, "
                             f"got {self.autocast!r}")


_cuda_options = CudaOptions()


def set_cuda_options(options: CudaOptions) -> None:
    """Options for the CUDA runners this process loads from now on."""
    global _cuda_options
    if not isinstance(options, CudaOptions):
        raise TypeError(f"expected CudaOptions, got {type(options).__name__}")
    _cuda_options = options


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
    def __init__(self, module, multiple: int, precision: str, device: str,
                 options: CudaOptions | None = None):
        self._module = module
        self._multiple = multiple
        self._options = options or CudaOptions()
        self._streams = threading.local()
        self.name = NAME
        self.precision = precision
        self.device = device

    def run(self, x: np.ndarray) -> np.ndarray:
        import torch

        if self.device.startswith("cuda"):
            return self._run_cuda(x)
        x = check_input(x, self._multiple)
        with torch.inference_mode():
            return self._module(torch.from_numpy(x)).float().numpy()

    def _run_cuda(self, x: np.ndarray) -> np.ndarray:
        """On this thread's own stream; a float16 input (an inference service's) is copied to
        the GPU as it is, the rest as float32."""
        import torch

        x = check_input(x, self._multiple, keep_float16=True)
        stream = getattr(self._streams, "stream", None)
        if stream is None:
            stream = self._streams.stream = torch.cuda.Stream(torch.device(self.device))
        options = self._options
        dtype = getattr(torch, options.autocast)
        with torch.inference_mode(), torch.cuda.stream(stream):
            tensor = torch.from_numpy(x).pin_memory().to(self.device, non_blocking=True)
            if options.channels_last:
                tensor = tensor.contiguous(memory_format=torch.channels_last_3d)
            with torch.autocast(device_type="cuda", dtype=dtype,
                                enabled=self.precision == "fp16"):
                out = self._module(tensor)
            host = out.float().cpu()  # waits for this stream only
        return host.numpy()


def _norms_in_fp32(module):
    """``module`` with every InstanceNorm computing in float32 under autocast."""
    import torch

    class Fp32Norm(torch.nn.Module):
        def __init__(self, norm: torch.nn.Module) -> None:
            super().__init__()
            self.norm = norm

        def forward(self, x):
            with torch.autocast(device_type=x.device.type, enabled=False):
                return self.norm(x.float()).to(x.dtype)

    for name, child in module.named_children():
        if isinstance(child, torch.nn.modules.instancenorm._InstanceNorm):
            setattr(module, name, Fp32Norm(child))
        else:
            _norms_in_fp32(child)
    return module


def _for_cuda(module, options: CudaOptions):
    import torch

    if options.norm_fp32:
        module = _norms_in_fp32(module)
    if options.channels_last:
        module = module.to(memory_format=torch.channels_last_3d)
    if options.compile:
        module = torch.compile(module, mode="reduce-overhead", dynamic=False)
    return module


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
    else:
        net = build(card.widths, len(package.card.classes))
        try:
            net.load_state_dict(state)
        except RuntimeError as exc:
            raise ValueError(f"{package.torch_path(network)}: weights do not fit widths "
                             f"{card.widths}: {exc}") from exc
        module = WithSoftmax(net)
    module = module.eval().to(device)
    if device.startswith("cuda"):
        return TorchRunner(_for_cuda(module, _cuda_options), card.shape_multiple, precision,
                           device, _cuda_options)
    return TorchRunner(module, card.shape_multiple, precision, device)
