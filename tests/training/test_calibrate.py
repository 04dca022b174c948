"""Platt calibration and the operating threshold."""

from __future__ import annotations

import numpy as np
import pytest

from screen.model.card import Calibration
from screen.training.calibrate import fit_platt, threshold_for_sensitivity


def test_platt_recovers_the_coefficients_it_was_drawn_from():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4000, 2))
    p = 1.0 / (1.0 + np.exp(-(0.5 + 2.0 * x[:, 0] - 1.0 * x[:, 1])))
    y = (rng.random(4000) < p).astype(int)
    coef, intercept = fit_platt(x, y, l2=0.0, increasing=False)
    np.testing.assert_allclose(coef, [2.0, -1.0], atol=0.2)
    assert intercept == pytest.approx(0.5, abs=0.15)
    names = ("lesion_logit", "lesion_log_mm3")
    score = Calibration(names, tuple(coef), intercept).score(dict.fromkeys(names, 0.0))
    assert score == pytest.approx(1 / (1 + np.exp(-intercept)))


def test_platt_stays_finite_when_the_classes_separate():
    x = np.array([[0.0], [1.0], [2.0], [3.0]])
    coef, intercept = fit_platt(x, np.array([0, 0, 1, 1]))
    assert np.all(np.isfinite(coef)) and np.isfinite(intercept)


def test_platt_needs_both_classes():
    with pytest.raises(ValueError, match="both lesion and lesion-free"):
        fit_platt(np.zeros((3, 1)), np.array([1, 1, 1]))


def test_threshold_keeps_the_requested_sensitivity():
    scores = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95])
    labels = np.array([0, 0, 1, 0, 1, 1, 1, 1, 1, 1])
    t = threshold_for_sensitivity(scores, labels, 0.95)
    assert t == 0.3  # 7 positives: missing even one would drop below 95 %
    assert threshold_for_sensitivity(scores, labels, 0.8) == 0.5


def test_extreme_scores_do_not_overflow():
    cal = Calibration(("lesion_logit",), (1.0,), 0.0)
    assert cal.score({"lesion_logit": 1000.0}) == 1.0 and cal.score({"lesion_logit": -1000.0}) == 0.0


def test_a_calibration_names_only_features_the_detector_computes():
    with pytest.raises(ValueError, match=r"unknown calibration feature\(s\) \['lesion_max'\]"):
        Calibration(("lesion_max",), (1.0,), 0.0)


def test_a_constant_feature_gets_no_weight():
    x = np.array([[0.0, 2.0], [1.0, 2.0], [2.0, 2.0], [3.0, 2.0], [1.5, 2.0]])
    coef, intercept = fit_platt(x, np.array([0, 0, 1, 1, 0]))
    assert coef[1] == 0.0 and coef[0] > 0.0 and np.isfinite(intercept)


def test_a_feature_that_would_lower_the_score_is_dropped():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(400, 2))
    y = (x[:, 0] - 1.5 * x[:, 1] + rng.normal(0, 0.5, 400) > 0).astype(int)
    coef, _ = fit_platt(x, y)
    assert coef[0] > 0 and coef[1] == 0.0
    free, _ = fit_platt(x, y, increasing=False)
    assert free[1] < 0
