"""Train the detector on synthetic phantoms and write a model package.

    python -m screen.model.train --out engines/pancreas-phantom-v1 --seed 0

Everything is drawn from ``--seed``: the phantoms (rendered on the fly; ``--cache`` keeps
the cut ones to rerun faster), the patches and the network's initial weights. Runs on two
CPU cores in about 50 minutes, most of it the segmenter's 8000 steps. Steps:

1. render training and validation phantoms (in worker processes) and cut each into the
   locate network's whole-body input and a box around the true pancreas for the segmenter,
   windowed from the true gland's median HU on the locate grid (the detector measures it on
   the gland it finds, then on the parenchyma the segmenter marks);
2. train the locate network, then the segmenter, on random patches;
3. run the whole detector on the validation phantoms, fit the score's calibration and pick
   the operating threshold for >= 95 % sensitivity there;
4. write the package: model.json, model.onnx / locate.onnx, model.pt / locate.pt.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import multiprocessing
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from screen.detect.detector import FEATURES, Detector, analyse
from screen.detect.postprocess import position_along
from screen.detect.preprocess import (
    body_grid,
    box_grid,
    gland_hu,
    resample,
    resample_labels,
    sample,
)
from screen.metrics import auroc
from screen.model.calibrate import fit_platt, threshold_for_sensitivity
from screen.model.card import Calibration, ModelCard, NetworkCard, Postprocess
from screen.model.export import write_package
from screen.model.network import CLASSES, UNet3D, WithSoftmax
from screen.model.package import ModelPackage
from screen.model.phantoms import TRAIN_SETTINGS, draw_case
from screen.synth.phantom import ORGAN_LABELS

logger = logging.getLogger(__name__)

NAME = "pancreas-phantom-v1"
VERSION = "1.2.0"
LOCATE = NetworkCard(
    name="locate", onnx="locate.onnx", torch="locate.pt", widths=(6, 12, 24, 48),
    spacing_kji=(4.0, 4.0, 4.0), window_hu=(-160.0, 240.0), shape_multiple=8, crop="body",
)
SEGMENT = NetworkCard(
    name="segment", onnx="model.onnx", torch="model.pt", widths=(8, 16, 32, 64),
    spacing_kji=(1.5, 1.5, 1.5), window_hu=(-200.0, 200.0), shape_multiple=8, crop="pancreas",
    margin_mm=16.0, min_extent_mm=(48.0, 96.0, 96.0), max_extent_mm=(144.0, 192.0, 240.0),
    window_relative_to="gland",
)
TRAIN_CASES, VALIDATION_CASES = 160, 100
CONTINUE_LR = 1e-3  # peak learning rate when continuing a trained segmenter
LOCATE_PATCH = (32, 48, 48)
SEGMENT_PATCH = (32, 48, 48)
CLASS_WEIGHTS = (1.0, 1.0, 2.0)
BOX_JITTER_MM = 5.0  # how far the training boxes stray from the true pancreas, like the locator's
INTENDED_USE = (
    "Demonstration and testing of the screen pipeline: ranks abdominal CT series by the "
    "estimated probability of a focal pancreatic lesion. Trained on synthetic phantoms only. "
    "NOT for diagnostic use and not validated on patients."
)
LIMITATIONS = [
    "Trained and calibrated on synthetic phantoms only; its scores on real CT are not calibrated.",
    "Expects axial abdominal CT in HU with i towards patient left, j posterior, k superior.",
    (
        "Hypo-attenuating focal lesions only; cysts, calcifications, diffuse disease and "
        "iso-attenuating tumours were not modelled as such."
    ),
    "Lesions under 5 mm were not in the training data.",
]
TOLERANCE = {
    "score_abs": 1e-3,
    "meaning": "the torch and ONNX Runtime backends on the CPU give scores within this of each other",
}


@dataclass(frozen=True, slots=True)
class Item:
    """One phantom cut for training: network inputs and labels on each network's grid."""

    coarse_x: np.ndarray
    coarse_y: np.ndarray
    fine_x: np.ndarray
    fine_y: np.ndarray
    positions: np.ndarray  # position along the gland of sampled pancreas voxels
    parts: np.ndarray  # their part: 0 head, 1 body, 2 tail


