"""Training end to end at toy scale: phantoms, both networks, validation, a package that loads.

The real recipe (``make model``) takes most of an hour on two cores; this runs every step of
it on a handful of phantoms and a few optimiser steps, so a broken step fails here first.
"""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import numpy as np
import pytest

from screen.detect.detector import Detector, analyse
from screen.model.package import ModelPackage
from screen.synth.cases import TRAIN_SETTINGS, draw_case, validation_seeds
from screen.training import train
from screen.training.patches import Item, TrainingSet, in_order

SEED = 4  # its first six validation phantoms hold lesions and lesion-free glands both


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> ModelPackage:
    out = tmp_path_factory.mktemp("train") / "toy"
    labels = [np.random.default_rng(s).random() < TRAIN_SETTINGS.lesion_fraction
              for s in validation_seeds(SEED, 6)]
    assert any(labels) and not all(labels), "the validation phantoms need both classes"
    train.train(out, seed=SEED, train_cases=3, val_cases=6, locate_steps=4, segment_steps=4,
                workers=2)
    return ModelPackage.load(out)


@pytest.mark.slow
def test_training_writes_a_package_whose_card_says_how_it_was_made(trained):
    training = trained.card.training
    assert training["command"].startswith("python -m screen.training.train --out ")
    assert f"--seed {SEED}" in training["command"] and "--device" not in training["command"]
    for option in ("--train-cases 3", "--val-cases 6", "--locate-steps 4", "--segment-steps 4"):
        assert option in training["command"]  # so that it trains the same package again
    assert training["device"].startswith("cpu (")
    assert training["train_cases"] == 3 and training["segment"]["steps"] == 4
    validation = trained.card.accuracy["validation"]
    assert validation["cases"] == 6 and 0 < validation["positives"] < 6
    assert 0.0 <= trained.card.threshold <= 1.0
    head, tail = trained.card.postprocess.location_fractions
    assert 0.0 < head < tail < 1.0


@pytest.mark.slow
def test_the_trained_package_scores_alike_on_both_cpu_backends(trained):
    volume, _ = draw_case(validation_seeds(SEED, 1)[0])
    scores = [analyse(volume, Detector.open(trained, backend)).detection.score
              for backend in ("onnxruntime", "torch")]
    assert 0.0 <= scores[0] <= 1.0
    assert abs(scores[0] - scores[1]) <= trained.card.tolerance["score_abs"]


@pytest.fixture(scope="module")
def side_by_side(trained: ModelPackage, tmp_path_factory: pytest.TempPathFactory) -> tuple[ModelPackage, Path]:
    """Two segmenters of different widths trained on the same patches, the toy package's locate
    network kept, the phantoms joining while the segmenters train."""
    out = tmp_path_factory.mktemp("train") / "candidates"
    checkpoint = out.parent / "checkpoint"
    train.main(["--out", str(out), "--seed", str(SEED), "--train-cases", "4", "--val-cases", "6",
                "--locate-from", str(trained.path), "--segment-steps", "6", "--batch", "3",
                "--segment-widths", "4,8", "--segment-widths", "4,8,16", "--checkpoint", str(checkpoint)])
    return ModelPackage.load(out), checkpoint


@pytest.mark.slow
def test_segmenters_trained_side_by_side_are_chosen_between_on_validation(side_by_side):
    package, checkpoint = side_by_side
    training = package.card.training
    candidates = {tuple(c["widths"]): c["validation_auroc"] for c in training["candidates"]}
    assert set(candidates) == {(4, 8), (4, 8, 16)}
    chosen = tuple(training["chosen_widths"])
    assert package.card.segment.widths == chosen
    assert candidates[chosen] == max(candidates.values())
    assert package.card.accuracy["validation"]["auroc"] == candidates[chosen]
    assert training["segment"]["batch"] == 3 and training["train_cases"] == 4
    assert sorted(p.name for p in checkpoint.iterdir()) == ["segment-4-8-16.pt", "segment-4-8.pt"]
    # The command on the card trains the same package again.
    command = training["command"]
    for option in ("--train-cases 4", "--segment-steps 6", "--batch 3", "--locate-from ",
                   "--segment-widths 4,8 --segment-widths 4,8,16"):
        assert option in command
    volume, _ = draw_case(validation_seeds(SEED, 1)[0])
    assert 0.0 <= analyse(volume, Detector.open(package, "onnxruntime")).detection.score <= 1.0


@pytest.mark.slow
def test_a_segmenter_is_continued_only_at_its_own_widths(trained, tmp_path):
    with pytest.raises(ValueError, match="its widths"):
        train.train(tmp_path / "out", seed=SEED, train_cases=1, val_cases=1, segment_steps=1,
                    locate_from=trained.path, segment_from=trained.path, segment_widths=[(4, 8)])


def test_segment_widths_that_are_not_channel_counts_are_refused(capsys):
    for text in ("8,x", "8", "8,0"):
        with pytest.raises(SystemExit) as exit_info:
            train.main(["--out", "unused", "--segment-widths", text])
        assert exit_info.value.code == 2
        assert "--segment-widths" in capsys.readouterr().err


def test_work_comes_back_in_seed_order_whatever_the_window():
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        for ahead in (1, 2, 5, 9):
            assert list(in_order(pool, abs, [-3, 1, -2, 5, -4], ahead)) == [3, 1, 2, 5, 4]


def _item(seed: int) -> Item:
    y = np.zeros((4, 4, 4), np.uint8)
    y[1:3, 1:3, 1:3] = 1
    y[2, 2, 2] = 2
    return Item(np.empty(0, np.float32), np.empty(0, np.uint8), np.full(y.shape, seed, np.float32),
                      y, np.zeros(1, np.float32), np.zeros(1, np.int8))


def test_training_phantoms_join_on_a_schedule_not_as_fast_as_they_render():
    taken = []

    def source():
        for seed in range(10):
            taken.append(seed)
            yield _item(seed)

    data = TrainingSet(source(), total=10, first=2, steps=100, pair=lambda i: (i.fine_x, i.fine_y))
    data.arrive(0)
    assert len(data.items) == 2 and taken == [0, 1]
    data.arrive(40)  # half of the 80 % of the steps over which the other 8 join
    assert len(data.items) == 6 and len(taken) == 6
    data.arrive(80)
    assert len(data.items) == 10
    data.arrive(99)
    assert len(data.items) == 10
    x, y = data.draw((3, 3, 3), lesion_bias=1.0, rng=np.random.default_rng(0))
    assert x.shape == y.shape == (3, 3, 3) and (y == 2).any()  # any start holds the lesion voxel
