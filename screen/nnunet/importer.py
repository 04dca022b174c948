"""``screen import-model nnunet``: an nnU-Net v2 trained-model folder → a model package.

Everything is checked before anything is written (plans, labels, every fold's checkpoint
loaded into the rebuilt network), and the package is assembled in a temporary folder beside
``out`` and moved into place whole, so a refusal or a crash leaves nothing behind.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from screen.atomic import file_sha256
from screen.model.card import CARD_FILE
from screen.nnunet.card import UNCALIBRATED, NnunetCard, NnunetNetwork
from screen.nnunet.folder import NnunetFolder, NnunetFolderError, read_folder
from screen.nnunet.network import build_network, load_weights, read_checkpoint

logger = logging.getLogger(__name__)

DEFAULT_CHECKPOINT = "checkpoint_final.pth"
LESION_NAMES = ("tumor", "tumour", "lesion", "pdac", "cancer", "mass")
PANCREAS_NAMES = ("pancreas",)
OPSET = 17


@dataclass(frozen=True, slots=True)
class ImportOptions:
    folds: tuple[str, ...] | None = None  # None: every fold present
    checkpoint: str = DEFAULT_CHECKPOINT
    mirroring: bool | None = None  # None: what the checkpoint allows
    name: str | None = None
    lesion_label: str | None = None
    pancreas_label: str | None = None
    tile_step: float = 0.5
    orientation: str = "LPS"

    def __post_init__(self) -> None:
        if not 0 < self.tile_step <= 1:
            raise ValueError(f"tile step must be in (0, 1], got {self.tile_step}")
        if self.name is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", self.name):
            raise ValueError(f"a model name is letters, digits, '.', '_' and '-', got {self.name!r}")


def _pick_label(folder: NnunetFolder, given: str | None, names: Sequence[str], what: str) -> str | None:
    """A label by name or number; else the first whose name contains one of ``names``."""
    if given is not None:
        if given.isdigit():
            index = int(given)
            if not 0 < index < len(folder.labels):
                raise NnunetFolderError(f"--{what}-label {index} is not a foreground label of "
                                        f"dataset.json ({len(folder.labels)} labels)")
            return folder.labels[index]
        folder.label_index(given)
        return given
    for label in folder.labels[1:]:
        if any(n in label.lower() for n in names) and "duct" not in label.lower():
            return label
    return None


def export_onnx(network, path: Path, patch: Sequence[int], input_name: str = "image",
                output_name: str = "logits") -> None:
    """ONNX with dynamic batch and spatial axes, logits out."""
    import torch

    axes = {0: "n", 2: "k", 3: "j", 4: "i"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation notices are not ours to act on
        torch.onnx.export(
            network.eval(), (torch.zeros(1, 1, *patch),), str(path), dynamo=False,
            opset_version=OPSET, input_names=[input_name], output_names=[output_name],
            dynamic_axes={input_name: axes, output_name: axes},
        )


def import_nnunet(source: Path | str, out: Path | str, options: ImportOptions = ImportOptions(),
                  localiser: Path | str | None = None,
                  localiser_options: ImportOptions | None = None) -> NnunetCard:
    """Check ``source`` and write its package to ``out`` (which must not exist yet).

    With ``localiser`` (a second trained-model folder), the package runs the PANORAMA
    baseline's two-stage recipe: that model finds the pancreas, this one looks at the crop."""
    source, out = Path(source), Path(out)
    if out.exists():
        raise NnunetFolderError(f"{out} already exists; give a new folder for the package")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        recipe = None
        if localiser is not None:
            from screen.model.package import ModelPackage
            from screen.nnunet.card import PanoramaRecipe

            located = _write(Path(localiser), staging / "localiser",
                             localiser_options or ImportOptions(name="localiser"), None)
            if located.pancreas_label is None:
                raise NnunetFolderError(f"{localiser}: the localiser has no pancreas label")
            recipe = PanoramaRecipe(localiser="localiser", localiser_label=located.pancreas_label,
                                    localiser_sha256=ModelPackage.load(staging / "localiser").sha256)
        card = _write(source, staging, options, recipe)
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    logger.info("imported %s (%d folds) into %s", source, len(card.networks), out)
    return card


