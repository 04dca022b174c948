"""The accuracy gate: a converted engine is registered only if it screens as well as FP32.

Both detectors (FP32, and the same package with the converted networks) run through ONNX
Runtime on the same validation cases. The gate reports the AUROC of each, how far their
lesion masks agree (Dice between the two, and against the truth mask for phantoms), how far
their lesion centres move, and the largest score change. An AUROC drop larger than
:data:`MAX_AUROC_DROP` refuses the engine unless the build is forced, and a forced build
says so in its metadata.

Validation cases are a labelled archive (``--validate``: a truth.csv in or beside it), or by
default phantoms drawn from seeds that training never uses, small enough to score in a
couple of minutes on two cores.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from screen.detect.detector import Analysis, Detector, analyse
from screen.detect.preprocess import to_volume_labels
from screen.metrics import auroc
from screen.records import Volume

logger = logging.getLogger(__name__)

MAX_AUROC_DROP = 0.02
DEFAULT_CASES = 12


class GateRefused(ValueError):
    """The converted engine lost too much accuracy; the message gives the numbers."""


@dataclass(frozen=True, slots=True)
class ValidationCase:
    name: str
    volume: Volume
    label: bool
    lesion_mask: np.ndarray | None = None  # bool on the volume's voxels, when known

    def __post_init__(self) -> None:
        if self.lesion_mask is not None and self.lesion_mask.shape != self.volume.hu.shape:
            raise ValueError(
                f"case {self.name}: lesion mask {self.lesion_mask.shape} does not match the volume {self.volume.hu.shape}"
            )


@dataclass(frozen=True, slots=True)
class GateReport:
    """How the converted engine compares with FP32 on the validation cases."""

    precision: str
    n_cases: int
    n_positive: int
    auroc_fp32: float
    auroc_candidate: float
    max_score_delta: float
    dice_agreement: float | None  # mean Dice of the two lesion masks, where either has one
    dice_truth_fp32: float | None  # mean Dice against the truth mask, positives with masks
    dice_truth_candidate: float | None
    localisation_delta_mm: float | None  # largest move of the lesion centre, where both find one
    lesion_disagreements: int  # cases where only one of the two finds a lesion
    max_drop: float = MAX_AUROC_DROP

    @property
    def auroc_drop(self) -> float:
        return self.auroc_fp32 - self.auroc_candidate

    @property
    def passed(self) -> bool:
        return self.auroc_drop <= self.max_drop

    def summary(self) -> str:
        dice = "n/a" if self.dice_agreement is None else f"{self.dice_agreement:.3f}"
        moved = "n/a" if self.localisation_delta_mm is None else f"{self.localisation_delta_mm:.1f} mm"
        return (
            f"{self.precision} on {self.n_cases} cases ({self.n_positive} with lesion): AUROC "
            f"{self.auroc_fp32:.3f} (fp32) -> {self.auroc_candidate:.3f} (drop {self.auroc_drop:+.3f}, "
            f"allowed {self.max_drop:.3f}); largest score change {self.max_score_delta:.4f}; lesion Dice "
            f"fp32 vs {self.precision} {dice}; lesion centre moved at most {moved}; "
            f"{self.lesion_disagreements} case(s) where only one finds a lesion"
        )

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "auroc_drop": self.auroc_drop, "passed": self.passed}


def _lesion_mask(analysis: Analysis, volume: Volume, threshold: float) -> np.ndarray:
    if analysis.lesion_probability is None or analysis.segment_grid is None:
        return np.zeros(volume.hu.shape, dtype=bool)
    fine = (analysis.lesion_probability > threshold).astype(np.uint8)
    return to_volume_labels(fine, analysis.segment_grid, volume.hu.shape).astype(bool)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice of two boolean masks; two empty masks agree perfectly."""
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(a, b).sum()) / total


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def compare(reference: Detector, candidate: Detector, cases: Iterable[ValidationCase], precision: str,
            max_drop: float = MAX_AUROC_DROP) -> GateReport:
    """Score every case with both detectors and measure how far they differ."""
    if reference.card.name != candidate.card.name:
        raise ValueError(f"comparing different models: {reference.card.name!r} and {candidate.card.name!r}")
    threshold = reference.card.postprocess.lesion_probability
    labels: list[bool] = []
    ref_scores: list[float] = []
    new_scores: list[float] = []
    agreement: list[float] = []
    truth_ref: list[float] = []
    truth_new: list[float] = []
    moved: list[float] = []
    disagreements = 0
    for case in cases:
        a = analyse(case.volume, reference)
        b = analyse(case.volume, candidate)
        labels.append(case.label)
        ref_scores.append(a.detection.score)
        new_scores.append(b.detection.score)
        mask_a = _lesion_mask(a, case.volume, threshold)
        mask_b = _lesion_mask(b, case.volume, threshold)
        if mask_a.any() or mask_b.any():
            agreement.append(dice(mask_a, mask_b))
        if case.label and case.lesion_mask is not None:
            truth_ref.append(dice(mask_a, case.lesion_mask))
            truth_new.append(dice(mask_b, case.lesion_mask))
        ca, cb = a.detection.lesion_center_lps, b.detection.lesion_center_lps
        if ca is not None and cb is not None:
            moved.append(math.dist(ca, cb))
        elif (ca is None) != (cb is None):
            disagreements += 1
        logger.info("gate case %s (label %d): score %.4f fp32, %.4f %s",
                    case.name, case.label, a.detection.score, b.detection.score, precision)
    if not labels:
        raise ValueError("the accuracy gate got no validation cases")
    return GateReport(
        precision=precision, n_cases=len(labels), n_positive=int(sum(labels)),
        auroc_fp32=auroc(labels, ref_scores), auroc_candidate=auroc(labels, new_scores),
        max_score_delta=float(np.max(np.abs(np.subtract(ref_scores, new_scores)))),
        dice_agreement=_mean(agreement), dice_truth_fp32=_mean(truth_ref),
        dice_truth_candidate=_mean(truth_new),
        localisation_delta_mm=max(moved) if moved else None,
        lesion_disagreements=disagreements, max_drop=max_drop,
    )


