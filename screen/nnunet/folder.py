"""An nnU-Net v2 trained-model folder (``<Trainer>__<Plans>__<configuration>/``), read and
checked: its plans, its labels and its folds, as frozen records.

Plans come in two formats: current ones describe the network in an ``architecture`` entry;
older ones (such as the PANORAMA pancreas model's) give ``UNet_class_name`` and per-stage
lists instead, from which nnU-Net itself rebuilds the same entry. Both are read here into one
:class:`Architecture`, so nothing downstream knows which format a folder had.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

PLAIN = "dynamic_network_architectures.architectures.unet.PlainConvUNet"
RESIDUAL = "dynamic_network_architectures.architectures.unet.ResidualEncoderUNet"
# The class each name in a plan means; older releases of dynamic-network-architectures kept
# ResidualEncoderUNet in a module of its own, and old plans still name it there.
ARCHITECTURES: dict[str, str] = {
    PLAIN: "PlainConvUNet",
    RESIDUAL: "ResidualEncoderUNet",
    "dynamic_network_architectures.architectures.residual_unet.ResidualEncoderUNet": "ResidualEncoderUNet",
}
_OLD_NAMES = {"PlainConvUNet": PLAIN, "ResidualEncoderUNet": RESIDUAL}
_FOLD = re.compile(r"^fold_(\d+|all)$")


class NnunetFolderError(ValueError):
    """The folder is not a usable nnU-Net model; the message says why in one line."""


@dataclass(frozen=True, slots=True)
class Architecture:
    """The network as dynamic-network-architectures builds it: a class and its arguments
    (the names of torch classes, such as ``conv_op``, still as dotted strings)."""

    class_name: str
    kwargs: Mapping[str, Any]

    def __post_init__(self) -> None:
        if self.class_name not in ARCHITECTURES:
            raise NnunetFolderError(
                f"unknown network architecture {self.class_name!r}; supported: PlainConvUNet, "
                f"ResidualEncoderUNet")
        for key in ("n_stages", "features_per_stage", "kernel_sizes", "strides"):
            if key not in self.kwargs:
                raise NnunetFolderError(f"the plans' architecture lacks {key!r}")

    @property
    def dimensions(self) -> int:
        return len(self.kwargs["kernel_sizes"][0])

    def to_dict(self) -> dict[str, Any]:
        return {"network_class_name": self.class_name, "arch_kwargs": dict(self.kwargs)}


@dataclass(frozen=True, slots=True)
class Intensity:
    """CT normalisation's statistics, from the plans' foreground intensity properties."""

    scheme: str
    mean: float
    std: float
    lower: float  # the 0.5th percentile: HU are clipped to [lower, upper]
    upper: float

    def __post_init__(self) -> None:
        if self.scheme != "CTNormalization":
            raise NnunetFolderError(
                f"normalisation {self.scheme!r} is not supported; only CTNormalization (CT models)")
        if not self.std > 0 or not self.lower <= self.upper:
            raise NnunetFolderError(f"bad CT normalisation statistics: {self}")


@dataclass(frozen=True, slots=True)
class Resampling:
    """How the plans resample: spline ``order`` in plane, ``order_z`` along the slice axis when
    it is resampled apart (anisotropic data); ``force_separate_z`` None lets nnU-Net decide."""

    order: int
    order_z: int
    force_separate_z: bool | None = None

    @classmethod
    def from_plans(cls, data: Mapping[str, Any], name: str) -> Resampling:
        if data.get(name.replace("_kwargs", ""), "resample_data_or_seg_to_shape") != \
                "resample_data_or_seg_to_shape":
            raise NnunetFolderError(f"resampling function {data[name.replace('_kwargs', '')]!r} "
                                    "is not supported")
        kwargs = data.get(name, {})
        return cls(int(kwargs.get("order", 3)), int(kwargs.get("order_z", 0)),
                   kwargs.get("force_separate_z"))


@dataclass(frozen=True, slots=True)
class NnunetFolder:
    """Everything inference needs from a trained-model folder, without its weights."""

    path: Path
    configuration: str
    trainer: str
    dataset_name: str
    labels: tuple[str, ...]  # class names, in output-channel order
    spacing: tuple[float, ...]  # target spacing in nnU-Net's axis order (z, y, x)
    patch_size: tuple[int, ...]
    transpose_forward: tuple[int, ...]
    transpose_backward: tuple[int, ...]
    intensity: Intensity
    data_resampling: Resampling
    probability_resampling: Resampling
    architecture: Architecture
    folds: tuple[str, ...]  # every fold folder present, as nnU-Net names them ("0", "all")
    plans: Mapping[str, Any]
    dataset: Mapping[str, Any]

    def fold_path(self, fold: str) -> Path:
        return self.path / f"fold_{fold}"

    def label_index(self, name: str) -> int:
        try:
            return self.labels.index(name)
        except ValueError:
            raise NnunetFolderError(
                f"no label {name!r} in dataset.json; it has {', '.join(self.labels)}") from None


def _json(path: Path) -> Mapping[str, Any]:
    if not path.is_file():
        raise NnunetFolderError(f"{path.parent}: no {path.name}; not an nnU-Net trained-model folder")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise NnunetFolderError(f"{path}: not readable JSON ({exc})") from None
    if not isinstance(data, Mapping):
        raise NnunetFolderError(f"{path}: not a JSON object")
    return data


def _labels(dataset: Mapping[str, Any], source: Path) -> tuple[str, ...]:
    raw = dataset.get("labels")
    if not isinstance(raw, Mapping) or not raw:
        raise NnunetFolderError(f"{source}: no 'labels' object")
    if any(isinstance(v, list) for v in raw.values()):
        raise NnunetFolderError(f"{source}: region-based labels are not supported")
    by_index = {}
    for name, value in raw.items():
        if name == "ignore":
            continue
        if not isinstance(value, int) or value in by_index:
            raise NnunetFolderError(f"{source}: label {name!r} has a bad or repeated value {value!r}")
        by_index[value] = name
    if sorted(by_index) != list(range(len(by_index))):
        raise NnunetFolderError(f"{source}: label values must run 0..N-1, got {sorted(by_index)}")
    return tuple(by_index[i] for i in range(len(by_index)))


def _architecture(config: Mapping[str, Any], source: Path) -> Architecture:
    if "architecture" in config:
        arch = config["architecture"]
        if not isinstance(arch, Mapping) or "network_class_name" not in arch:
            raise NnunetFolderError(f"{source}: 'architecture' lacks 'network_class_name'")
        return Architecture(str(arch["network_class_name"]), dict(arch.get("arch_kwargs", {})))
    # The older format: rebuilt as nnU-Net's own backwards-compatible reader does.
    old = config.get("UNet_class_name")
    if old not in _OLD_NAMES:
        raise NnunetFolderError(
            f"unknown network architecture {old!r}; supported: PlainConvUNet, ResidualEncoderUNet")
    try:
        n_stages = len(config["n_conv_per_stage_encoder"])
        dims = len(config["patch_size"])
        blocks = "n_conv_per_stage" if old == "PlainConvUNet" else "n_blocks_per_stage"
        kwargs = {
            "n_stages": n_stages,
            "features_per_stage": [min(config["UNet_base_num_features"] * 2 ** i,
                                       config["unet_max_num_features"]) for i in range(n_stages)],
            "conv_op": f"torch.nn.modules.conv.Conv{dims}d",
            "kernel_sizes": config["conv_kernel_sizes"],
            "strides": config["pool_op_kernel_sizes"],
            blocks: config["n_conv_per_stage_encoder"],
            "n_conv_per_stage_decoder": config["n_conv_per_stage_decoder"],
            "conv_bias": True,
            "norm_op": f"torch.nn.modules.instancenorm.InstanceNorm{dims}d",
            "norm_op_kwargs": {"eps": 1e-05, "affine": True},
            "dropout_op": None, "dropout_op_kwargs": None,
            "nonlin": "torch.nn.LeakyReLU", "nonlin_kwargs": {"inplace": True},
        }
    except (KeyError, TypeError) as exc:
        raise NnunetFolderError(f"{source}: older-format plans lack {exc}") from None
    return Architecture(_OLD_NAMES[old], kwargs)


def parse_folder_name(path: Path) -> tuple[str, str, str]:
    """(trainer, plans, configuration) from ``<Trainer>__<Plans>__<configuration>``."""
    parts = path.name.split("__")
    if len(parts) != 3 or not all(parts):
        raise NnunetFolderError(
            f"{path}: not named <Trainer>__<Plans>__<configuration> as nnU-Net names its results")
    return parts[0], parts[1], parts[2]


def read_folder(path: Path | str, checkpoint: str = "checkpoint_final.pth") -> NnunetFolder:
    """Read and check a trained-model folder; :class:`NnunetFolderError` when it is not one.

    ``folds`` lists the fold folders that hold ``checkpoint``."""
    path = Path(path)
    if not path.is_dir():
        raise NnunetFolderError(f"{path}: not a folder")
    plans = _json(path / "plans.json")
    dataset = _json(path / "dataset.json")
    trainer, _, configuration = parse_folder_name(path)
    configs = plans.get("configurations")
    if not isinstance(configs, Mapping) or configuration not in configs:
        raise NnunetFolderError(f"{path / 'plans.json'}: no configuration {configuration!r}")
    config = dict(configs[configuration])
    while "inherits_from" in config and "patch_size" not in config:  # cascades inherit
        config = {**configs[config.pop("inherits_from")], **config}
    channels = dataset.get("channel_names", dataset.get("modality", {}))
    if len(channels) != 1:
        raise NnunetFolderError(f"{path / 'dataset.json'}: {len(channels)} input channels; only "
                                "single-channel CT models are supported")
    schemes = config.get("normalization_schemes", [])
    stats = plans.get("foreground_intensity_properties_per_channel", {}).get("0")
    if not schemes or not isinstance(stats, Mapping):
        raise NnunetFolderError(f"{path / 'plans.json'}: no normalisation scheme or statistics")
    try:
        intensity = Intensity(str(schemes[0]), float(stats["mean"]), float(stats["std"]),
                              float(stats["percentile_00_5"]), float(stats["percentile_99_5"]))
    except KeyError as exc:
        raise NnunetFolderError(f"{path / 'plans.json'}: intensity statistics lack {exc}") from None
    architecture = _architecture(config, path / "plans.json")
    patch = tuple(int(p) for p in config["patch_size"])
    if len(patch) != 3 or architecture.dimensions != 3:
        raise NnunetFolderError(f"{path}: a {len(patch)}-D configuration; only 3-D ones are supported")
    folds = tuple(sorted(
        (m.group(1) for p in path.iterdir() if (m := _FOLD.match(p.name)) and (p / checkpoint).is_file()),
        key=lambda f: (f == "all", int(f) if f.isdigit() else 0),
    ))
    if not folds:
        raise NnunetFolderError(f"{path}: no fold_N folder holds {checkpoint}")
    return NnunetFolder(
        path=path, configuration=configuration, trainer=trainer,
        dataset_name=str(plans.get("dataset_name", "")),
        labels=_labels(dataset, path / "dataset.json"),
        spacing=tuple(float(s) for s in config["spacing"]),
        patch_size=patch,
        transpose_forward=tuple(plans.get("transpose_forward", (0, 1, 2))),
        transpose_backward=tuple(plans.get("transpose_backward", (0, 1, 2))),
        intensity=intensity,
        data_resampling=Resampling.from_plans(config, "resampling_fn_data_kwargs"),
        probability_resampling=Resampling.from_plans(config, "resampling_fn_probabilities_kwargs"),
        architecture=architecture, folds=folds, plans=plans, dataset=dataset,
    )
