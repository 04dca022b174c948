"""How well a score separates series with a pancreatic lesion from series without.

Plain numpy on arrays of case labels (1 = lesion, 0 = none) and scores, so the same code
serves `screen evaluate`, the model card and anyone checking our numbers by hand:

- :func:`auroc` and :func:`roc_curve`: discrimination over all thresholds;
- :func:`flags` / :func:`is_flagged`: the one flag rule, ``score >= threshold`` in float32;
- :func:`confusion_at` / :func:`confusion_from_flags`: sensitivity, specificity, PPV and NPV
  at one operating point, each with a confidence interval;
- :func:`bootstrap_ci` and :func:`wilson_interval`: the intervals;
- :func:`localisation_hit`: whether a reported lesion centre is on the true lesion;
- :func:`size_bin` and :func:`location_of`: the strata results are broken down by.

A metric that has no value for the cases given (one class only, an empty denominator)
raises :class:`UndefinedMetric`, a ValueError that the bootstrap recognises and skips.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from statistics import NormalDist
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

from screen.records import Location

logger = logging.getLogger(__name__)

# Localisation: a hit is within this distance of the true centre, or within the lesion's
# radius plus LOCALISATION_MARGIN_MM for lesions large enough that the radius dominates.
LOCALISATION_MIN_MM = 10.0
LOCALISATION_MARGIN_MM = 5.0

# Size strata edges in mm: below SMALL_MAX is small, above LARGE_MIN is large.
SMALL_MAX_MM = 10.0
LARGE_MIN_MM = 20.0

__all__ = [
    "Confusion",
    "Interval",
    "SizeBin",
    "UndefinedMetric",
    "auroc",
    "bootstrap_ci",
    "check_labels",
    "check_scores",
    "confusion_at",
    "confusion_from_flags",
    "flags",
    "is_flagged",
    "localisation_hit",
    "location_of",
    "roc_curve",
    "size_bin",
    "wilson_interval",
]


class UndefinedMetric(ValueError):
    """The metric has no value for these cases: one class only, or an empty denominator."""


@dataclass(frozen=True, slots=True)
class Interval:
    """An estimate with its confidence interval.

    ``method`` is ``bootstrap`` or ``wilson``. For a bootstrap, ``replicates`` counts the
    resamples that gave a value and ``skipped`` those that could not (a resample holding a
    single class has no AUROC), so a reader can judge how far to trust the interval.
    """

    estimate: float
    low: float
    high: float
    level: float = 0.95
    method: str = "bootstrap"
    replicates: int = 0
    skipped: int = 0

    def __post_init__(self) -> None:
        for name in ("estimate", "low", "high", "level"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)):
                raise TypeError(f"Interval.{name} must be a number, got {value!r}")
            if not math.isfinite(value):
                raise ValueError(f"Interval.{name} must be finite, got {value!r}")
            object.__setattr__(self, name, float(value))
        if self.low > self.high:
            raise ValueError(f"Interval low {self.low} is above high {self.high}")
        if not 0.0 < self.level < 1.0:
            raise ValueError(f"Interval level must lie in (0, 1), got {self.level}")
        if self.replicates < 0 or self.skipped < 0:
            raise ValueError(
                f"replicate counts cannot be negative: {self.replicates}, {self.skipped}"
            )

    def to_dict(self) -> dict[str, object]:
        return {
            "estimate": self.estimate,
            "low": self.low,
            "high": self.high,
            "level": self.level,
            "method": self.method,
            "replicates": self.replicates,
            "skipped": self.skipped,
        }

    def __str__(self) -> str:
        return f"{self.estimate:.3f} ({self.low:.3f}-{self.high:.3f})"


# --- inputs -------------------------------------------------------------------------------


def check_labels(labels: ArrayLike, name: str = "labels") -> np.ndarray:
    """Labels as a 1-D bool array; accepts bools or numbers that are all 0 or 1."""
    array = np.asarray(labels)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {array.shape}")
    if array.dtype == bool:
        return array
    if not np.issubdtype(array.dtype, np.number):
        raise TypeError(f"{name} must be 0/1 or bool, got dtype {array.dtype}")
    bad = ~np.isin(array, (0, 1))
    if bad.any():
        raise ValueError(f"{name} must be 0 or 1, got {array[bad][0].item()!r}")
    return array.astype(bool)


def check_scores(scores: ArrayLike, n: int, name: str = "scores") -> np.ndarray:
    """Scores as a 1-D float array of length ``n`` with no NaN or infinity."""
    array = np.asarray(scores)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {array.shape}")
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise TypeError(f"{name} must be numbers, got dtype {array.dtype}")
    if len(array) != n:
        raise ValueError(f"{name} has {len(array)} values for {n} labels")
    array = array.astype(np.float64)
    if not np.isfinite(array).all():
        raise ValueError(f"{name} must be finite, got {array[~np.isfinite(array)][0].item()!r}")
    return array


def _both_classes(labels: np.ndarray) -> tuple[int, int]:
    n_pos = int(labels.sum())
    n_neg = len(labels) - n_pos
    if n_pos == 0 or n_neg == 0:
        present = "positive" if n_pos else "negative"
        raise UndefinedMetric(
            f"needs both positive and negative cases; all {len(labels)} are {present}"
        )
    return n_pos, n_neg


# --- discrimination -----------------------------------------------------------------------


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, tied values sharing the mean of the ranks they span."""
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    starts_group = np.concatenate(([True], ordered[1:] != ordered[:-1]))
    group = np.cumsum(starts_group) - 1
    starts = np.flatnonzero(starts_group)
    ends = np.append(starts[1:], len(values))  # exclusive
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = ((starts + 1 + ends) / 2.0)[group]
    return ranks


