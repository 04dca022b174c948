"""Refit a package's score calibration and threshold on the training validation phantoms.

    python -m screen.training.recalibrate engines/pancreas-phantom-v1 --seed 0

The same validation phantoms, features and fit as ``screen.training.train`` (seed ``--seed``), run
through the package's ONNX networks; the card's calibration, threshold and validation numbers
are replaced. Use it when the detector's features or post-processing change and the weights
do not.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import replace

from screen.detect.detector import Detector
from screen.model.package import ModelPackage, find_package

logger = logging.getLogger(__name__)


def main(argv: Sequence[str] | None = None) -> int:
    from screen.synth.cases import validation_seeds
    from screen.training.recipe import VALIDATION_CASES
    from screen.training.validation import calibrate_on_validation

    parser = argparse.ArgumentParser(prog="python -m screen.training.recalibrate", description=__doc__.split("\n")[0])
    parser.add_argument("package")
    parser.add_argument("--seed", type=int, default=0, help="the training seed, which fixes the validation phantoms")
    parser.add_argument("--val-cases", type=int, default=VALIDATION_CASES)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    package = find_package(args.package)
    detector = Detector.open(package, backend="onnxruntime")
    calibration, threshold, validation = calibrate_on_validation(
        detector, validation_seeds(args.seed, args.val_cases), args.workers)
    card = replace(package.card, calibration=calibration, threshold=threshold,
                   accuracy={**package.card.accuracy, "validation": validation})
    (package.path / "model.json").write_text(json.dumps(card.to_dict(), indent=2) + "\n", encoding="utf-8")
    ModelPackage.load(package.path)
    sys.stdout.write(json.dumps(validation) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
