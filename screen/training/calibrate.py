"""Turning detector features into a calibrated probability, and choosing the operating point."""

from __future__ import annotations

import logging

import numpy as np

logger = logging.getLogger(__name__)


def fit_platt(features: np.ndarray, labels: np.ndarray, l2: float = 1e-2, iterations: int = 100,
              increasing: bool = True) -> tuple[np.ndarray, float]:
    """Logistic regression by Newton's method with a small ridge penalty on the coefficients
    (which keeps the fit finite when the validation cases separate perfectly).

    With ``increasing``, every feature is evidence *for* a lesion: one whose fitted weight
    comes out negative (noise in a small validation set) is dropped and the rest refitted,
    so the score can never fall as the lesion evidence grows.
    """
    x = np.asarray(features, dtype=np.float64)
    keep = np.ones(x.shape[1] if x.ndim == 2 else 0, dtype=bool)
    while True:
        coef, intercept = _fit(x[:, keep] if x.ndim == 2 else x, labels, l2, iterations)
        if not increasing or np.all(coef >= 0):
            break
        negative = np.flatnonzero(keep)[np.flatnonzero(coef < 0)]
        keep[negative] = False
    full = np.zeros(len(keep))
    full[keep] = coef
    return full, intercept


def _fit(features: np.ndarray, labels: np.ndarray, l2: float, iterations: int) -> tuple[np.ndarray, float]:
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    if x.ndim != 2 or len(x) != len(y):
        raise ValueError(f"features must be (n, d) matching {len(y)} labels, got {x.shape}")
    if not (0 < y.sum() < len(y)):
        raise ValueError("calibration needs both lesion and lesion-free cases")
    mean, std = x.mean(axis=0), x.std(axis=0)
    # A feature that does not vary carries no information: leave it standardised to zero, so
    # the penalty holds its coefficient at zero instead of dividing by nothing.
    std = np.where(std < 1e-6, 1.0, std)
    z = np.hstack([np.ones((len(x), 1)), (x - mean) / std])
    w = np.zeros(z.shape[1])
    penalty = np.full(z.shape[1], l2)
    penalty[0] = 0.0
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-(z @ w)))
        grad = z.T @ (p - y) + penalty * w
        hess = (z * (p * (1 - p))[:, None]).T @ z + np.diag(penalty) + 1e-9 * np.eye(len(w))
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-10:
            break
    coef = w[1:] / std
    intercept = float(w[0] - (w[1:] * mean / std).sum())
    return coef, intercept


def threshold_for_sensitivity(scores: np.ndarray, labels: np.ndarray, target: float = 0.95) -> float:
    """The highest threshold at which ``score >= threshold`` flags at least ``target`` of the
    positive cases."""
    if not 0.0 < target <= 1.0:
        raise ValueError(f"target sensitivity must lie in (0, 1], got {target}")
    positives = np.sort(np.asarray(scores, dtype=np.float64)[np.asarray(labels) == 1])
    if positives.size == 0:
        raise ValueError("no positive cases to set a threshold on")
    allowed_misses = int(np.floor((1.0 - target) * positives.size + 1e-9))
    return float(positives[allowed_misses])