def auroc(labels: ArrayLike, scores: ArrayLike) -> float:
    """Area under the ROC curve: the chance a random positive outscores a random negative.

    Computed as the Mann-Whitney U statistic, a tie between a positive and a negative
    counting one half. Raises :class:`UndefinedMetric` when only one class is present.
    """
    y = check_labels(labels)
    s = check_scores(scores, len(y))
    n_pos, n_neg = _both_classes(y)
    rank_sum = _average_ranks(s)[y].sum()
    u = rank_sum - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def roc_curve(labels: ArrayLike, scores: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """False and true positive rates at every distinct score used as threshold.

    A case is called positive when its score is >= the threshold. The first point is
    (0, 0) at threshold +inf; thresholds then fall through the distinct scores, so the last
    point is (1, 1). The trapezoid area under the curve equals :func:`auroc`.
    """
    y = check_labels(labels)
    s = check_scores(scores, len(y))
    n_pos, n_neg = _both_classes(y)
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    # The last index of each run of equal scores: all of them cross the threshold together.
    last = np.flatnonzero(np.append(s[1:] != s[:-1], True))
    tp = np.cumsum(y)[last]
    fp = (last + 1) - tp
    tpr = np.concatenate(([0.0], tp / n_pos))
    fpr = np.concatenate(([0.0], fp / n_neg))
    thresholds = np.concatenate(([np.inf], s[last]))
    return fpr, tpr, thresholds


# --- intervals ----------------------------------------------------------------------------


def _check_alpha(alpha: float) -> None:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")


def bootstrap_ci(
    statistic: Callable[..., float],
    *arrays: ArrayLike,
    replicates: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> Interval:
    """Percentile bootstrap interval of ``statistic(*arrays)``, resampling cases.

    The arrays are columns of one set of cases (labels, scores, ...): each replicate draws
    case indices with replacement and takes the same rows of every array. A replicate for
    which the statistic is undefined (it raises :class:`UndefinedMetric`, e.g. a resample
    with one class only) is skipped and counted in ``Interval.skipped``. The same seed gives
    the same interval.
    """
    if isinstance(replicates, bool) or not isinstance(replicates, int):
        raise TypeError(f"replicates must be an int, got {replicates!r}")
    if replicates < 1:
        raise ValueError(f"replicates must be at least 1, got {replicates}")
    _check_alpha(alpha)
    if not arrays:
        raise ValueError("bootstrap_ci needs at least one array of cases")
    columns = [np.asarray(a) for a in arrays]
    n = len(columns[0])
    if n == 0:
        raise ValueError("bootstrap_ci needs at least one case")
    if any(len(c) != n for c in columns):
        raise ValueError(f"arrays differ in length: {[len(c) for c in columns]}")

    estimate = float(statistic(*columns))
    rng = np.random.default_rng(seed)
    values: list[float] = []
    skipped = 0
    for _ in range(replicates):
        rows = rng.integers(0, n, size=n)
        try:
            values.append(float(statistic(*(c[rows] for c in columns))))
        except UndefinedMetric:
            skipped += 1
    if not values:
        raise UndefinedMetric(f"all {replicates} bootstrap replicates were undefined")
    if skipped:
        logger.warning(
            "%d of %d bootstrap replicates skipped: the statistic was undefined for them",
            skipped,
            replicates,
        )
    low, high = np.quantile(np.asarray(values), [alpha / 2.0, 1.0 - alpha / 2.0])
    return Interval(
        estimate,
        float(low),
        float(high),
        level=1.0 - alpha,
        method="bootstrap",
        replicates=len(values),
        skipped=skipped,
    )


def wilson_interval(successes: int, n: int, alpha: float = 0.05) -> Interval:
    """Wilson score interval of a proportion; stays inside [0, 1] and behaves at 0 and n."""
    if n < 0 or not 0 <= successes <= max(n, 0):
        raise ValueError(f"need 0 <= successes <= n, got {successes} of {n}")
    if n == 0:
        raise UndefinedMetric("a proportion of zero cases has no value")
    _check_alpha(alpha)
    z = NormalDist().inv_cdf(1.0 - alpha / 2.0)
    p = successes / n
    denominator = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    # Clamp rounding so that 0/n and n/n give intervals that include the estimate exactly.
    low = min(max(0.0, centre - half), p)
    high = max(min(1.0, centre + half), p)
    return Interval(p, low, high, level=1.0 - alpha, method="wilson")


# --- operating point ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Confusion:
    """Counts at one operating point and the rates made from them.

    A rate is None when its denominator is empty (no flagged series has no PPV). PPV and
    NPV hold for the prevalence of the cases evaluated, not for another population.
    """

    tp: int
    fp: int
    tn: int
    fn: int
    sensitivity: Interval | None
    specificity: Interval | None
    ppv: Interval | None
    npv: Interval | None

    def __post_init__(self) -> None:
        for name in ("tp", "fp", "tn", "fn"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                raise ValueError(f"Confusion.{name} must be a count, got {value!r}")
            object.__setattr__(self, name, int(value))

    def to_dict(self) -> dict[str, object]:
        return {
            "tp": self.tp,
            "fp": self.fp,
            "tn": self.tn,
            "fn": self.fn,
            **{
                name: (None if rate is None else rate.to_dict())
                for name, rate in (
                    ("sensitivity", self.sensitivity),
                    ("specificity", self.specificity),
                    ("ppv", self.ppv),
                    ("npv", self.npv),
                )
            },
        }


def flags(scores: ArrayLike, threshold: float) -> np.ndarray:
    """The one flag rule: ``score >= threshold``, both compared as the worklist stores the
    score (float32). A score read back from a worklist is then flagged exactly as it was when
    it was computed, even at a threshold that float32 rounds (0.7 is 0.69999999 there)."""
    return np.asarray(scores, dtype=np.float32) >= np.float32(threshold)


def is_flagged(score: float, threshold: float) -> bool:
    """:func:`flags` for one score."""
    return bool(flags(score, threshold))


def _rate_of(hit: np.ndarray, among: np.ndarray) -> float:
    n = int(among.sum())
    if n == 0:
        raise UndefinedMetric("empty denominator")
    return float((hit & among).sum() / n)


def confusion_from_flags(
    labels: ArrayLike,
    flagged: ArrayLike,
    *,
    method: Literal["wilson", "bootstrap"] = "wilson",
    alpha: float = 0.05,
    replicates: int = 1000,
    seed: int = 0,
) -> Confusion:
    """Confusion counts and rates of flags already decided (the worklist's ``flagged``)."""
    y = check_labels(labels)
    f = check_labels(flagged, "flagged")
    if len(f) != len(y):
        raise ValueError(f"flagged has {len(f)} values for {len(y)} labels")
    if method not in ("wilson", "bootstrap"):
        raise ValueError(f"method must be 'wilson' or 'bootstrap', got {method!r}")
    tp = int((y & f).sum())
    fp = int((~y & f).sum())
    tn = int((~y & ~f).sum())
    fn = int((y & ~f).sum())

    # (numerator cases, denominator cases) for each rate, as functions of (labels, flags).
    definitions: dict[str, Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]]
    definitions = {
        "sensitivity": lambda y, f: (f, y),
        "specificity": lambda y, f: (~f, ~y),
        "ppv": lambda y, f: (y, f),
        "npv": lambda y, f: (~y, ~f),
    }
    rates: dict[str, Interval | None] = {}
    for name, parts in definitions.items():
        hit, among = parts(y, f)
        n = int(among.sum())
        if n == 0:
            rates[name] = None
        elif method == "wilson":
            rates[name] = wilson_interval(int((hit & among).sum()), n, alpha)
        else:
            rates[name] = bootstrap_ci(
                lambda y, f, parts=parts: _rate_of(*parts(y, f)),
                y,
                f,
                replicates=replicates,
                seed=seed,
                alpha=alpha,
            )
    return Confusion(tp, fp, tn, fn, **rates)


def confusion_at(
    labels: ArrayLike,
    scores: ArrayLike,
    threshold: float,
    *,
    method: Literal["wilson", "bootstrap"] = "wilson",
    alpha: float = 0.05,
    replicates: int = 1000,
    seed: int = 0,
) -> Confusion:
    """Sensitivity, specificity, PPV and NPV when the series :func:`flags` at ``threshold``
    are flagged."""
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.floating)):
        raise TypeError(f"threshold must be a number, got {threshold!r}")
    if not math.isfinite(threshold):
        raise ValueError(f"threshold must be finite, got {threshold}")
    y = check_labels(labels)
    s = check_scores(scores, len(y))
    return confusion_from_flags(
        y, flags(s, threshold), method=method, alpha=alpha, replicates=replicates, seed=seed
    )


