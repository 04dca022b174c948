"""The GPUs this machine offers, as NVML sees them (package nvidia-ml-py)."""

from __future__ import annotations

import logging
import os
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


def cuda_gpus() -> tuple[tuple[Gpu, ...], str]:
    """The GPUs this process's CUDA sees, in CUDA's order: the n-th is ``cuda:n``.

    NVML lists every GPU of the machine whatever ``CUDA_VISIBLE_DEVICES`` says; a GPU worker,
    pinned to its GPU by UUID, sees that GPU alone, as ``cuda:0``."""
    gpus, why = find_gpus()
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None or not gpus:
        return gpus, why
    seen = in_cuda_order(gpus, visible)
    return seen, (f"{len(seen)} of {len(gpus)} GPU(s) visible (CUDA_VISIBLE_DEVICES={visible})"
                  if seen else f"CUDA_VISIBLE_DEVICES={visible!r} hides every GPU")


def in_cuda_order(gpus: tuple[Gpu, ...], visible: str) -> tuple[Gpu, ...]:
    """The GPUs ``CUDA_VISIBLE_DEVICES=visible`` leaves to CUDA, in its order. Entries are
    NVML indices or UUIDs (a unique prefix will do); as CUDA does, the list ends at the first
    entry that names no GPU, or one named before."""
    chosen: list[Gpu] = []
    for entry in (e.strip() for e in visible.split(",")):
        if entry.isdigit():
            match = [g for g in gpus if g.index == int(entry)]
        else:
            match = [g for g in gpus if entry and g.uuid.startswith(entry)]
        if len(match) != 1 or match[0] in chosen:
            break
        chosen.append(match[0])
    return tuple(chosen)


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
