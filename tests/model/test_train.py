"""Training end to end at toy scale: phantoms, both networks, validation, a package that loads.

The real recipe (``make model``) takes most of an hour on two cores; this runs every step of
it on a handful of phantoms and a few optimiser steps, so a broken step fails here first.
"""

from __future__ import annotations

import numpy as np
import pytest

from screen.detect.detector import Detector, analyse
from screen.model import train
from screen.model.package import ModelPackage
from screen.model.phantoms import draw_case

SEED = 4  # its first six validation phantoms hold lesions and lesion-free glands both


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> ModelPackage:
    out = tmp_path_factory.mktemp("train") / "toy"
    labels = [np.random.default_rng(s).random() < train.TRAIN_SETTINGS.lesion_fraction
              for s in train.validation_seeds(SEED, 6)]
    assert any(labels) and not all(labels), "the validation phantoms need both classes"
    train.train(out, seed=SEED, train_cases=3, val_cases=6, locate_steps=4, segment_steps=4,
                workers=2)
    return ModelPackage.load(out)


@pytest.mark.slow
def test_training_writes_a_package_whose_card_says_how_it_was_made(trained):
    training = trained.card.training
    assert training["command"].startswith("python -m screen.model.train --out ")
    assert f"--seed {SEED}" in training["command"] and "--device" not in training["command"]
    assert training["device"].startswith("cpu (")
    assert training["train_cases"] == 3 and training["segment"]["steps"] == 4
    validation = trained.card.accuracy["validation"]
    assert validation["cases"] == 6 and 0 < validation["positives"] < 6
    assert 0.0 <= trained.card.threshold <= 1.0
    head, tail = trained.card.postprocess.location_fractions
    assert 0.0 < head < tail < 1.0


@pytest.mark.slow
def test_the_trained_package_scores_alike_on_both_cpu_backends(trained):
    volume, _ = draw_case(train.validation_seeds(SEED, 1)[0])
    scores = [analyse(volume, Detector.open(trained, backend)).detection.score
              for backend in ("onnxruntime", "torch")]
    assert 0.0 <= scores[0] <= 1.0
    assert abs(scores[0] - scores[1]) <= trained.card.tolerance["score_abs"]
