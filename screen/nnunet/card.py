"""The card of an imported nnU-Net model: how to feed it, as read from its plans, and what its
score means. Written by ``screen import-model nnunet`` and read back by every command that
runs the package; every field is checked on reading, naming the file and the field.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from screen.model.card import CARD_FORMAT, CardError
from screen.nnunet.folder import Architecture, Intensity, NnunetFolderError, Resampling

logger = logging.getLogger(__name__)

KIND = "nnunet"
ORIENTATIONS = ("LPS", "RAS")
UNCALIBRATED = ("Its score is uncalibrated: the highest lesion probability the network gives, "
                "not a measured probability that a series shows a lesion. Run screen calibrate "
                "on this site's own labelled series before reading it as one.")


def _fail(source: str, name: str, problem: str) -> CardError:
    return CardError(f"{source}: field {name!r} {problem}")


@dataclass(frozen=True, slots=True)
class NnunetNetwork:
    """One fold's network: ONNX and torch weights, logits out."""

    name: str
    onnx: str
    torch: str
    fold: str
    checkpoint_sha256: str
    input_name: str = "image"
    output_name: str = "logits"
    shape_multiple: int = 1  # patches are always the plans' patch size

    def to_dict(self) -> dict[str, Any]:
        return {"onnx": self.onnx, "torch": self.torch, "fold": self.fold,
                "checkpoint_sha256": self.checkpoint_sha256, "input": self.input_name,
                "output": self.output_name}


@dataclass(frozen=True, slots=True)
class PanoramaRecipe:
    """The PANORAMA baseline's two stages, as data: a low-resolution localiser segments the
    pancreas on the whole series; the series is cropped to that pancreas's box widened by
    ``margins_mm`` (x, y, z: along i, j, k); the detector runs on the crop; its lesion
    probability is kept inside its own ``mask_labels`` (pancreas and duct) grown by
    ``mask_dilation_mm``; lesion candidates are extracted and the largest one's value is the
    score. ``localiser`` is the folder, inside the package, of the localiser's own package."""

    localiser: str = "localiser"
    localiser_label: str = "pancreas"
    margins_mm: tuple[float, float, float] = (100.0, 50.0, 15.0)
    mask_labels: tuple[str, ...] = ("pancreas", "pancreatic duct")
    mask_dilation_mm: float = 10.0
    localiser_sha256: str = ""
    kind: str = "panorama"

    def __post_init__(self) -> None:
        if any(m < 0 for m in self.margins_mm) or len(self.margins_mm) != 3:
            raise ValueError(f"margins must be three lengths >= 0 mm, got {self.margins_mm}")
        if self.mask_dilation_mm < 0:
            raise ValueError(f"mask dilation must be >= 0 mm, got {self.mask_dilation_mm}")

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "localiser": self.localiser,
                "localiser_label": self.localiser_label, "margins_mm_xyz": list(self.margins_mm),
                "mask_labels": list(self.mask_labels), "mask_dilation_mm": self.mask_dilation_mm,
                "localiser_sha256": self.localiser_sha256,
                "steps": ["localise the pancreas (localiser, whole series)",
                          "crop to its box widened by margins_mm_xyz",
                          "detect (this model, on the crop)",
                          "keep the lesion probability inside mask_labels grown by mask_dilation_mm",
                          "lesion candidates: dynamic threshold max/2.5, 26-connected, > 10 voxels",
                          "score: the largest candidate's value"]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PanoramaRecipe:
        if data.get("kind") != "panorama":
            raise ValueError(f"unknown recipe {data.get('kind')!r}; known: panorama")
        return cls(localiser=str(data["localiser"]), localiser_label=str(data["localiser_label"]),
                   margins_mm=tuple(float(m) for m in data["margins_mm_xyz"]),
                   mask_labels=tuple(str(m) for m in data["mask_labels"]),
                   mask_dilation_mm=float(data["mask_dilation_mm"]),
                   localiser_sha256=str(data.get("localiser_sha256", "")))


@dataclass(frozen=True, slots=True)
class ScoreCalibration:
    """Platt scaling of the highest lesion probability's logit: sigmoid(a + b * logit(p))."""

    intercept: float
    slope: float

    def score(self, p: float) -> float:
        import math

        p = min(max(p, 1e-6), 1 - 1e-6)
        z = self.intercept + self.slope * math.log(p / (1 - p))
        return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))