# --- localisation and strata --------------------------------------------------------------


def _point(name: str, xyz: Sequence[float] | np.ndarray) -> np.ndarray:
    point = np.asarray(xyz, dtype=np.float64)
    if point.shape != (3,):
        raise ValueError(f"{name} needs 3 coordinates, got {xyz!r}")
    if not np.isfinite(point).all():
        raise ValueError(f"{name} holds a non-finite coordinate: {xyz!r}")
    return point


def localisation_hit(
    pred_xyz: Sequence[float] | np.ndarray | None,
    true_xyz: Sequence[float] | np.ndarray,
    true_diameter_mm: float,
) -> bool:
    """Whether a reported lesion centre lies on the true lesion.

    A hit is a predicted centre within max(10 mm, radius + 5 mm) of the true centre, both
    in patient coordinates (LPS, mm). The 10 mm floor keeps small lesions from demanding
    more precision than the slice spacing allows. No prediction (None) is a miss.
    """
    truth = _point("true_xyz", true_xyz)
    if not math.isfinite(true_diameter_mm) or true_diameter_mm <= 0:
        raise ValueError(f"true_diameter_mm must be positive, got {true_diameter_mm}")
    if pred_xyz is None:
        return False
    predicted = _point("pred_xyz", pred_xyz)
    allowed = max(LOCALISATION_MIN_MM, true_diameter_mm / 2.0 + LOCALISATION_MARGIN_MM)
    return bool(np.linalg.norm(predicted - truth) <= allowed)


