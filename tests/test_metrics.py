"""Metrics against answers worked out independently here: pair counting, hand counts."""

from __future__ import annotations

import itertools
import logging
import math

import numpy as np
import pytest

from screen.metrics import (
    Interval,
    SizeBin,
    UndefinedMetric,
    auroc,
    bootstrap_ci,
    confusion_at,
    confusion_from_flags,
    localisation_hit,
    location_of,
    roc_curve,
    size_bin,
    wilson_interval,
)
from screen.records import Location


def _pairwise_auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    """AUROC the slow, obvious way: every positive against every negative, ties half."""
    positives = scores[labels == 1]
    negatives = scores[labels == 0]
    total = 0.0
    for p, n in itertools.product(positives, negatives):
        total += 1.0 if p > n else 0.5 if p == n else 0.0
    return total / (len(positives) * len(negatives))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auroc_matches_pair_counting_on_random_data_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 120)
    # Rounded scores make many ties, between and within classes.
    scores = np.round(rng.random(120) + 0.4 * labels, 1)
    assert auroc(labels, scores) == pytest.approx(_pairwise_auroc(labels, scores), abs=1e-12)


def test_auroc_perfect_inverted_and_all_tied() -> None:
    labels = [0, 0, 0, 1, 1]
    assert auroc(labels, [0.1, 0.2, 0.3, 0.8, 0.9]) == 1.0
    assert auroc(labels, [0.9, 0.8, 0.7, 0.2, 0.1]) == 0.0
    assert auroc(labels, [0.5] * 5) == 0.5
    # One positive tied with one of two negatives, above the other: (1 + 0.5) / 2.
    assert auroc([1, 0, 0], [0.5, 0.5, 0.1]) == 0.75


def test_auroc_accepts_bool_labels() -> None:
    assert auroc(np.array([False, True]), [0.2, 0.4]) == 1.0


def test_auroc_rejects_a_single_class() -> None:
    with pytest.raises(ValueError, match="needs both positive and negative cases; all 3 are"):
        auroc([1, 1, 1], [0.1, 0.2, 0.3])


def test_auroc_rejects_bad_inputs() -> None:
    with pytest.raises(ValueError, match="labels must be 0 or 1, got 2"):
        auroc([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="scores has 3 values for 2 labels"):
        auroc([0, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="scores must be finite"):
        auroc([0, 1], [0.1, float("nan")])


def test_roc_curve_points_by_hand() -> None:
    labels = [1, 0, 1, 0]
    scores = [0.9, 0.8, 0.8, 0.1]
    fpr, tpr, thresholds = roc_curve(labels, scores)
    # >= 0.9: one TP; >= 0.8: both tied cases join (TP 2, FP 1); >= 0.1: everything.
    np.testing.assert_allclose(thresholds, [np.inf, 0.9, 0.8, 0.1])
    np.testing.assert_allclose(tpr, [0.0, 0.5, 1.0, 1.0])
    np.testing.assert_allclose(fpr, [0.0, 0.0, 0.5, 1.0])


def test_roc_curve_area_equals_auroc() -> None:
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 2, 300)
    scores = np.round(rng.normal(labels, 1.0), 1)
    fpr, tpr, _ = roc_curve(labels, scores)
    area = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))
    assert area == pytest.approx(auroc(labels, scores), abs=1e-12)


def test_bootstrap_is_reproducible_for_a_seed_and_differs_between_seeds() -> None:
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 80)
    scores = rng.random(80) + 0.3 * labels
    first = bootstrap_ci(auroc, labels, scores, replicates=300, seed=7)
    again = bootstrap_ci(auroc, labels, scores, replicates=300, seed=7)
    other = bootstrap_ci(auroc, labels, scores, replicates=300, seed=8)
    assert first == again
    assert (first.low, first.high) != (other.low, other.high)
    assert first.estimate == pytest.approx(_pairwise_auroc(labels, scores))
    assert first.low < first.estimate < first.high
    assert first.replicates == 300 and first.skipped == 0


def test_bootstrap_interval_covers_the_true_mean_about_as_often_as_it_says() -> None:
    # 200 samples of 40 from a known distribution: a 90 % interval of the mean should hold
    # the true mean in roughly 90 % of them (percentile intervals run a little narrow).
    rng = np.random.default_rng(11)
    covered = 0
    trials = 200
    for trial in range(trials):
        sample = rng.normal(2.0, 1.0, 40)
        ci = bootstrap_ci(np.mean, sample, replicates=200, seed=trial, alpha=0.10)
        covered += ci.low <= 2.0 <= ci.high
    assert 0.80 <= covered / trials <= 0.97