def judge(report: GateReport, force: bool = False) -> GateReport:
    """The report when the engine passes (or is forced through); GateRefused otherwise."""
    if report.passed:
        return report
    if force:
        logger.warning("accuracy gate refused the engine, registered anyway (forced): %s", report.summary())
        return report
    raise GateRefused(
        f"accuracy gate refused the {report.precision} engine: AUROC dropped by "
        f"{report.auroc_drop:.3f} (more than {report.max_drop:.3f} allowed). {report.summary()}. "
        "Use --force to register it anyway; the engine will record that it was forced."
    )


def phantom_cases(n: int = DEFAULT_CASES) -> Iterator[ValidationCase]:
    """Held-out phantoms (half with a lesion), rendered one at a time to keep memory low.

    Coarser pixels and a smaller matrix than the held-out set proper: the networks resample
    to their own grids anyway, and this keeps the gate to a couple of minutes on two cores.
    """
    from screen.synth.cases import HELD_OUT_SETTINGS, ScanSettings, draw_case, gate_seeds

    if n < 2:
        raise ValueError(f"the accuracy gate needs at least 2 cases, got {n}")
    settings = ScanSettings(
        slice_mm=(2.5, 3.75, 5.0), pixel_mm=(1.9, 2.2), matrix=192,
        z_cover_mm=HELD_OUT_SETTINGS.z_cover_mm, lesion_fraction=HELD_OUT_SETTINGS.lesion_fraction,
        extra_noise_hu=HELD_OUT_SETTINGS.extra_noise_hu,
    )
    want = {True: n // 2, False: n - n // 2}
    for s in gate_seeds():
        if not (want[True] or want[False]):
            return
        # draw_case decides lesion or not by the first number its seed's generator draws;
        # peeking at it balances the classes without rendering phantoms that would be dropped.
        lesion = bool(np.random.default_rng(s).random() < settings.lesion_fraction)
        if not want[lesion]:
            continue
        want[lesion] -= 1
        volume, phantom = draw_case(s, settings)
        yield ValidationCase(f"phantom {s}", volume, phantom.lesion_center_kji is not None,
                             phantom.labels == 2)


def archive_cases(archive: Path, limit: int | None = None) -> Iterator[ValidationCase]:
    """The labelled eligible series of an archive (its truth.csv in or beside it)."""
    from screen.engines.calibration import archive_candidates
    from screen.truth import truth_beside
    from screen.volume import VolumeError, load_volume

    archive = Path(archive)
    if truth_beside(archive) is None:
        raise ValueError(f"validation archive {archive} has no truth.csv in or beside it")
    labelled = [c for c in archive_candidates(archive) if c.label is not None]
    if not labelled or all(c.label for c in labelled) or not any(c.label for c in labelled):
        raise ValueError(f"validation archive {archive} needs labelled series with and without lesions")
    for c in sorted(labelled, key=lambda c: c.uid)[:limit]:
        try:
            volume = load_volume(c.entry.series)  # type: ignore[attr-defined]
        except VolumeError as exc:
            logger.warning("gate skips series %s: %s", c.uid, exc)
            continue
        yield ValidationCase(c.uid, volume, bool(c.label))
