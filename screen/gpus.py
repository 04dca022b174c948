"""The GPUs this machine offers, as NVML sees them (package nvidia-ml-py)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Gpu:
    index: int
    uuid: str
    name: str
    memory_gib: float
    compute_capability: tuple[int, int]


def find_gpus() -> tuple[tuple[Gpu, ...], str]:
    """The GPUs NVML sees, or none and the reason."""
    try:
        import pynvml
    except ImportError:
        return (), "NVML bindings are not installed (pip install nvidia-ml-py)"
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        return (), f"no NVIDIA driver answered ({exc})"
    try:
        gpus = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            uuid = pynvml.nvmlDeviceGetUUID(handle)
            name = pynvml.nvmlDeviceGetName(handle)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle).total / 2**30
            major, minor = pynvml.nvmlDeviceGetCudaComputeCapability(handle)
            gpus.append(Gpu(index, _text(uuid), _text(name), round(memory, 1), (major, minor)))
        return tuple(gpus), f"{len(gpus)} GPU(s) found by NVML" if gpus else "NVML found no GPU"
    except pynvml.NVMLError as exc:
        return (), f"NVML failed while listing GPUs ({exc})"
    finally:
        pynvml.nvmlShutdown()


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
