"""The card a training run writes: what the package is for, its limits, and how it was made."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from screen.model.card import Calibration, ModelCard, NetworkCard, Postprocess
from screen.model.network import CLASSES
from screen.model.package import ModelPackage
from screen.training.recipe import (
    BATCH,
    LOCATE,
    LOCATE_STEPS,
    SEGMENT,
    SEGMENT_STEPS,
    TRAIN_CASES,
    VALIDATION_CASES,
)

NAME = "pancreas-phantom-v1"
VERSION = "1.3.0"
INTENDED_USE = (
    "Demonstration and testing of the screen pipeline: ranks abdominal CT series by the "
    "estimated probability of a focal pancreatic lesion. Trained on synthetic phantoms only. "
    "NOT for diagnostic use and not validated on patients."
)
LIMITATIONS = [
    (
        "Trained and calibrated on synthetic phantoms only: its accuracy figures come from "
        "phantoms of its own generator only and do not carry over to other phantoms, let alone "
        "to patients; its scores on real CT are not calibrated."
    ),
    "Expects axial abdominal CT in HU with i towards patient left, j posterior, k superior.",
    (
        "Hypo-attenuating focal lesions only; cysts, calcifications, diffuse disease and "
        "iso-attenuating tumours were not modelled as such."
    ),
    "Lesions under 5 mm were not in the training data.",
]
TOLERANCE = {
    "score_abs": 1e-3,
    "meaning": "the torch and ONNX Runtime backends on the CPU give scores within this of each other",
}


def command(out: Path, seed: int, train_cases: int, val_cases: int, locate_steps: int, segment_steps: int,
             locate_from: Path | None, segment_from: Path | None, widths: Sequence[tuple[int, ...]],
             batch: int, device: str) -> str:
    """The command that trains this package again: the options that differ from the defaults."""
    words = [f"python -m screen.training.train --out {out.as_posix()} --seed {seed}"]
    if train_cases != TRAIN_CASES:
        words.append(f"--train-cases {train_cases}")
    if val_cases != VALIDATION_CASES:
        words.append(f"--val-cases {val_cases}")
    if locate_from is not None:
        words.append(f"--locate-from {locate_from.as_posix()}")
    elif locate_steps != LOCATE_STEPS:
        words.append(f"--locate-steps {locate_steps}")
    if segment_from is not None:
        words.append(f"--segment-from {segment_from.as_posix()}")
    if segment_steps != SEGMENT_STEPS or segment_from is not None:
        words.append(f"--segment-steps {segment_steps}")
    if widths != [SEGMENT.widths]:
        words.extend(f"--segment-widths {','.join(map(str, w))}" for w in widths)
    if batch != BATCH:
        words.append(f"--batch {batch}")
    if device != "cpu":
        words.append(f"--device {device}")
    return " ".join(words)


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        return f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    return f"{device} ({torch.get_num_threads()} threads)"


def earlier_training(package: Path) -> dict:
    """What the card of the package a segmenter was continued from says about its training."""
    card = ModelPackage.load(package).card
    return {"version": card.version, "training": dict(card.training)}


def card_for(calibration: Calibration, threshold: float, post: Postprocess, training: dict, accuracy: dict,
          segment: NetworkCard = SEGMENT) -> ModelCard:
    return ModelCard(
        name=NAME, version=VERSION, intended_use=INTENDED_USE, limitations=tuple(LIMITATIONS),
        classes=CLASSES, networks={"locate": LOCATE, "segment": segment}, calibration=calibration,
        threshold=threshold, postprocess=post, tolerance=TOLERANCE, training=training, accuracy=accuracy,
    )