def _write(source: Path, staging: Path, options: ImportOptions, recipe) -> NnunetCard:
    import torch

    folder = read_folder(source, options.checkpoint)
    folds = options.folds or folder.folds
    missing = [f for f in folds if f not in folder.folds]
    if missing:
        raise NnunetFolderError(f"{source}: no fold_{missing[0]}/{options.checkpoint}; present: "
                                f"{', '.join(folder.folds)}")
    lesion = _pick_label(folder, options.lesion_label, LESION_NAMES, "lesion")
    pancreas = _pick_label(folder, options.pancreas_label, PANCREAS_NAMES, "pancreas")
    nets, checkpoints = {}, {}
    for fold in folds:
        checkpoint = read_checkpoint(folder.fold_path(fold) / options.checkpoint)
        network = build_network(folder.architecture, len(folder.labels))
        load_weights(network, checkpoint)
        nets[fold], checkpoints[fold] = network, checkpoint
    allowed = checkpoints[folds[0]].mirror_axes
    if options.mirroring and not allowed:
        raise NnunetFolderError(f"{source}: the checkpoint allows no mirroring (it was trained without)")
    mirror_axes = allowed if options.mirroring is not False else None
    name = options.name or re.sub(r"[^a-z0-9]+", "-", (folder.dataset_name or source.name).lower()).strip("-")
    networks = {
        f"fold_{fold}": NnunetNetwork(f"fold_{fold}", f"fold_{fold}.onnx", f"fold_{fold}.pt", fold,
                                      file_sha256(checkpoints[fold].path))
        for fold in folds
    }
    card = NnunetCard(
        name=name, version="1",
        intended_use=(f"Runs the nnU-Net model {folder.dataset_name or source.name} as its "
                      "authors trained it, reproducing nnU-Net's own inference. Not for diagnostic "
                      "use unless this site has validated it on its own patients."),
        limitations=(
            UNCALIBRATED,
            "Its accuracy is whatever its authors measured on their data; screen has not measured "
            "it, and it may differ on this site's scanners, protocols and patients.",
            f"Expects CT whose voxel axes run as the training images' did (taken as {options.orientation}); "
            "like nnU-Net, it ignores obliquity.",
        ),
        classes=folder.labels, lesion_label=lesion, pancreas_label=pancreas,
        orientation=options.orientation, transpose_forward=folder.transpose_forward,
        spacing=folder.spacing, patch_size=folder.patch_size, intensity=folder.intensity,
        data_resampling=folder.data_resampling,
        probability_resampling=folder.probability_resampling,
        tile_step=options.tile_step, mirror_axes=mirror_axes, architecture=folder.architecture,
        networks=networks, threshold=0.5, calibration=None, recipe=recipe,
        source={"format": "nnU-Net v2", "folder": str(source.resolve()),
                "dataset": folder.dataset_name, "trainer": folder.trainer,
                "configuration": folder.configuration, "checkpoint": options.checkpoint,
                "folds": list(folds),
                "checkpoint_sha256": {f: networks[f"fold_{f}"].checkpoint_sha256 for f in folds},
                "plans_sha256": file_sha256(source / "plans.json"),
                "dataset_json_sha256": file_sha256(source / "dataset.json")},
    )
    staging.mkdir(parents=True, exist_ok=True)
    for fold, network in nets.items():
        entry = networks[f"fold_{fold}"]
        export_onnx(network, staging / entry.onnx, folder.patch_size, entry.input_name,
                    entry.output_name)
        torch.save({k: v.detach().cpu() for k, v in network.state_dict().items()},
                   staging / entry.torch)
    (staging / CARD_FILE).write_text(json.dumps(card.to_dict(), indent=2) + "\n", encoding="utf-8")
    return card