# Organ codes of the gland's parts in the phantom's organ map, and their index here.
_PARTS = {code: index for index, name in enumerate(("head", "body", "tail"))
          for code, organ in ORGAN_LABELS.items() if organ == f"pancreas_{name}"}


# Cached cuts are only reused by the same way of cutting: the networks' grids and windows, the
# scan settings and the box jitter all shape them.
_CUT_VERSION = hashlib.sha256(json.dumps(
    [LOCATE.to_dict(), SEGMENT.to_dict(), asdict(TRAIN_SETTINGS), BOX_JITTER_MM], sort_keys=True,
).encode()).hexdigest()[:12]


def _prepare(seed: int, cache: Path | None = None) -> Item:
    """Cut one phantom for training; with ``cache``, reuse or keep the cut as a .npz there."""
    stored = cache / f"item-{_CUT_VERSION}-{seed}.npz" if cache is not None else None
    if stored is not None and stored.is_file():
        with np.load(stored) as data:
            return Item(**{name: data[name] for name in Item.__slots__})
    item = _cut(seed)
    if stored is not None:
        stored.parent.mkdir(parents=True, exist_ok=True)
        partial = stored.with_suffix(".tmp.npz")
        np.savez(partial, **{name: getattr(item, name) for name in Item.__slots__})
        partial.replace(stored)
    return item


def _cut(seed: int) -> Item:
    volume, phantom = draw_case(seed, TRAIN_SETTINGS)
    rng = np.random.default_rng(seed + 7)
    coarse = body_grid(volume, LOCATE)
    coarse_hu = resample(volume.hu, coarse)
    coarse_x = LOCATE.normalise(coarse_hu)
    coarse_y = resample_labels(phantom.labels, coarse)
    # The gland's HU as the detector measures it, on the true gland rather than the locate
    # network's; the intensity shift in _batch stands for the difference between the two.
    gland = gland_hu(coarse_hu, coarse_y > 0)
    voxels = np.argwhere(phantom.labels > 0)
    lo, hi = voxels.min(axis=0).astype(float), voxels.max(axis=0).astype(float)
    jitter = rng.normal(0.0, BOX_JITTER_MM, size=(2, 3)) / np.asarray(volume.spacing)
    fine = box_grid(volume, lo + jitter[0], hi + jitter[1], SEGMENT)
    fine_x = sample(volume, fine, SEGMENT, gland)[0, 0]
    fine_y = resample_labels(phantom.labels, fine)
    # Where head, body and tail lie along the gland, to set the location fractions.
    gland_lps = volume.to_lps(voxels)
    pick = rng.choice(len(voxels), size=min(400, len(voxels)), replace=False)
    codes = phantom.organs[tuple(voxels[pick].T)]
    keep = np.isin(codes, list(_PARTS))
    positions = position_along(gland_lps, gland_lps[pick][keep])
    parts = np.asarray([_PARTS[int(c)] for c in codes[keep]], dtype=np.int8)
    return Item(coarse_x, coarse_y, fine_x, fine_y, positions.astype(np.float32), parts)


def _render(seed: int):  # for validation: the whole scan, as the detector will see it
    return draw_case(seed, TRAIN_SETTINGS)