@dataclass(frozen=True, slots=True)
class NnunetCard:
    """What an imported nnU-Net model promises, and how to run it as nnU-Net would.

    Arrays are fed in the model's axis order: the volume's (k, j, i), with i turned towards
    patient left (``orientation`` LPS, images as read from DICOM) or right (RAS, images as
    nibabel's canonical NIfTI), j towards posterior or anterior likewise and k superior, then
    transposed by ``transpose_forward``. nnU-Net ignores the direction of the images it was
    trained on, so the orientation they had on disk is what the model learnt; obliquity is
    left in the affine, as nnU-Net leaves it.
    """

    name: str
    version: str
    intended_use: str
    limitations: tuple[str, ...]
    classes: tuple[str, ...]
    lesion_label: str | None
    pancreas_label: str | None
    orientation: str
    transpose_forward: tuple[int, int, int]
    spacing: tuple[float, float, float]  # the plans' target spacing, in the model's axis order
    patch_size: tuple[int, int, int]
    intensity: Intensity
    data_resampling: Resampling
    probability_resampling: Resampling
    tile_step: float
    mirror_axes: tuple[int, ...] | None
    architecture: Architecture
    networks: Mapping[str, NnunetNetwork]
    threshold: float
    calibration: ScoreCalibration | None = None
    source: Mapping[str, Any] = field(default_factory=dict)
    accuracy: Mapping[str, Any] = field(default_factory=dict)
    recipe: PanoramaRecipe | None = None  # None: this one model, its lesion label scored
    kind: str = KIND

    def __post_init__(self) -> None:
        if self.orientation not in ORIENTATIONS:
            raise ValueError(f"orientation must be one of {ORIENTATIONS}, got {self.orientation!r}")
        if sorted(self.transpose_forward) != [0, 1, 2]:
            raise ValueError(f"transpose_forward must permute (0, 1, 2), got {self.transpose_forward}")
        if not 0 < self.tile_step <= 1:
            raise ValueError(f"tile_step must be in (0, 1], got {self.tile_step}")
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {self.threshold}")
        if not self.networks:
            raise ValueError("an nnU-Net card needs at least one fold's network")
        if len(self.classes) < 2:
            raise ValueError(f"an nnU-Net model has at least two classes, got {self.classes}")
        for label in (self.lesion_label, self.pancreas_label):
            if label is not None and label not in self.classes:
                raise ValueError(f"label {label!r} is not among the classes {self.classes}")
        if self.recipe is not None:
            for label in self.recipe.mask_labels:
                if label not in self.classes:
                    raise ValueError(f"recipe mask label {label!r} is not among the classes {self.classes}")
            if self.lesion_label is None:
                raise ValueError("a two-stage recipe needs the detector's lesion label")
        if self.mirror_axes is not None and any(a not in (0, 1, 2) for a in self.mirror_axes):
            raise ValueError(f"mirror_axes must be among 0, 1, 2, got {self.mirror_axes}")

    @property
    def postprocess(self):
        """Thresholds the review images and DICOM SEG draw lesions and pancreas at."""
        from screen.model.card import Postprocess

        return Postprocess()

    @property
    def calibrated(self) -> bool:
        return self.calibration is not None

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def index(self, label: str) -> int:
        return self.classes.index(label)

    def to_dict(self) -> dict[str, Any]:
        def resampling(r: Resampling) -> dict[str, Any]:
            return {"order": r.order, "order_z": r.order_z, "force_separate_z": r.force_separate_z}

        return {
            "format": CARD_FORMAT, "kind": KIND, "name": self.name, "version": self.version,
            "intended_use": self.intended_use, "limitations": list(self.limitations),
            "classes": list(self.classes), "lesion_label": self.lesion_label,
            "pancreas_label": self.pancreas_label,
            "input": {
                "orientation": self.orientation,
                "transpose_forward": list(self.transpose_forward),
                "spacing_mm": list(self.spacing), "patch_size": list(self.patch_size),
                "normalisation": {
                    "scheme": self.intensity.scheme, "mean": self.intensity.mean,
                    "std": self.intensity.std, "clip": [self.intensity.lower, self.intensity.upper],
                },
                "resampling": {"data": resampling(self.data_resampling),
                               "probabilities": resampling(self.probability_resampling)},
            },
            "inference": {"tile_step": self.tile_step,
                          "mirror_axes": list(self.mirror_axes) if self.mirror_axes is not None else None,
                          "gaussian_sigma": "patch / 8",
                          "folds": [n.fold for n in self.networks.values()]},
            "architecture": self.architecture.to_dict(),
            "networks": {name: n.to_dict() for name, n in self.networks.items()},
            "calibration": (None if self.calibration is None else {
                "method": "platt", "feature": "logit of the highest lesion probability",
                "intercept": self.calibration.intercept, "slope": self.calibration.slope}),
            "threshold": self.threshold,
            "recipe": ({"kind": "single", "steps": [
                "this model on the whole series",
                "lesion candidates: dynamic threshold max/2.5, 26-connected, > 10 voxels",
                "score: the largest candidate's value"]}
                if self.recipe is None else self.recipe.to_dict()),
            "source": dict(self.source), "accuracy": dict(self.accuracy),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str) -> NnunetCard:
        def get(obj: Any, key: str, prefix: str = "") -> Any:
            if not isinstance(obj, Mapping) or key not in obj:
                raise _fail(source, prefix + key, "is missing")
            return obj[key]

        def resampling(obj: Any, prefix: str) -> Resampling:
            return Resampling(int(get(obj, "order", prefix)), int(get(obj, "order_z", prefix)),
                              obj.get("force_separate_z"))

        if data.get("format") != CARD_FORMAT:
            raise _fail(source, "format", f"must be {CARD_FORMAT}, got {data.get('format')!r}")
        inp = get(data, "input")
        inference = get(data, "inference")
        norm = get(inp, "normalisation", "input.")
        clip = get(norm, "clip", "input.normalisation.")
        raw_networks = get(data, "networks")
        if not isinstance(raw_networks, Mapping):
            raise _fail(source, "networks", "must be an object")
        try:
            networks = {
                name: NnunetNetwork(name, str(get(n, "onnx", f"networks.{name}.")),
                                    str(get(n, "torch", f"networks.{name}.")),
                                    str(get(n, "fold", f"networks.{name}.")),
                                    str(n.get("checkpoint_sha256", "")),
                                    str(n.get("input", "image")), str(n.get("output", "logits")))
                for name, n in raw_networks.items()
            }
            arch = get(data, "architecture")
            cal = data.get("calibration")
            mirror = get(inference, "mirror_axes", "inference.")
            return cls(
                name=str(get(data, "name")), version=str(get(data, "version")),
                intended_use=str(get(data, "intended_use")),
                limitations=tuple(str(s) for s in get(data, "limitations")),
                classes=tuple(str(c) for c in get(data, "classes")),
                lesion_label=data.get("lesion_label"), pancreas_label=data.get("pancreas_label"),
                orientation=str(get(inp, "orientation", "input.")),
                transpose_forward=tuple(int(a) for a in get(inp, "transpose_forward", "input.")),
                spacing=tuple(float(s) for s in get(inp, "spacing_mm", "input.")),
                patch_size=tuple(int(s) for s in get(inp, "patch_size", "input.")),
                intensity=Intensity(str(get(norm, "scheme", "input.normalisation.")),
                                    float(get(norm, "mean", "input.normalisation.")),
                                    float(get(norm, "std", "input.normalisation.")),
                                    float(clip[0]), float(clip[1])),
                data_resampling=resampling(get(get(inp, "resampling", "input."), "data",
                                               "input.resampling."), "input.resampling.data."),
                probability_resampling=resampling(
                    get(get(inp, "resampling", "input."), "probabilities", "input.resampling."),
                    "input.resampling.probabilities."),
                tile_step=float(get(inference, "tile_step", "inference.")),
                mirror_axes=tuple(int(a) for a in mirror) if mirror is not None else None,
                architecture=Architecture(str(get(arch, "network_class_name", "architecture.")),
                                          dict(get(arch, "arch_kwargs", "architecture."))),
                networks=networks,
                threshold=float(get(data, "threshold")),
                calibration=(None if cal is None else ScoreCalibration(
                    float(get(cal, "intercept", "calibration.")), float(get(cal, "slope", "calibration.")))),
                source=dict(data.get("source", {})), accuracy=dict(data.get("accuracy", {})),
                recipe=(None if (data.get("recipe") or {}).get("kind", "single") == "single"
                        else PanoramaRecipe.from_dict(data["recipe"])),
            )
        except CardError:
            raise
        except (NnunetFolderError, ValueError, TypeError, IndexError, KeyError) as exc:
            raise CardError(f"{source}: {exc}") from None
