"""What every backend plugin hands back: a Runner."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from screen.artifacts import PRECISIONS

__all__ = ["PRECISIONS", "Runner", "check_input"]


@runtime_checkable
class Runner(Protocol):
    """Runs one network: (N, 1, K, J, I) float32 in, (N, C, K, J, I) float32 out: probabilities
    for the bundled model's networks, logits for imported nnU-Net ones (their card says which).
    N > 1 runs a batch of patches at once; a runner whose network takes at most so many
    inputs per run may say so as ``max_batch`` (an int; absent or None: any)."""

    name: str
    precision: str
    device: str

    def run(self, x: np.ndarray) -> np.ndarray: ...


def check_input(x: np.ndarray, multiple: int, keep_float16: bool = False) -> np.ndarray:
    """The input as contiguous float32 (N, 1, K, J, I) with sizes the network accepts; float16
    stays float16 with ``keep_float16`` (for a GPU to take as it is)."""
    if not isinstance(x, np.ndarray):
        raise TypeError(f"network input must be a numpy array, got {type(x).__name__}")
    if x.ndim != 5 or x.shape[0] < 1 or x.shape[1] != 1:
        raise ValueError(f"network input must have shape (N, 1, K, J, I), got {x.shape}")
    if any(s % multiple for s in x.shape[2:]):
        raise ValueError(f"network input sizes must be multiples of {multiple}, got {x.shape[2:]}")
    if keep_float16 and x.dtype == np.float16:
        return np.ascontiguousarray(x)
    return np.ascontiguousarray(x, dtype=np.float32)
