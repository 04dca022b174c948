"""Train the detector on synthetic phantoms and write a model package.

    python -m screen.model.train --out engines/pancreas-phantom-v1 --seed 0

Everything is drawn from ``--seed``: the phantoms (rendered on the fly; ``--cache`` keeps
the cut ones to rerun faster), the patches and the networks' initial weights. Steps:

1. render training and validation phantoms (in worker processes) and cut each into the
   locate network's whole-body input and a box around the true pancreas for the segmenter,
   windowed from the true gland's median HU on the locate grid (the detector measures it on
   the gland it finds, then on the parenchyma the segmenter marks);
2. train the locate network, then the segmenter, on random patches. When the locate network
   is kept from an earlier package, the segmenter starts at once and the training phantoms
   join its training set as they are rendered, on a fixed schedule, so rendering and training
   overlap and the result does not depend on how fast either runs;
3. with several ``--segment-widths``, train one segmenter of each width side by side on the
   same patches;
4. run the whole detector on the validation phantoms with each segmenter, fit the score's
   calibration and pick the operating threshold for >= 95 % sensitivity there; keep the
   segmenter with the highest validation AUROC;
5. write the package: model.json, model.onnx / locate.onnx, model.pt / locate.pt.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import platform
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from functools import partial
from multiprocessing.pool import Pool
from pathlib import Path
from typing import TypeVar

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
from screen.model.export import save_weights, write_package
from screen.model.network import CLASSES, UNet3D, WithSoftmax
from screen.model.package import ModelPackage
from screen.model.phantoms import (
    TRAIN_SETTINGS,
    draw_case,
    render_pool,
    training_seeds,
    validation_seeds,
)
from screen.records import Volume
from screen.synth.phantom import ORGAN_LABELS

logger = logging.getLogger(__name__)
T = TypeVar("T")

NAME = "pancreas-phantom-v1"
VERSION = "1.3.0"
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
LOCATE_STEPS, SEGMENT_STEPS, BATCH = 1200, 8000, 2  # the defaults; the card's command names others
ARRIVAL_SHARE = 0.8  # the training phantoms have all joined the segmenter's set by this share of its steps
INTENDED_USE = (
    "Demonstration and testing of the screen pipeline: ranks abdominal CT series by the "
    "estimated probability of a focal pancreatic lesion. Trained on synthetic phantoms only. "
    "NOT for diagnostic use and not validated on patients."
)
LIMITATIONS = [
    (
        "Trained and calibrated on synthetic phantoms only: its accuracy figures come from "
        "phantoms of its own generator only and do not carry over to other phantoms, let alone "
        "to patients; its scores on real CT are not calibrated."
    ),
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


def _prepare(seed: int, cache: Path | None = None, coarse: bool = True) -> Item:
    """Cut one phantom for training; with ``cache``, reuse or keep the cut as a .npz there.
    Without ``coarse`` (the locate network is kept, not trained) its coarse arrays are left
    empty, which halves what a large training set holds in memory."""
    stored = cache / f"item-{_CUT_VERSION}-{seed}.npz" if cache is not None else None
    if stored is not None and stored.is_file():
        with np.load(stored) as data:
            item = Item(**{name: data[name] for name in Item.__slots__})
    else:
        item = _cut(seed)
        if stored is not None:
            stored.parent.mkdir(parents=True, exist_ok=True)
            partial = stored.with_suffix(".tmp.npz")
            np.savez(partial, **{name: getattr(item, name) for name in Item.__slots__})
            partial.replace(stored)
    if not coarse:
        item = replace(item, coarse_x=np.empty(0, np.float32), coarse_y=np.empty(0, np.uint8))
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


def _validation_case(seed: int) -> tuple[Volume, bool]:
    """A validation phantom: the whole scan, as the detector will see it, and whether it holds
    a lesion (the labels stay in the worker: they are not needed and would double the memory)."""
    volume, phantom = draw_case(seed, TRAIN_SETTINGS)
    return volume, phantom.lesion_diameter_mm is not None


def _in_order(pool: Pool, work: Callable[[int], T], seeds: Sequence[int], ahead: int) -> Iterator[T]:
    """``work`` of each seed, done in ``pool`` and handed back in seed order, with at most
    ``ahead`` of them submitted and not yet taken. The first ``ahead`` are submitted at once,
    so work asked for now starts as soon as the pool is free of what was queued before it."""
    pending = deque(pool.apply_async(work, (s,)) for s in seeds[:ahead])

    def results() -> Iterator[T]:
        for s in seeds[ahead:]:
            result = pending.popleft().get()
            pending.append(pool.apply_async(work, (s,)))
            yield result
        while pending:
            yield pending.popleft().get()

    return results()


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


class _TrainingSet:
    """The items patches are drawn from, joining on a schedule: the first ``first`` at once, the
    rest evenly until ``ARRIVAL_SHARE`` of the ``steps`` have run. ``arrive`` waits for the
    renderers when an item is due and not yet cut, so the schedule, not the speed of the
    machine, decides what each step sees."""

    def __init__(self, items: Iterator[Item], total: int, first: int, steps: int,
                 pair: Callable[[Item], tuple[np.ndarray, np.ndarray]]):
        self.items: list[Item] = []
        self._source, self._total, self._first, self._steps = items, total, min(first, total), steps
        self._pair = pair
        self._inputs: list[tuple[np.ndarray, np.ndarray]] = []
        self._lesion_at: list[np.ndarray] = []  # found once rather than on every step
        self._gland_at: list[np.ndarray] = []

    def arrive(self, step: int) -> None:
        spread = max(1.0, ARRIVAL_SHARE * self._steps)
        due = min(self._total, self._first + math.ceil((self._total - self._first) * step / spread))
        while len(self.items) < due:
            item = next(self._source)
            x, y = self._pair(item)
            self.items.append(item)
            self._inputs.append((x, y))
            self._lesion_at.append(np.argwhere(y == 2))
            self._gland_at.append(np.argwhere(y > 0))

    def draw(self, patch: tuple[int, int, int], lesion_bias: float,
             rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """A patch around a lesion (``lesion_bias`` of the time, where there is one), around the
        gland (up to 85 %), or anywhere."""
        index = int(rng.integers(len(self._inputs)))
        x, y = self._inputs[index]
        centre = None
        r = rng.random()
        if r < lesion_bias and len(self._lesion_at[index]):
            centre = self._lesion_at[index][rng.integers(len(self._lesion_at[index]))]
        elif r < 0.85 and len(self._gland_at[index]):
            centre = self._gland_at[index][rng.integers(len(self._gland_at[index]))]
        return _patch(x, y, patch, centre, rng)


def _batch(patches: Sequence[tuple[np.ndarray, np.ndarray]], rng: np.random.Generator,
           noise: torch.Generator, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Patches as a batch on ``device``, with intensity and noise variety beyond the phantoms'
    own: contrast, offset (up to 10 HU, about how far the gland's HU measured on the locate
    network's mask strays from the true gland's) and grain, drawn on the device."""
    def moved(a: np.ndarray) -> torch.Tensor:
        # From pinned memory the copy does not wait for the GPU, so the next batch is drawn
        # while this step still runs.
        t = torch.from_numpy(a)
        return t.pin_memory().to(device, non_blocking=True) if device.type == "cuda" else t

    x = moved(np.stack([p[0] for p in patches]).astype(np.float32)[:, None])
    y = moved(np.stack([p[1] for p in patches]).astype(np.int64))
    n = len(patches)

    def each(low: float, high: float) -> torch.Tensor:
        return moved(rng.uniform(low, high, n).astype(np.float32)).view(n, 1, 1, 1, 1)

    scale, offset, grain = each(0.9, 1.1), each(-0.05, 0.05), each(0.0, 0.05)
    x = x * scale + offset + grain * torch.randn(x.shape, generator=noise, device=device)
    return x, y