class SizeBin(str, Enum):
    """Lesion size strata by largest diameter: <10 mm, 10-20 mm (both ends), >20 mm."""

    SMALL = "<10"
    MEDIUM = "10-20"
    LARGE = ">20"


def size_bin(diameter_mm: float) -> SizeBin:
    """The size stratum of a lesion of this largest diameter in mm."""
    if not math.isfinite(diameter_mm) or diameter_mm <= 0:
        raise ValueError(f"lesion diameter must be a positive number of mm, got {diameter_mm}")
    if diameter_mm < SMALL_MAX_MM:
        return SizeBin.SMALL
    if diameter_mm <= LARGE_MIN_MM:
        return SizeBin.MEDIUM
    return SizeBin.LARGE


def location_of(value: str | Location) -> Location:
    """The location stratum from text such as ``head``, ``Body`` or `` tail ``."""
    if isinstance(value, Location):
        return value
    if not isinstance(value, str):
        raise TypeError(f"lesion location must be text, got {value!r}")
    try:
        return Location(value.strip().lower())
    except ValueError:
        allowed = ", ".join(loc.value for loc in Location)
        raise ValueError(f"lesion location must be one of {allowed}; got {value!r}") from None


# --- agreement ----------------------------------------------------------------------------


def cohen_kappa(first: Sequence[str], second: Sequence[str]) -> float:
    """Cohen's kappa of two raters' labels for the same cases: 1 is full agreement, 0 what
    chance alone would give."""
    if len(first) != len(second):
        raise ValueError(f"two raters need labels for the same cases, got {len(first)} and {len(second)}")
    if not first:
        raise UndefinedMetric("agreement over no cases has no value")
    n = len(first)
    observed = sum(a == b for a, b in zip(first, second, strict=True)) / n
    categories = set(first) | set(second)
    chance = sum((list(first).count(c) / n) * (list(second).count(c) / n) for c in categories)
    if chance >= 1.0:
        raise UndefinedMetric("both raters gave a single, identical label: kappa has no value")
    return (observed - chance) / (1.0 - chance)