def _patch(x: np.ndarray, y: np.ndarray, shape: tuple[int, int, int], centre: np.ndarray | None,
           rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A patch of ``shape`` around ``centre`` (jittered), or anywhere; padded where too small."""
    pads = [(0, max(0, s - n)) for s, n in zip(shape, x.shape)]
    if any(p[1] for p in pads):
        x = np.pad(x, pads, constant_values=-1.0)
        y = np.pad(y, pads)
    start = []
    for axis, size in enumerate(shape):
        room = x.shape[axis] - size
        if centre is None:
            s = rng.integers(0, room + 1)
        else:
            s = round(centre[axis] - size / 2 + rng.normal(0, size / 6))
        start.append(int(np.clip(s, 0, room)))
    window = tuple(slice(s, s + n) for s, n in zip(start, shape))
    return x[window], y[window]


def _batch(items: Sequence[tuple[np.ndarray, np.ndarray]], rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = [], []
    for x, y in items:
        # Intensity and noise variety beyond the phantoms' own: contrast, offset (up to 10 HU,
        # about how far the gland's HU measured on the locate network's mask strays from the
        # true gland's), grain.
        x = x * rng.uniform(0.9, 1.1) + rng.uniform(-0.05, 0.05)
        x = x + rng.normal(0.0, rng.uniform(0.0, 0.05), x.shape)
        xs.append(x.astype(np.float32))
        ys.append(y.astype(np.int64))
    return torch.from_numpy(np.stack(xs)[:, None]), torch.from_numpy(np.stack(ys))


def _loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    ce = F.cross_entropy(logits, target, weight=torch.tensor(CLASS_WEIGHTS, device=logits.device))
    prob = torch.softmax(logits, dim=1)
    dice = []
    for p, t in ((prob[:, 1] + prob[:, 2], (target > 0).float()), (prob[:, 2], (target == 2).float())):
        inter = (p * t).sum()
        dice.append(1.0 - (2 * inter + 1.0) / (p.sum() + t.sum() + 1.0))
    return ce + 0.5 * sum(dice)


def _train(net: UNet3D, data: list[tuple[np.ndarray, np.ndarray]], patch: tuple[int, int, int],
           steps: int, rng: np.random.Generator, label: str, lesion_bias: float,
           max_lr: float = 3e-3) -> list[float]:
    opt = torch.optim.AdamW(net.parameters(), lr=max_lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=max_lr, total_steps=steps, pct_start=0.1)
    net.train()
    device = next(net.parameters()).device
    # Where each item's lesion and gland lie, found once rather than on every step.
    lesion_at = [np.argwhere(y == 2) for _, y in data]
    gland_at = [np.argwhere(y > 0) for _, y in data]
    history = []
    started = time.monotonic()
    for step in range(steps):
        chosen = []
        for _ in range(2):
            index = int(rng.integers(len(data)))
            x, y = data[index]
            centre = None
            r = rng.random()
            if r < lesion_bias and len(lesion_at[index]):
                centre = lesion_at[index][rng.integers(len(lesion_at[index]))]
            elif r < 0.85 and len(gland_at[index]):
                centre = gland_at[index][rng.integers(len(gland_at[index]))]
            chosen.append(_patch(x, y, patch, centre, rng))
        xb, yb = _batch(chosen, rng)
        xb, yb = xb.to(device), yb.to(device)
        loss = _loss(net(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        history.append(float(loss.detach()))
        if (step + 1) % 50 == 0:
            logger.info("%s step %d/%d loss %.4f (%.0f s)", label, step + 1, steps,
                        float(np.mean(history[-50:])), time.monotonic() - started)
    net.eval()
    return history


class _TorchRunner:
    """The in-memory networks as runners, for validating before anything is written."""

    def __init__(self, net: UNet3D):
        self._module = WithSoftmax(net).eval()
        self.name, self.precision, self.device = "torch", "fp32", "cpu"

    def run(self, x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return self._module(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).numpy()


def _location_fractions(items: Sequence[Item]) -> tuple[float, float]:
    t = np.concatenate([i.positions for i in items])
    part = np.concatenate([i.parts for i in items])
    grid = np.linspace(0.05, 0.95, 181)
    head = grid[int(np.argmax([np.mean((t < f) == (part == 0)) for f in grid]))]
    tail = grid[int(np.argmax([np.mean((t >= f) == (part == 2)) for f in grid]))]
    if not head < tail:
        head, tail = 1 / 3, 2 / 3
    return float(round(head, 3)), float(round(tail, 3))


def validation_seeds(seed: int, cases: int) -> list[int]:
    return [1_000_000 * (seed + 1) + 500_000 + i for i in range(cases)]


def calibrate_on_validation(detector: Detector, seeds: Sequence[int], workers: int = 2) -> tuple[Calibration, float, dict]:
    """Platt calibration of the detector's features on validation phantoms, the threshold for
    >= 95 % sensitivity there, and the validation numbers at that threshold."""
    rows, labels = [], []
    context = multiprocessing.get_context("spawn")
    with context.Pool(workers) as pool:
        for volume, phantom in pool.imap(_render, seeds):
            analysis = analyse(volume, detector)
            rows.append([analysis.features[f] for f in FEATURES])
            labels.append(int(phantom.lesion_diameter_mm is not None))
    x, y = np.asarray(rows), np.asarray(labels)
    coef, intercept = fit_platt(x, y)
    calibration = Calibration(FEATURES, tuple(float(c) for c in coef), intercept)
    scores = np.asarray([calibration.score(dict(zip(FEATURES, r))) for r in rows])
    threshold = threshold_for_sensitivity(scores, y, 0.95)
    validation = {
        "cases": len(y), "positives": int(y.sum()),
        "auroc": round(float(auroc(y, scores)), 4),
        "sensitivity_at_threshold": round(float(np.mean(scores[y == 1] >= threshold)), 4),
        "specificity_at_threshold": round(float(np.mean(scores[y == 0] < threshold)), 4),
    }
    logger.info("validation: %s", validation)
    return calibration, threshold, validation


def train(out: Path, seed: int = 0, train_cases: int = TRAIN_CASES, val_cases: int = VALIDATION_CASES,
          locate_steps: int = 1200, segment_steps: int = 8000, workers: int = 2,
          cache: Path | None = None, locate_from: Path | None = None, device: str = "cpu",
          segment_from: Path | None = None) -> ModelCard:
    started = time.monotonic()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    base = 1_000_000 * (seed + 1)
    train_seeds = [base + i for i in range(train_cases)]
    val_seeds = validation_seeds(seed, val_cases)
    context = multiprocessing.get_context("spawn")
    with context.Pool(workers) as pool:
        items = pool.map(partial(_prepare, cache=cache), train_seeds, chunksize=4)
    logger.info("prepared %d training phantoms in %.0f s", len(items), time.monotonic() - started)

    locate = UNet3D(LOCATE.widths)
    if locate_from is not None:
        # An earlier package's locate network that already finds the gland well: keep it and
        # train only the segmenter, which is most of the work.
        locate.load_state_dict(torch.load(locate_from / LOCATE.torch, weights_only=True))
        locate.eval()
        logger.info("kept the locate network of %s", locate_from)
    else:
        locate.to(device)
        _train(locate, [(i.coarse_x, i.coarse_y) for i in items], LOCATE_PATCH, locate_steps, rng,
               "locate", lesion_bias=0.0)
        locate.cpu()
    segment = UNet3D(SEGMENT.widths)
    if segment_from is not None:
        # Continue an earlier package's segmenter on other phantoms (another --seed), at a
        # lower learning rate: more training without starting over.
        segment.load_state_dict(torch.load(segment_from / SEGMENT.torch, weights_only=True))
        logger.info("continuing the segmenter of %s", segment_from)
    segment.to(device)
    _train(segment, [(i.fine_x, i.fine_y) for i in items], SEGMENT_PATCH, segment_steps, rng,
           "segment", lesion_bias=0.5, max_lr=CONTINUE_LR if segment_from is not None else 3e-3)
    segment.cpu()  # validation and export run on the CPU, as the package's users will
    fractions = _location_fractions(items)
    del items

    # Validation: the whole detector, uncalibrated, on phantoms it has not seen.
    provisional = _card(Calibration(FEATURES, (1.0, 0.0), 0.0), 0.5, Postprocess(location_fractions=fractions), {}, {})
    detector = Detector(provisional, {"locate": _TorchRunner(locate), "segment": _TorchRunner(segment)})
    calibration, threshold, validation = calibrate_on_validation(detector, val_seeds, workers)

    training = {
        "command": " ".join([
            f"python -m screen.model.train --out {out.as_posix()} --seed {seed}",
            *([f"--locate-from {locate_from.as_posix()}"] if locate_from is not None else []),
            *([f"--segment-from {segment_from.as_posix()} --segment-steps {segment_steps}"]
              if segment_from is not None else []),
            *([f"--device {device}"] if device != "cpu" else []),
        ]),
        "seed": seed, "data": "synthetic abdominal CT phantoms (screen.synth.phantom), rendered on the fly",
        "train_cases": train_cases, "validation_cases": val_cases,
        "train_settings": asdict(TRAIN_SETTINGS),
        "variety": "contrast phases (non-contrast, arterial, portal venous), noise 6-22 HU, slice "
                   "spacing 1.5-5 mm, body habitus, pancreas shapes (normal, atrophic, bulky, "
                   "lobulated), lesions 5-40 mm, attenuation 10-80 HU below the gland",
        "locate": ({"kept_from": locate_from.name} if locate_from is not None
                   else {"steps": locate_steps, "patch_kji": list(LOCATE_PATCH)}),
        "segment": {"steps": segment_steps, "patch_kji": list(SEGMENT_PATCH), "box_jitter_mm": BOX_JITTER_MM,
                    **({"continued_from": _earlier_training(segment_from)} if segment_from is not None else {})},
        "optimiser": "AdamW, one-cycle lr 3e-3, batch 2, cross-entropy (weights 1,1,2) + 0.5 soft Dice",
        "calibration": "Platt (ridge-penalised logistic) on the validation phantoms; threshold for >= 95 % sensitivity there",
        "wall_seconds": round(time.monotonic() - started),
        "device": _device_name(device), "torch": torch.__version__, "python": platform.python_version(),
    }
    card = _card(calibration, threshold, Postprocess(location_fractions=fractions), training,
                 {"validation": validation})
    write_package(out, {"locate": locate, "segment": segment}, card)
    logger.info("wrote %s in %.0f s", out, time.monotonic() - started)
    return card


def _device_name(device: str) -> str:
    if device.startswith("cuda"):
        return f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    return f"{device} ({torch.get_num_threads()} threads)"


def _earlier_training(package: Path) -> dict:
    """What the card of the package a segmenter was continued from says about its training."""
    card = ModelPackage.load(package).card
    return {"version": card.version, "training": dict(card.training)}


def _card(calibration: Calibration, threshold: float, post: Postprocess, training: dict, accuracy: dict) -> ModelCard:
    return ModelCard(
        name=NAME, version=VERSION, intended_use=INTENDED_USE, limitations=tuple(LIMITATIONS),
        classes=CLASSES, networks={"locate": LOCATE, "segment": SEGMENT}, calibration=calibration,
        threshold=threshold, postprocess=post, tolerance=TOLERANCE, training=training, accuracy=accuracy,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m screen.model.train", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="package folder to write")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-cases", type=int, default=TRAIN_CASES)
    parser.add_argument("--val-cases", type=int, default=VALIDATION_CASES)
    parser.add_argument("--locate-steps", type=int, default=1200)
    parser.add_argument("--segment-steps", type=int, default=8000)
    parser.add_argument("--cache", type=Path, default=None,
                        help="keep the cut training phantoms here (a temporary folder) to rerun faster")
    parser.add_argument("--locate-from", type=Path, default=None,
                        help="package whose locate network to keep (then only the segmenter is trained)")
    parser.add_argument("--segment-from", type=Path, default=None,
                        help="package whose segmenter to continue training (use another --seed)")
    parser.add_argument("--device", default="cpu", help="torch device the networks train on (cuda on a GPU)")
    parser.add_argument("--workers", type=int, default=2, help="processes rendering phantoms")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    torch.set_num_threads(args.threads)
    train(args.out, args.seed, args.train_cases, args.val_cases, args.locate_steps,
          args.segment_steps, args.workers, args.cache, args.locate_from, args.device, args.segment_from)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