def _loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    ce = F.cross_entropy(logits, target, weight=torch.tensor(CLASS_WEIGHTS, device=logits.device))
    prob = torch.softmax(logits, dim=1)
    dice = []
    for p, t in ((prob[:, 1] + prob[:, 2], (target > 0).float()), (prob[:, 2], (target == 2).float())):
        inter = (p * t).sum()
        dice.append(1.0 - (2 * inter + 1.0) / (p.sum() + t.sum() + 1.0))
    return ce + 0.5 * sum(dice)


def _train(nets: Sequence[UNet3D], data: _TrainingSet, patch: tuple[int, int, int], steps: int,
           rng: np.random.Generator, label: str, lesion_bias: float, max_lr: float = 3e-3,
           batch: int = BATCH) -> None:
    """Train each of ``nets`` for ``steps`` one-cycle steps, all on the same batches."""
    device = next(nets[0].parameters()).device
    noise = torch.Generator(device=device)
    noise.manual_seed(int(rng.integers(2**62)))
    optimisers = [torch.optim.AdamW(net.parameters(), lr=max_lr, weight_decay=1e-4) for net in nets]
    schedules = [torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=max_lr, total_steps=steps, pct_start=0.1)
                 for opt in optimisers]
    for net in nets:
        net.train()
    # Summed on the device and read every 50 steps: reading a loss waits for the GPU.
    running = torch.zeros(len(nets), device=device)
    started = time.monotonic()
    for step in range(steps):
        data.arrive(step)
        xb, yb = _batch([data.draw(patch, lesion_bias, rng) for _ in range(batch)], rng, noise, device)
        for i, (net, opt, schedule) in enumerate(zip(nets, optimisers, schedules)):
            loss = _loss(net(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            schedule.step()
            running[i] += loss.detach()
        if (step + 1) % 50 == 0:
            losses = ", ".join(f"{v / 50:.4f}" for v in running.tolist())
            logger.info("%s step %d/%d on %d phantoms, loss %s (%.0f s)", label, step + 1, steps,
                        len(data.items), losses, time.monotonic() - started)
            running.zero_()
    for net in nets:
        net.eval()


class _TorchRunner:
    """The in-memory networks as runners, for validating before anything is written."""

    def __init__(self, net: UNet3D):
        self._module = WithSoftmax(net).eval()
        self._device = next(net.parameters()).device
        self.name, self.precision, self.device = "torch", "fp32", str(self._device)

    def run(self, x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(self._device)
            return self._module(x).cpu().numpy()


def _location_fractions(items: Sequence[Item]) -> tuple[float, float]:
    t = np.concatenate([i.positions for i in items])
    part = np.concatenate([i.parts for i in items])
    grid = np.linspace(0.05, 0.95, 181)
    head = grid[int(np.argmax([np.mean((t < f) == (part == 0)) for f in grid]))]
    tail = grid[int(np.argmax([np.mean((t >= f) == (part == 2)) for f in grid]))]
    if not head < tail:
        head, tail = 1 / 3, 2 / 3
    return float(round(head, 3)), float(round(tail, 3))


def calibrate_on_validation(detector: Detector, seeds: Sequence[int], workers: int = 2) -> tuple[Calibration, float, dict]:
    """Platt calibration of the detector's features on validation phantoms, the threshold for
    >= 95 % sensitivity there, and the validation numbers at that threshold."""
    with render_pool(workers) as pool:
        return _validate({"": detector}, _in_order(pool, _validation_case, seeds, 2 * workers))[""]


def _validate(detectors: Mapping[str, Detector], cases: Iterable[tuple[Volume, bool]]) -> dict[str, tuple[Calibration, float, dict]]:
    """:func:`calibrate_on_validation` for each detector, on the same rendered phantoms."""
    rows: dict[str, list[list[float]]] = {name: [] for name in detectors}
    labels = []
    for volume, positive in cases:
        for name, detector in detectors.items():
            rows[name].append([analyse(volume, detector).features[f] for f in FEATURES])
        labels.append(int(positive))
        if len(labels) % 25 == 0:
            logger.info("validated on %d phantoms", len(labels))
    y = np.asarray(labels)
    results = {}
    for name, r in rows.items():
        results[name] = _calibrate(np.asarray(r), y)
        logger.info("validation%s: %s", f" of {name}" if name else "", results[name][2])
    return results


def _calibrate(x: np.ndarray, y: np.ndarray) -> tuple[Calibration, float, dict]:
    coef, intercept = fit_platt(x, y)
    calibration = Calibration(FEATURES, tuple(float(c) for c in coef), intercept)
    scores = np.asarray([calibration.score(dict(zip(FEATURES, r))) for r in x])
    threshold = threshold_for_sensitivity(scores, y, 0.95)
    validation = {
        "cases": len(y), "positives": int(y.sum()),
        "auroc": round(float(auroc(y, scores)), 4),
        "sensitivity_at_threshold": round(float(np.mean(scores[y == 1] >= threshold)), 4),
        "specificity_at_threshold": round(float(np.mean(scores[y == 0] < threshold)), 4),
    }
    return calibration, threshold, validation


def train(out: Path, seed: int = 0, train_cases: int = TRAIN_CASES, val_cases: int = VALIDATION_CASES,
          locate_steps: int = LOCATE_STEPS, segment_steps: int = SEGMENT_STEPS, workers: int = 2,
          cache: Path | None = None, locate_from: Path | None = None, device: str = "cpu",
          segment_from: Path | None = None, segment_widths: Sequence[Sequence[int]] | None = None,
          batch: int = BATCH, checkpoint: Path | None = None) -> ModelCard:
    """Train, validate and write a package (see the module's docstring). ``segment_widths``
    defaults to those of the segmenter continued, else to SEGMENT's; ``checkpoint`` is a folder
    to keep each trained segmenter's weights in before validation starts."""
    started = time.monotonic()
    continued = ModelPackage.load(segment_from).card.segment.widths if segment_from is not None else None
    widths = [tuple(int(w) for w in ws) for ws in segment_widths or [continued or SEGMENT.widths]]
    if continued is not None and widths != [continued]:
        raise ValueError(f"continuing the segmenter of {segment_from} means its widths {continued}, "
                         f"not {widths}")
    if min(locate_steps, segment_steps, batch) < 1:
        raise ValueError(f"steps and batch must be at least 1: locate {locate_steps}, segment "
                         f"{segment_steps}, batch {batch}")
    if not widths or len(set(widths)) != len(widths):
        raise ValueError(f"segment widths must be given, each once: {widths}")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    train_seeds = training_seeds(seed, train_cases)
    val_seeds = validation_seeds(seed, val_cases)
    where = torch.device(device)
    with render_pool(workers) as pool:
        # Validation phantoms queue behind the training ones, a few at a time: they are ready
        # when training ends, without holding all of them in memory meanwhile.
        cut = partial(_prepare, cache=cache, coarse=locate_from is None)
        items = _in_order(pool, cut, train_seeds, len(train_seeds))
        val_cases_in_order = _in_order(pool, _validation_case, val_seeds, 2 * workers)

        locate = UNet3D(LOCATE.widths)
        if locate_from is not None:
            # An earlier package's locate network that already finds the gland well: keep it
            # and train only the segmenter, which is most of the work.
            locate.load_state_dict(torch.load(locate_from / LOCATE.torch, weights_only=True))
            logger.info("kept the locate network of %s", locate_from)
            first = 2 * workers
        else:
            coarse = _TrainingSet(items, train_cases, train_cases, 1, lambda i: (i.coarse_x, i.coarse_y))
            coarse.arrive(0)
            logger.info("prepared %d training phantoms in %.0f s", train_cases, time.monotonic() - started)
            locate.to(where)
            _train([locate], coarse, LOCATE_PATCH, locate_steps, rng, "locate", lesion_bias=0.0)
            items, first = iter(coarse.items), train_cases
            del coarse
        locate.to(where).eval()

        segmenters = [UNet3D(w) for w in widths]
        if segment_from is not None:
            # Continue an earlier package's segmenter on other phantoms (another --seed), at a
            # lower learning rate: more training without starting over.
            segmenters[0].load_state_dict(torch.load(segment_from / SEGMENT.torch, weights_only=True))
            logger.info("continuing the segmenter of %s", segment_from)
        for net in segmenters:
            net.to(where)
        data = _TrainingSet(items, train_cases, first, segment_steps, lambda i: (i.fine_x, i.fine_y))
        # Fixed patch shapes while training: let cuDNN pick its fastest kernels for them.
        torch.backends.cudnn.benchmark = where.type == "cuda"
        _train(segmenters, data, SEGMENT_PATCH, segment_steps, rng, "segment", lesion_bias=0.5,
               max_lr=CONTINUE_LR if segment_from is not None else 3e-3, batch=batch)
        torch.backends.cudnn.benchmark = False  # validation boxes all differ in shape
        data.arrive(segment_steps)
        fractions = _location_fractions(data.items)
        del data, items
        if checkpoint is not None:
            checkpoint.mkdir(parents=True, exist_ok=True)
            for w, net in zip(widths, segmenters):
                save_weights(net, checkpoint / f"segment-{'-'.join(map(str, w))}.pt")

        # Validation: the whole detector with each segmenter, uncalibrated, on phantoms it has
        # not seen; on the device it trained on, which agrees with the CPU within the tolerance.
        post = Postprocess(location_fractions=fractions)
        detectors = {
            w: Detector(_card(Calibration(FEATURES, (1.0, 0.0), 0.0), 0.5, post, {}, {}, replace(SEGMENT, widths=w)),
                        {"locate": _TorchRunner(locate), "segment": _TorchRunner(net)})
            for w, net in zip(widths, segmenters)
        }
        validated = _validate(detectors, val_cases_in_order)
    chosen = max(widths, key=lambda w: validated[w][2]["auroc"])  # the first of equals
    calibration, threshold, validation = validated[chosen]
    segment = segmenters[widths.index(chosen)]

    training = {
        "command": _command(out, seed, train_cases, val_cases, locate_steps, segment_steps, locate_from, segment_from,
                            widths, batch, device),
        "seed": seed, "data": "synthetic abdominal CT phantoms (screen.synth.phantom), rendered on the fly",
        "train_cases": train_cases, "validation_cases": val_cases,
        "train_settings": asdict(TRAIN_SETTINGS),
        "variety": "contrast phases (non-contrast, arterial, portal venous), noise 6-22 HU, slice "
                   "spacing 1.5-5 mm, body habitus, pancreas shapes (normal, atrophic, bulky, "
                   "lobulated), lesions 5-40 mm, attenuation 10-80 HU below the gland",
        "locate": ({"kept_from": locate_from.name} if locate_from is not None
                   else {"steps": locate_steps, "patch_kji": list(LOCATE_PATCH)}),
        "segment": {"steps": segment_steps, "batch": batch, "patch_kji": list(SEGMENT_PATCH),
                    "box_jitter_mm": BOX_JITTER_MM,
                    **({"continued_from": _earlier_training(segment_from)} if segment_from is not None else {})},
        **({"candidates": [{"widths": list(w), "validation_auroc": validated[w][2]["auroc"]} for w in widths],
            "chosen_widths": list(chosen)} if len(widths) > 1 else {}),
        "optimiser": f"AdamW, one-cycle lr {CONTINUE_LR if segment_from is not None else 3e-3:g}, "
                     f"batch {batch}, cross-entropy (weights 1,1,2) + 0.5 soft Dice",
        "calibration": "Platt (ridge-penalised logistic) on the validation phantoms; threshold for >= 95 % "
                       "sensitivity there" + ("; the segmenter with the highest validation AUROC kept"
                                              if len(widths) > 1 else ""),
        "wall_seconds": round(time.monotonic() - started),
        "device": _device_name(device), "torch": torch.__version__, "python": platform.python_version(),
    }
    card = _card(calibration, threshold, post, training, {"validation": validation}, replace(SEGMENT, widths=chosen))
    write_package(out, {"locate": locate.cpu(), "segment": segment.cpu()}, card)
    logger.info("wrote %s in %.0f s", out, time.monotonic() - started)
    return card


def _command(out: Path, seed: int, train_cases: int, val_cases: int, locate_steps: int, segment_steps: int,
             locate_from: Path | None, segment_from: Path | None, widths: Sequence[tuple[int, ...]],
             batch: int, device: str) -> str:
    """The command that trains this package again: the options that differ from the defaults."""
    words = [f"python -m screen.model.train --out {out.as_posix()} --seed {seed}"]
    if train_cases != TRAIN_CASES:
        words.append(f"--train-cases {train_cases}")
    if val_cases != VALIDATION_CASES:
        words.append(f"--val-cases {val_cases}")
    if locate_from is not None:
        words.append(f"--locate-from {locate_from.as_posix()}")
    elif locate_steps != LOCATE_STEPS:
        words.append(f"--locate-steps {locate_steps}")
    if segment_from is not None:
        words.append(f"--segment-from {segment_from.as_posix()}")
    if segment_steps != SEGMENT_STEPS or segment_from is not None:
        words.append(f"--segment-steps {segment_steps}")
    if widths != [SEGMENT.widths]:
        words.extend(f"--segment-widths {','.join(map(str, w))}" for w in widths)
    if batch != BATCH:
        words.append(f"--batch {batch}")
    if device != "cpu":
        words.append(f"--device {device}")
    return " ".join(words)


def _device_name(device: str) -> str:
    if device.startswith("cuda"):
        return f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    return f"{device} ({torch.get_num_threads()} threads)"


def _earlier_training(package: Path) -> dict:
    """What the card of the package a segmenter was continued from says about its training."""
    card = ModelPackage.load(package).card
    return {"version": card.version, "training": dict(card.training)}


def _card(calibration: Calibration, threshold: float, post: Postprocess, training: dict, accuracy: dict,
          segment: NetworkCard = SEGMENT) -> ModelCard:
    return ModelCard(
        name=NAME, version=VERSION, intended_use=INTENDED_USE, limitations=tuple(LIMITATIONS),
        classes=CLASSES, networks={"locate": LOCATE, "segment": segment}, calibration=calibration,
        threshold=threshold, postprocess=post, tolerance=TOLERANCE, training=training, accuracy=accuracy,
    )


def _widths(text: str) -> tuple[int, ...]:
    try:
        widths = tuple(int(w) for w in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"widths are channel counts separated by commas, like 8,16,32,64: {text!r}") from None
    if len(widths) < 2 or min(widths) < 1:
        raise argparse.ArgumentTypeError(f"widths need at least two positive channel counts: {text!r}")
    return widths


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m screen.model.train", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="package folder to write")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-cases", type=int, default=TRAIN_CASES)
    parser.add_argument("--val-cases", type=int, default=VALIDATION_CASES)
    parser.add_argument("--locate-steps", type=int, default=LOCATE_STEPS)
    parser.add_argument("--segment-steps", type=int, default=SEGMENT_STEPS)
    parser.add_argument("--segment-widths", type=_widths, action="append", default=None,
                        help="the segmenter's channels per level, like 8,16,32,64; give it more than "
                             "once to train several side by side and keep the best on validation")
    parser.add_argument("--batch", type=int, default=BATCH, help="patches per optimiser step")
    parser.add_argument("--cache", type=Path, default=None,
                        help="keep the cut training phantoms here (a temporary folder) to rerun faster")
    parser.add_argument("--locate-from", type=Path, default=None,
                        help="package whose locate network to keep (then only the segmenter is trained)")
    parser.add_argument("--segment-from", type=Path, default=None,
                        help="package whose segmenter to continue training (use another --seed)")
    parser.add_argument("--device", default="cpu", help="torch device the networks train on (cuda on a GPU)")
    parser.add_argument("--workers", type=int, default=2, help="processes rendering phantoms")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="folder to keep the trained segmenters' weights in before validation")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    torch.set_num_threads(args.threads)
    train(args.out, args.seed, args.train_cases, args.val_cases, args.locate_steps,
          args.segment_steps, args.workers, args.cache, args.locate_from, args.device, args.segment_from,
          args.segment_widths, args.batch, args.checkpoint)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
