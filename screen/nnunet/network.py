"""An nnU-Net network rebuilt from its plans, and a checkpoint's weights loaded into it.

No trainer code is needed: nnU-Net's trainers, custom ones included, build their network from
the plans' architecture entry, so the class and its arguments are all there is to rebuild.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from screen.nnunet.folder import ARCHITECTURES, Architecture, NnunetFolderError

logger = logging.getLogger(__name__)

_NEEDS_IMPORT = ("conv_op", "norm_op", "dropout_op", "nonlin")
_ALLOWED_OPS = ("torch.nn.",)  # classes a plan may name for its layers
_ARCHITECTURE_MODULES = ("dynamic_network_architectures.architectures.unet",
                         "dynamic_network_architectures.architectures.residual_unet")


def _locate(dotted: str) -> Any:
    if not dotted.startswith(_ALLOWED_OPS):
        raise NnunetFolderError(f"the plans name layer class {dotted!r}, which is not a torch.nn class")
    module, _, name = dotted.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        raise NnunetFolderError(f"the plans name layer class {dotted!r}, which torch lacks") from None


def _architecture_class(name: str):
    for module in _ARCHITECTURE_MODULES:
        try:
            return getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            continue
    raise NnunetFolderError(f"this dynamic-network-architectures has no {name}")


def build_network(architecture: Architecture, n_classes: int, input_channels: int = 1):
    """The torch module, with random weights, in inference form (no deep supervision)."""
    try:
        importlib.import_module("dynamic_network_architectures")
    except ImportError:
        raise NnunetFolderError(
            "rebuilding an nnU-Net network needs dynamic-network-architectures "
            "(pip install --no-deps 'dynamic-network-architectures>=0.4')") from None
    cls = _architecture_class(ARCHITECTURES[architecture.class_name])
    kwargs = dict(architecture.kwargs)
    for key in _NEEDS_IMPORT:
        if kwargs.get(key) is not None:
            kwargs[key] = _locate(kwargs[key])
    kwargs["deep_supervision"] = False
    try:
        return cls(input_channels=input_channels, num_classes=n_classes, **kwargs).eval()
    except (TypeError, ValueError, AssertionError, RuntimeError) as exc:
        raise NnunetFolderError(f"the plans' architecture cannot be built: {exc}") from None


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """What inference takes from an nnU-Net checkpoint."""

    path: Path
    trainer: str
    weights: Any  # a state_dict
    mirror_axes: tuple[int, ...] | None  # what training augmented with; None: no mirroring


def read_checkpoint(path: Path) -> Checkpoint:
    """Load a checkpoint without running code from it: tensors and plain values only."""
    import numpy as np
    import torch

    # Checkpoints hold numpy scalars in their training log; those are data, not code.
    safe = [np.dtype, type(np.dtype(np.float64)), type(np.dtype(np.float32)),
            type(np.dtype(np.int64))]
    try:
        safe.append(np._core.multiarray.scalar)
    except AttributeError:  # numpy < 2
        safe.append(np.core.multiarray.scalar)
    try:
        with torch.serialization.safe_globals(safe):
            data = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise NnunetFolderError(f"{path}: no such checkpoint") from None
    except Exception as exc:  # torch raises many kinds for a file it cannot unpickle safely
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise NnunetFolderError(f"{path}: not a readable nnU-Net checkpoint ({first})") from None
    if not isinstance(data, dict) or "network_weights" not in data:
        raise NnunetFolderError(f"{path}: not an nnU-Net checkpoint (no 'network_weights')")
    axes = data.get("inference_allowed_mirroring_axes")
    return Checkpoint(
        path=path, trainer=str(data.get("trainer_name", "")), weights=data["network_weights"],
        mirror_axes=tuple(int(a) for a in axes) if axes is not None else None,
    )


def load_weights(network, checkpoint: Checkpoint) -> None:
    """Put the checkpoint's weights into ``network``; refuse weights that do not fit it."""
    try:
        network.load_state_dict(checkpoint.weights, strict=True)
    except (RuntimeError, TypeError) as exc:
        first = str(exc).strip().splitlines()
        reason = " ".join(line.strip() for line in first[:2])
        raise NnunetFolderError(
            f"{checkpoint.path}: weights do not fit the plans' architecture ({reason[:300]})") from None
