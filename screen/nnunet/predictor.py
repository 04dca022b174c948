"""One imported nnU-Net model run on one volume, as nnU-Net's own predictor would:

    volume (i, j, k towards L, P, S) ─turn to the card's orientation, transpose─▶ model axes
    ─crop to nonzero, CT normalisation, resample─▶ network grid
    ─sliding window × mirrors × folds (screen's backends, patches batched)─▶ logits
    ─resample back (order 1), softmax, uncrop, untranspose, turn back─▶ probabilities on the volume grid
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from screen.backends import Runner, load_runner
from screen.model.package import ModelPackage
from screen.nnunet.card import NnunetCard
from screen.nnunet.findings import class_labels
from screen.nnunet.preprocess import preprocess, probabilities_back
from screen.nnunet.sliding import predict_logits

logger = logging.getLogger(__name__)

DEFAULT_BATCH = 4


@dataclass(frozen=True, slots=True, eq=False)
class NnunetModel:
    """An imported model's card with one runner per fold, loaded once and reused."""

    card: NnunetCard
    runners: Sequence[Runner]
    package_sha256: str = ""
    batch_size: int = DEFAULT_BATCH
    localiser: NnunetModel | None = None  # the first stage of a two-stage recipe

    def __post_init__(self) -> None:
        if len(self.runners) != len(self.card.networks):
            raise ValueError(f"model {self.card.name!r} has {len(self.card.networks)} folds but "
                             f"{len(self.runners)} runners")

    @classmethod
    def open(cls, package: ModelPackage, backend: str = "auto", precision: str = "fp32",
             device: str | None = None, batch_size: int = DEFAULT_BATCH) -> NnunetModel:
        if not isinstance(package.card, NnunetCard):
            raise ValueError(f"model {package.card.name!r} is not an imported nnU-Net model")
        runners = [load_runner(package, name, backend, precision, device) for name in package.card.networks]
        localiser = None
        if package.card.recipe is not None:
            inner = ModelPackage.load(package.path / package.card.recipe.localiser)
            localiser = cls.open(inner, backend, precision, device, batch_size)
        return cls(package.card, tuple(runners), package.sha256, batch_size, localiser)

    def probes(self) -> list[tuple[str, Runner, tuple[int, ...]]]:
        """Each fold (the localiser's too) with its runner and one patch's shape, to try the
        model once before a sweep."""
        shape = (1, 1, *self.card.patch_size)
        own = [(name, runner, shape) for name, runner in zip(self.card.networks, self.runners)]
        return own + (self.localiser.probes() if self.localiser is not None else [])

    @property
    def backend(self) -> str:
        return self.runners[0].name

    @property
    def precision(self) -> str:
        return self.runners[0].precision


@dataclass(frozen=True, slots=True, eq=False)
class Prediction:
    probabilities: np.ndarray  # float32 (C, K, J, I) on the volume's grid
    seconds: Mapping[str, float] = field(default_factory=dict)

    @property
    def labels(self) -> np.ndarray:
        return class_labels(self.probabilities)


def _to_model_axes(card: NnunetCard) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(flips, transpose) taking an L-P-S volume array (k, j, i) to the model's axes."""
    flips = () if card.orientation == "LPS" else (1, 2)  # RAS: j anterior, i right
    return flips, card.transpose_forward


def predict_array(model: NnunetModel, image: np.ndarray, spacing: Sequence[float],
                  mirroring: bool = True) -> np.ndarray:
    """HU in the model's axis order → float32 (C, ...) probabilities on the same grid."""
    card = model.card
    pre = preprocess(np.asarray(image), spacing, card.spacing, card.intensity, card.data_resampling)
    logits = predict_logits(pre.data, model.runners, card.patch_size, card.n_classes,
                            step=card.tile_step, mirror_axes=card.mirror_axes if mirroring else None,
                            batch_size=model.batch_size)
    return probabilities_back(logits, pre, card.probability_resampling)


def predict_volume(model: NnunetModel, hu: np.ndarray, spacing_kji: Sequence[float],
                   mirroring: bool = True) -> Prediction:
    """A volume's HU (k, j, i towards S, P, L as :class:`screen.records.Volume` holds them) →
    class probabilities on the same grid."""
    start = time.perf_counter()
    flips, transpose = _to_model_axes(model.card)
    image = np.flip(hu, flips) if flips else hu
    image = image.transpose(transpose)
    spacing = tuple(float(spacing_kji[a]) for a in transpose)
    probs = predict_array(model, image, spacing, mirroring)
    back = np.argsort(transpose)
    probs = probs.transpose(0, *(int(a) + 1 for a in back))
    if flips:
        probs = np.flip(probs, tuple(a + 1 for a in flips))
    return Prediction(np.ascontiguousarray(probs, dtype=np.float32),
                      {"total": time.perf_counter() - start})
