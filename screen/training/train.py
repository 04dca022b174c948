"""Train the detector on synthetic phantoms and write a model package.

    python -m screen.training.train --out engines/pancreas-phantom-v1 --seed 0

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
import logging
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from functools import partial
from pathlib import Path

import numpy as np
import torch

from screen.backends.torch import TorchRunner
from screen.detect.detector import FEATURES, Detector
from screen.model.card import Calibration, ModelCard, Postprocess
from screen.model.export import save_weights, write_package
from screen.model.network import UNet3D, WithSoftmax
from screen.model.package import ModelPackage
from screen.synth.cases import TRAIN_SETTINGS, render_pool, training_seeds, validation_seeds
from screen.training.card_writing import card_for, command, device_name, earlier_training
from screen.training.optimise import optimise
from screen.training.patches import TrainingSet, in_order, prepare
from screen.training.recipe import (
    BATCH,
    BOX_JITTER_MM,
    CONTINUE_LR,
    LOCATE,
    LOCATE_PATCH,
    LOCATE_STEPS,
    SEGMENT,
    SEGMENT_PATCH,
    SEGMENT_STEPS,
    TRAIN_CASES,
    VALIDATION_CASES,
)
from screen.training.validation import location_fractions, validate, validation_case

logger = logging.getLogger(__name__)


def _runner(net: UNet3D, card) -> TorchRunner:
    """An in-memory network as a runner, for validating before anything is written."""
    return TorchRunner(WithSoftmax(net).eval(), card.shape_multiple, "fp32", str(next(net.parameters()).device))


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
        cut = partial(prepare, cache=cache, coarse=locate_from is None)
        items = in_order(pool, cut, train_seeds, len(train_seeds))
        val_cases_in_order = in_order(pool, validation_case, val_seeds, 2 * workers)

        locate = UNet3D(LOCATE.widths)
        if locate_from is not None:
            # An earlier package's locate network that already finds the gland well: keep it
            # and train only the segmenter, which is most of the work.
            locate.load_state_dict(torch.load(locate_from / LOCATE.torch, weights_only=True))
            logger.info("kept the locate network of %s", locate_from)
            first = 2 * workers
        else:
            coarse = TrainingSet(items, train_cases, train_cases, 1, lambda i: (i.coarse_x, i.coarse_y))
            coarse.arrive(0)
            logger.info("prepared %d training phantoms in %.0f s", train_cases, time.monotonic() - started)
            locate.to(where)
            optimise([locate], coarse, LOCATE_PATCH, locate_steps, rng, "locate", lesion_bias=0.0)
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
        data = TrainingSet(items, train_cases, first, segment_steps, lambda i: (i.fine_x, i.fine_y))
        # Fixed patch shapes while training: let cuDNN pick its fastest kernels for them.
        torch.backends.cudnn.benchmark = where.type == "cuda"
        optimise(segmenters, data, SEGMENT_PATCH, segment_steps, rng, "segment", lesion_bias=0.5,
               max_lr=CONTINUE_LR if segment_from is not None else 3e-3, batch=batch)
        torch.backends.cudnn.benchmark = False  # validation boxes all differ in shape
        data.arrive(segment_steps)
        fractions = location_fractions(data.items)
        del data, items
        if checkpoint is not None:
            checkpoint.mkdir(parents=True, exist_ok=True)
            for w, net in zip(widths, segmenters):
                save_weights(net, checkpoint / f"segment-{'-'.join(map(str, w))}.pt")

        # Validation: the whole detector with each segmenter, uncalibrated, on phantoms it has
        # not seen; on the device it trained on, which agrees with the CPU within the tolerance.
        post = Postprocess(location_fractions=fractions)
        detectors = {
            w: Detector(card_for(Calibration(FEATURES, (1.0, 0.0), 0.0), 0.5, post, {}, {}, replace(SEGMENT, widths=w)),
                        {"locate": _runner(locate, LOCATE), "segment": _runner(net, SEGMENT)})
            for w, net in zip(widths, segmenters)
        }
        validated = validate(detectors, val_cases_in_order)
    chosen = max(widths, key=lambda w: validated[w][2]["auroc"])  # the first of equals
    calibration, threshold, validation = validated[chosen]
    segment = segmenters[widths.index(chosen)]

    training = {
        "command": command(out, seed, train_cases, val_cases, locate_steps, segment_steps, locate_from, segment_from,
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
                    **({"continued_from": earlier_training(segment_from)} if segment_from is not None else {})},
        **({"candidates": [{"widths": list(w), "validation_auroc": validated[w][2]["auroc"]} for w in widths],
            "chosen_widths": list(chosen)} if len(widths) > 1 else {}),
        "optimiser": f"AdamW, one-cycle lr {CONTINUE_LR if segment_from is not None else 3e-3:g}, "
                     f"batch {batch}, cross-entropy (weights 1,1,2) + 0.5 soft Dice",
        "calibration": "Platt (ridge-penalised logistic) on the validation phantoms; threshold for >= 95 % "
                       "sensitivity there" + ("; the segmenter with the highest validation AUROC kept"
                                              if len(widths) > 1 else ""),
        "wall_seconds": round(time.monotonic() - started),
        "device": device_name(device), "torch": torch.__version__, "python": platform.python_version(),
    }
    card = card_for(calibration, threshold, post, training, {"validation": validation}, replace(SEGMENT, widths=chosen))
    write_package(out, {"locate": locate.cpu(), "segment": segment.cpu()}, card)
    logger.info("wrote %s in %.0f s", out, time.monotonic() - started)
    return card


def _widths(text: str) -> tuple[int, ...]:
    try:
        widths = tuple(int(w) for w in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"widths are channel counts separated by commas, like 8,16,32,64: {text!r}") from None
    if len(widths) < 2 or min(widths) < 1:
        raise argparse.ArgumentTypeError(f"widths need at least two positive channel counts: {text!r}")
    return widths


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m screen.training.train", description=__doc__.split("\n")[0])
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
