"""Measure a model package the way its card reports it, and write the numbers into the card.

    python -m screen.training.evaluate_package engines/pancreas-phantom-v1 --cases 200 --seed 8 --seed 10

Held-out phantoms are drawn from other seeds and other scan settings than training (other
slice spacings, finer pixels, a larger matrix, extra noise); each ``--seed`` adds a set of
``--cases`` of them, and the sets are reported together. Reported: AUROC with a bootstrap
95 % interval, sensitivity and specificity at the card's threshold, lesion localisation
among positives, each by lesion size, location and contrast phase, and by whether the lesion
can be told from normal gland at all (its conspicuity); and, when the real CT of
the shared test data is at hand, what the detector makes of it (pancreas found, centroid
distance, Dice).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from screen.detect.detector import Detector, analyse
from screen.detect.preprocess import to_volume_labels
from screen.metrics import (
    SizeBin,
    UndefinedMetric,
    auroc,
    bootstrap_ci,
    confusion_at,
    is_flagged,
    localisation_hit,
    size_bin,
    wilson_interval,
)
from screen.model.package import ModelPackage, find_package
from screen.records import Volume
from screen.synth.cases import (
    HELD_OUT_SETTINGS,
    draw_case,
    held_out_seeds,
    lesion_conspicuity,
    render_pool,
)

logger = logging.getLogger(__name__)

REAL_CT = Path("real-ct") / "totalsegmentator"


@dataclass(frozen=True, slots=True)
class CaseResult:
    seed: int
    positive: bool
    score: float
    diameter_mm: float | None
    location: str | None
    hit: bool | None  # positives only
    pancreas_found: bool
    predicted_location: str | None
    seconds: float
    phase: str = ""
    conspicuity: float | None = None  # positives: see lesion_conspicuity


# Under this conspicuity a lesion is hardly told from normal gland even where it is known to be.
CONSPICUOUS = 3.0


def _render(seed: int):
    volume, phantom = draw_case(seed, HELD_OUT_SETTINGS)
    return seed, volume, phantom, lesion_conspicuity(phantom)


def evaluate_phantoms(detector: Detector, seeds: Sequence[int], workers: int = 2) -> list[CaseResult]:
    results = []
    with render_pool(workers) as pool:
        for seed, volume, phantom, conspicuity in pool.imap(_render, seeds):
            started = time.perf_counter()
            d = analyse(volume, detector).detection
            positive = phantom.lesion_diameter_mm is not None
            hit = None
            if positive:
                hit = localisation_hit(d.lesion_center_lps, phantom.lesion_center_lps, phantom.lesion_diameter_mm)
            results.append(CaseResult(
                seed, positive, d.score, phantom.lesion_diameter_mm,
                phantom.lesion_location.value if phantom.lesion_location else None, hit,
                d.pancreas_found, d.lesion_location.value if d.lesion_location else None,
                time.perf_counter() - started, phantom.spec.phase.value, conspicuity,
            ))
            logger.info("case %d: lesion %s score %.3f hit %s phase %s conspicuity %s", seed, positive,
                        d.score, hit, phantom.spec.phase.value,
                        "-" if conspicuity is None else f"{conspicuity:.1f}")
    return results


def _rate(hits: list[bool]) -> dict[str, object] | None:
    if not hits:
        return None
    return {"n": len(hits), **wilson_interval(int(sum(hits)), len(hits)).to_dict()}


def _auroc(results: Sequence[CaseResult]) -> dict[str, object] | str:
    y = np.asarray([r.positive for r in results])
    s = np.asarray([r.score for r in results])
    try:
        return bootstrap_ci(auroc, y, s, replicates=1000, seed=0).to_dict()
    except UndefinedMetric as exc:
        return f"undefined: {exc}"


def summarise(results: Sequence[CaseResult], threshold: float) -> dict[str, object]:
    y = np.asarray([r.positive for r in results])
    s = np.asarray([r.score for r in results])
    summary: dict[str, object] = {"cases": len(results), "positives": int(y.sum())}
    summary["auroc"] = _auroc(results)
    summary["at_threshold"] = {"threshold": threshold, **confusion_at(y, s, threshold).to_dict()}
    positives = [r for r in results if r.positive]
    summary["localisation"] = _rate([bool(r.hit) for r in positives])
    by_size: dict[str, object] = {}
    for stratum in SizeBin:
        group = [r for r in positives if size_bin(r.diameter_mm) is stratum]
        by_size[f"{stratum.value} mm"] = {
            "localisation": _rate([bool(r.hit) for r in group]),
            "sensitivity": _rate([is_flagged(r.score, threshold) for r in group]),
        }
    summary["by_size"] = by_size
    by_location: dict[str, object] = {}
    for name in ("head", "body", "tail"):
        group = [r for r in positives if r.location == name]
        by_location[name] = {
            "localisation": _rate([bool(r.hit) for r in group]),
            "sensitivity": _rate([is_flagged(r.score, threshold) for r in group]),
            "location_agreement": _rate([r.predicted_location == name for r in group if r.hit]),
        }
    summary["by_location"] = by_location
    # The lesion's contrast differs by phase: unenhanced, a tumour is barely darker than the gland.
    by_phase: dict[str, object] = {}
    for name in sorted({r.phase for r in results if r.phase}):
        group = [r for r in results if r.phase == name]
        by_phase[name] = {
            "cases": len(group), "positives": sum(r.positive for r in group), "auroc": _auroc(group),
            "sensitivity": _rate([is_flagged(r.score, threshold) for r in group if r.positive]),
            "specificity": _rate([not is_flagged(r.score, threshold)
                                  for r in group if not r.positive]),
        }
    summary["by_phase"] = by_phase
    # Lesions an observer told their position could hardly tell from normal gland, apart: how much
    # of the shortfall is the phantoms' and how much the detector's. Each group's positives are
    # ranked against all the negatives.
    negatives = [r for r in results if not r.positive]
    by_conspicuity: dict[str, object] = {}
    for name, conspicuous in ((f"visible (conspicuity >= {CONSPICUOUS:g})", True),
                              (f"not visible (conspicuity < {CONSPICUOUS:g})", False)):
        group = [r for r in positives if _conspicuous(r) == conspicuous]
        by_conspicuity[name] = {
            "positives": len(group), "auroc_against_all_negatives": _auroc([*group, *negatives]),
            "sensitivity": _rate([is_flagged(r.score, threshold) for r in group]),
            "localisation": _rate([bool(r.hit) for r in group]),
            "diameter_mm_median": round(float(np.median([r.diameter_mm for r in group])), 1) if group else None,
        }
    summary["by_conspicuity"] = by_conspicuity
    summary["pancreas_found"] = _rate([r.pancreas_found for r in results])
    summary["seconds_per_case"] = round(float(np.mean([r.seconds for r in results])), 2)
    return summary


def _conspicuous(result: CaseResult) -> bool:
    # None: not even the lesion's central 5 mm could be moved about the gland (a very small
    # gland). Counted as visible, so that setting lesions apart never flatters the detector.
    return result.conspicuity is None or result.conspicuity >= CONSPICUOUS


def nifti_volume(path: Path) -> Volume:
    """A NIfTI (RAS) image as a Volume (LPS): flip the first two rows of the affine, then turn
    the axes so that i, j, k run towards left, posterior and superior as the loader does."""
    import nibabel as nib

    image = nib.load(str(path))
    data = np.asarray(image.dataobj, dtype=np.float32)  # (i, j, k)
    affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ image.affine
    # Order the array axes as x, y, z by the patient axis each one mostly runs along.
    order = np.argsort(np.argmax(np.abs(affine[:3, :3]), axis=0))
    data = np.transpose(data, order)
    affine[:, :3] = affine[:, :3][:, order]
    for axis in range(3):
        column = affine[:3, axis]
        target = int(np.argmax(np.abs(column)))
        if column[target] < 0:  # run this axis the other way, keeping the same voxel positions
            data = np.flip(data, axis=axis)
            affine[:3, 3] += column * (data.shape[axis] - 1)
            affine[:3, axis] = -column
    hu = np.ascontiguousarray(np.transpose(data, (2, 1, 0)))
    return Volume(hu=hu, affine=affine, slice_uids=tuple(f"nifti.{k}" for k in range(hu.shape[0])))


def evaluate_real_ct(detector: Detector, data_root: Path) -> dict[str, object]:
    ct, mask_path = data_root / REAL_CT / "example_ct.nii.gz", data_root / REAL_CT / "example_ct_pancreas_v1.nii.gz"
    if not ct.is_file() or not mask_path.is_file():
        return {"skipped": f"{ct} or its mask is not at hand"}
    volume, truth = nifti_volume(ct), nifti_volume(mask_path).hu > 0.5
    analysis = analyse(volume, detector)
    d = analysis.detection
    result: dict[str, object] = {
        "file": "TotalSegmentator example_ct.nii.gz (3 mm, non-contrast), mask example_ct_pancreas_v1",
        "pancreas_found": d.pancreas_found, "pancreas_volume_ml": round(d.pancreas_volume_ml, 1),
        "truth_volume_ml": round(float(truth.sum()) * float(np.prod(volume.spacing)) / 1000, 1),
        "score": round(d.score, 4), "lesion_reported": d.lesion_center_lps is not None,
    }
    if analysis.pancreas_mask is not None and analysis.segment_grid is not None:
        predicted = to_volume_labels(analysis.pancreas_mask.astype(np.uint8), analysis.segment_grid, volume.hu.shape) > 0
        inter = float((predicted & truth).sum())
        result["dice"] = round(2 * inter / max(1.0, float(predicted.sum() + truth.sum())), 4)
        if predicted.any():
            dist = volume.to_lps(np.argwhere(predicted).mean(0)) - volume.to_lps(np.argwhere(truth).mean(0))
            result["centroid_distance_mm"] = round(float(np.linalg.norm(dist)), 1)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m screen.training.evaluate_package", description=__doc__.split("\n")[0])
    parser.add_argument("package", help="package folder or name")
    parser.add_argument("--cases", type=int, default=200, help="phantoms per --seed")
    parser.add_argument("--seed", type=int, action="append",
                        help="a held-out set of --cases phantoms (training uses other seeds); give it "
                             "again for more sets, reported together (default: 8)")
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[3] / "shared" / "data",
                        help="the shared test data folder, for the real CT check")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--backend", default="onnxruntime")
    parser.add_argument("--write", action="store_true", help="write the numbers into the card")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    given = args.seed or [8]
    twice = sorted({s for s in given if given.count(s) > 1})
    if twice:
        parser.error(f"--seed {twice[0]} is given more than once: each held-out set counts once")
    try:
        sets = {seed: held_out_seeds(seed, args.cases) for seed in given}
    except ValueError as exc:
        parser.error(str(exc))
    package = find_package(args.package)
    detector = Detector.open(package, backend=args.backend)
    seeds = [s for drawn in sets.values() for s in drawn]
    results = evaluate_phantoms(detector, seeds, args.workers)
    held_out = summarise(results, package.card.threshold)
    held_out["settings"] = {
        "seeds": [f"{drawn[0]}..{drawn[-1]}" for drawn in sets.values() if drawn],
        "backend": detector.backend,
        "slice_mm": list(HELD_OUT_SETTINGS.slice_mm), "pixel_mm": list(HELD_OUT_SETTINGS.pixel_mm),
        "matrix": HELD_OUT_SETTINGS.matrix, "extra_noise_hu": list(HELD_OUT_SETTINGS.extra_noise_hu),
        "command": f"python -m screen.training.evaluate_package {package.path.name} --cases {args.cases} "
                   + " ".join(f"--seed {s}" for s in sets),
    }
    real = evaluate_real_ct(detector, args.data)
    report = {"held_out_phantoms": held_out, "real_ct": real}
    sys.stdout.write(json.dumps(report, indent=2) + "\n")
    if args.write:
        card_path = package.path / "model.json"
        card = json.loads(card_path.read_text(encoding="utf-8"))
        card.setdefault("accuracy", {}).update(report)
        card_path.write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
        ModelPackage.load(package.path)  # the card must still read
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