def test_bootstrap_skips_and_counts_single_class_replicates(caplog) -> None:
    labels = np.array([1] + [0] * 9)  # one positive: many resamples miss it
    scores = np.linspace(0.9, 0.0, 10)
    with caplog.at_level(logging.WARNING, logger="screen.metrics"):
        ci = bootstrap_ci(auroc, labels, scores, replicates=200, seed=0)
    assert ci.skipped > 0
    assert ci.skipped + ci.replicates == 200
    assert f"{ci.skipped} of 200 bootstrap replicates skipped" in caplog.text


def test_bootstrap_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match=r"arrays differ in length: \[2, 3\]"):
        bootstrap_ci(auroc, [0, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="replicates must be at least 1"):
        bootstrap_ci(np.mean, [1.0], replicates=0)
    with pytest.raises(ValueError, match=r"alpha must lie in \(0, 1\)"):
        bootstrap_ci(np.mean, [1.0], alpha=1.5)


def test_wilson_interval_known_values() -> None:
    # Reference values of the Wilson score interval (z = 1.96) for 0/10, 5/10 and 10/10.
    zero = wilson_interval(0, 10)
    assert (zero.estimate, zero.low) == (0.0, 0.0)
    assert zero.high == pytest.approx(0.2775, abs=1e-4)
    half = wilson_interval(5, 10)
    assert (half.low, half.high) == (
        pytest.approx(0.2366, abs=1e-4),
        pytest.approx(0.7634, abs=1e-4),
    )
    full = wilson_interval(10, 10)
    assert full.high == 1.0 and full.low == pytest.approx(0.7225, abs=1e-4)
    with pytest.raises(UndefinedMetric, match="zero cases"):
        wilson_interval(0, 0)


def test_confusion_counts_and_rates_by_hand() -> None:
    labels = [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]
    scores = [0.9, 0.8, 0.4, 0.2, 0.7, 0.3, 0.2, 0.1, 0.1, 0.0]
    result = confusion_at(labels, scores, 0.5)
    assert (result.tp, result.fn, result.fp, result.tn) == (2, 2, 1, 5)
    assert result.sensitivity.estimate == 2 / 4
    assert result.specificity.estimate == 5 / 6
    assert result.ppv.estimate == 2 / 3
    assert result.npv.estimate == 5 / 7
    assert result.sensitivity == wilson_interval(2, 4)
    # A threshold above every score flags nothing: PPV has no value, the others do.
    none_flagged = confusion_at(labels, scores, 0.95)
    assert none_flagged.ppv is None and none_flagged.npv.estimate == 6 / 10


def test_confusion_bootstrap_intervals_hold_the_same_estimates() -> None:
    labels = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0] * 3)
    flagged = np.array([1, 1, 0, 0, 1, 0, 0, 0, 0, 0] * 3, dtype=bool)
    result = confusion_from_flags(labels, flagged, method="bootstrap", replicates=200, seed=1)
    assert result.sensitivity.method == "bootstrap"
    assert result.sensitivity.estimate == 0.5
    assert result.ppv.estimate == pytest.approx(2 / 3)
    assert result.sensitivity.low < 0.5 < result.sensitivity.high


def test_localisation_hit_uses_ten_mm_floor_and_radius_plus_five() -> None:
    centre = (10.0, 20.0, 30.0)
    # Small lesion (6 mm): the 10 mm floor applies.
    assert localisation_hit((10.0, 20.0, 39.9), centre, 6.0)
    assert not localisation_hit((10.0, 20.0, 40.1), centre, 6.0)
    # Large lesion (30 mm): radius 15 + 5 = 20 mm.
    assert localisation_hit((10.0, 32.0, 46.0), centre, 30.0)  # 20.0 mm away
    assert not localisation_hit((10.0, 20.0, 50.5), centre, 30.0)
    assert not localisation_hit(None, centre, 30.0)
    with pytest.raises(ValueError, match="true_diameter_mm must be positive"):
        localisation_hit(centre, centre, 0.0)
    with pytest.raises(ValueError, match="pred_xyz needs 3 coordinates"):
        localisation_hit((1.0, 2.0), centre, 5.0)


def test_size_bins_and_locations() -> None:
    assert [size_bin(d) for d in (3.0, 9.99, 10.0, 20.0, 20.01)] == [
        SizeBin.SMALL,
        SizeBin.SMALL,
        SizeBin.MEDIUM,
        SizeBin.MEDIUM,
        SizeBin.LARGE,
    ]
    assert location_of(" Body ") is Location.BODY
    with pytest.raises(ValueError, match="lesion location must be one of head, body, tail"):
        location_of("neck")
    with pytest.raises(ValueError, match="lesion diameter must be a positive number"):
        size_bin(math.nan)


def test_interval_validates_itself() -> None:
    with pytest.raises(ValueError, match="low 0.6 is above high 0.4"):
        Interval(0.5, 0.6, 0.4)
    with pytest.raises(ValueError, match="estimate must be finite"):
        Interval(math.nan, 0.0, 1.0)
