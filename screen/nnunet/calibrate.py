"""``screen calibrate``: an imported model's score calibrated on a site's own labelled series.

The archive is swept with the model uncalibrated; the truth CSV that ``screen evaluate`` reads
gives each series' label; a Platt fit on the logit of the raw score (the same fit the bundled
model's training uses) and the threshold that flags the target share of lesions are written,
with the measured AUROC and its bootstrap interval, into the card of a copy of the package.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from screen.model.card import CARD_FILE
from screen.nnunet.card import UNCALIBRATED, NnunetCard, ScoreCalibration

logger = logging.getLogger(__name__)


def _logit(p: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


def calibrate_package(model: str | Path, archives: Sequence[Path], truth: Path, out: Path, *,
                      target_sensitivity: float = 0.95, workers: int | None = None,
                      replicates: int = 1000, seed: int = 0, progress=None) -> NnunetCard:
    from screen.evaluate import match_cases, read_worklist
    from screen.metrics import auroc, bootstrap_ci
    from screen.model.package import ModelPackage, find_package
    from screen.scan import ScanOptions, scan
    from screen.training.calibrate import fit_platt, threshold_for_sensitivity
    from screen.truth import read_truth

    package = find_package(model)
    if not isinstance(package.card, NnunetCard):
        raise ValueError(f"model {package.card.name!r} is not an imported model; the bundled "
                         "model is recalibrated with python -m screen.training.recalibrate")
    out = Path(out)
    if out.exists():
        raise ValueError(f"{out} already exists; give a new folder for the calibrated copy")
    cases_truth = read_truth(truth)  # a bad truth file fails before any work
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        copy = staging / "package"
        shutil.copytree(package.path, copy)
        raw_card = replace(package.card, calibration=None)
        (copy / CARD_FILE).write_text(json.dumps(raw_card.to_dict(), indent=2) + "\n", encoding="utf-8")
        worklist = staging / "worklist.parquet"
        scan(list(archives), worklist, options=ScanOptions(model=str(copy), workers=workers, gpus=0),
             **({"progress": progress} if progress is not None else {}))
        cases = match_cases(cases_truth, read_worklist(worklist), None)
        labels = np.array([c.truth.label for c in cases], dtype=bool)
        if labels.all() or not labels.any():
            raise ValueError(f"{truth}: calibration needs series with and without lesions; "
                             f"{int(labels.sum())} of {len(labels)} have one")
        raw = np.array([c.score for c in cases], dtype=float)
        coef, intercept = fit_platt(np.array([[_logit(r)] for r in raw]), labels.astype(float))
        calibration = ScoreCalibration(float(intercept), float(coef[0]))
        scores = np.array([calibration.score(r) for r in raw])
        threshold = threshold_for_sensitivity(scores, labels, target_sensitivity)
        interval = bootstrap_ci(auroc, labels, scores, replicates=replicates, seed=seed)
        measured = {
            "series": int(len(labels)), "with_lesion": int(labels.sum()),
            "auroc": interval.estimate, "auroc_95ci": [interval.low, interval.high],
            "threshold": threshold, "target_sensitivity": target_sensitivity,
            "truth": Path(truth).name,
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        }
        note = (f"Calibrated on {len(labels)} of this site's series ({int(labels.sum())} with a "
                f"lesion): AUROC {interval.estimate:.2f} (95 % CI {interval.low:.2f}-"
                f"{interval.high:.2f}); the threshold flags at least "
                f"{target_sensitivity:.0%} of those lesions. It holds for series like these only.")
        card = replace(package.card, calibration=calibration, threshold=threshold,
                       limitations=(note, *(s for s in package.card.limitations if s != UNCALIBRATED)),
                       accuracy={**package.card.accuracy, "site_calibration": measured})
        (copy / CARD_FILE).write_text(json.dumps(card.to_dict(), indent=2) + "\n", encoding="utf-8")
        ModelPackage.load(copy)
        copy.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return card
