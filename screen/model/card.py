"""The model card (`model.json`): what a model package promises, read and checked in one place.

Every field is validated when the card is read, and a bad one fails with the file and the
field named, so a user who writes their own package learns exactly what to fix.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from screen.nnunet.card import NnunetCard

logger = logging.getLogger(__name__)

CARD_FILE = "model.json"
CARD_FORMAT = 1
CANONICAL_NETWORK = "segment"  # the main segmenter, shipped as model.onnx
WINDOW_REFERENCES = (None, "gland")  # what a network's window_hu is measured from


class CardError(ValueError):
    """A model card field is missing or wrong; the message names the file and the field."""


def _fail(source: str, field_name: str, problem: str) -> CardError:
    return CardError(f"{source}: field {field_name!r} {problem}")


def _get(data: Mapping[str, Any], key: str, source: str, prefix: str = "") -> Any:
    if not isinstance(data, Mapping):
        raise _fail(source, prefix.rstrip(".") or "<root>", "must be an object")
    if key not in data:
        raise _fail(source, prefix + key, "is missing")
    return data[key]


def _text(data: Mapping[str, Any], key: str, source: str, prefix: str = "") -> str:
    value = _get(data, key, source, prefix)
    if not isinstance(value, str) or not value.strip():
        raise _fail(source, prefix + key, f"must be a non-empty string, got {value!r}")
    return value


def _number(value: Any, source: str, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _fail(source, name, f"must be a finite number, got {value!r}")
    return float(value)


def _numbers(data: Mapping[str, Any], key: str, n: int, source: str, prefix: str = "") -> tuple[float, ...]:
    value = _get(data, key, source, prefix)
    if not isinstance(value, (list, tuple)) or len(value) != n:
        raise _fail(source, prefix + key, f"must be a list of {n} numbers, got {value!r}")
    return tuple(_number(v, source, f"{prefix}{key}[{i}]") for i, v in enumerate(value))


def _reference(value: Any, source: str, prefix: str) -> str | None:
    if value not in WINDOW_REFERENCES:
        raise _fail(source, prefix + "window_relative_to",
                    f"must be \"gland\" or null, got {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class NetworkCard:
    """One network of a package: its files, its input grid and its intensity mapping.

    ``spacing_kji`` is the voxel size (mm) the network expects, in the array order of
    :class:`screen.records.Volume`. HU are clipped to ``window_hu`` and mapped linearly onto
    [-1, 1]. Spatial input sizes must be multiples of ``shape_multiple``. ``crop`` says what
    the input covers: ``body`` (the whole body, found by thresholding) or ``pancreas`` (a box
    around the pancreas that the ``body`` network found, grown by ``margin_mm`` and at least
    ``min_extent_mm`` wide).

    ``window_relative_to`` is ``None`` for a window in absolute HU, or ``"gland"`` for one
    measured from the gland's median attenuation: first of the gland the ``body`` network
    found, then, in a second look, of the parenchyma this network marked itself. A lesion is
    judged against its own parenchyma, whose enhancement depends on the contrast phase: a
    normal gland in the portal venous phase has the attenuation of a lesion in the arterial
    phase, and only the relative window makes the two look different.
    """

    name: str
    onnx: str
    torch: str
    widths: tuple[int, ...]
    spacing_kji: tuple[float, float, float]
    window_hu: tuple[float, float]
    shape_multiple: int
    crop: str
    margin_mm: float = 0.0
    min_extent_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    max_extent_mm: tuple[float, float, float] | None = None  # a runaway box is cut to this
    input_name: str = "image"
    output_name: str = "probs"
    window_relative_to: str | None = None

    def __post_init__(self) -> None:
        if any(s <= 0 for s in self.spacing_kji):
            raise ValueError(f"network {self.name!r}: spacing must be positive, got {self.spacing_kji}")
        if not self.window_hu[0] < self.window_hu[1]:
            raise ValueError(f"network {self.name!r}: window must be (low, high), got {self.window_hu}")
        if self.crop not in ("body", "pancreas"):
            raise ValueError(f"network {self.name!r}: crop must be 'body' or 'pancreas', got {self.crop!r}")
        if self.shape_multiple < 1:
            raise ValueError(f"network {self.name!r}: shape_multiple must be >= 1, got {self.shape_multiple}")
        if self.window_relative_to not in WINDOW_REFERENCES:
            raise ValueError(f"network {self.name!r}: window_relative_to must be \"gland\" or "
                             f"None, got {self.window_relative_to!r}")
        if self.window_relative_to == "gland" and self.crop != "pancreas":
            raise ValueError(f"network {self.name!r}: only a network that looks at the pancreas "
                             f"can window relative to the gland (the body network finds it)")

    def voxels(self, extent_mm: tuple[float, float, float]) -> tuple[int, int, int]:
        """The grid, in voxels on the shape multiple, that covers ``extent_mm`` at least."""
        m = self.shape_multiple
        return tuple(max(m, math.ceil(e / s / m) * m)  # type: ignore[return-value]
                     for e, s in zip(extent_mm, self.spacing_kji))

    @property
    def smallest_input(self) -> tuple[int, int, int, int, int]:
        """The smallest (1, 1, k, j, i) input the preprocessing can give this network."""
        return (1, 1, *self.voxels(self.min_extent_mm))

    def normalise(self, hu: Any, gland_hu: float | None = None) -> Any:
        """HU (numpy array) to network input: clip to the window, map onto [-1, 1]. A window
        relative to the gland is moved by ``gland_hu``, which it then requires."""
        lo, hi = self.window_hu
        if self.window_relative_to == "gland":
            if gland_hu is None or not math.isfinite(gland_hu):
                raise ValueError(f"network {self.name!r} windows relative to the gland: "
                                 f"it needs the gland's HU, got {gland_hu!r}")
            lo, hi = lo + gland_hu, hi + gland_hu
        return ((hu.clip(lo, hi) - lo) * (2.0 / (hi - lo)) - 1.0).astype("float32", copy=False)

    @classmethod
    def from_dict(cls, name: str, data: Mapping[str, Any], source: str) -> NetworkCard:
        p = f"networks.{name}."
        widths = _get(data, "widths", source, p)
        if not isinstance(widths, list) or len(widths) < 2 or not all(
            isinstance(w, int) and not isinstance(w, bool) and w > 0 for w in widths
        ):
            raise _fail(source, p + "widths", f"must be a list of >= 2 positive integers, got {widths!r}")
        spacing = _numbers(data, "spacing_mm_kji", 3, source, p)
        if any(s <= 0 for s in spacing):
            raise _fail(source, p + "spacing_mm_kji", f"must be positive, got {list(spacing)}")
        window = _numbers(data, "window_hu", 2, source, p)
        if not window[0] < window[1]:
            raise _fail(source, p + "window_hu", f"must be [low, high] with low < high, got {list(window)}")
        multiple = _get(data, "shape_multiple", source, p)
        if not isinstance(multiple, int) or isinstance(multiple, bool) or multiple < 1:
            raise _fail(source, p + "shape_multiple", f"must be a positive integer, got {multiple!r}")
        crop = _text(data, "crop", source, p)
        if crop not in ("body", "pancreas"):
            raise _fail(source, p + "crop", f"must be 'body' or 'pancreas', got {crop!r}")
        margin = _number(data.get("margin_mm", 0.0), source, p + "margin_mm")
        min_extent = (
            _numbers(data, "min_extent_mm_kji", 3, source, p)
            if "min_extent_mm_kji" in data else (0.0, 0.0, 0.0)
        )
        max_extent = (
            _numbers(data, "max_extent_mm_kji", 3, source, p)
            if data.get("max_extent_mm_kji") is not None else None
        )
        fields = dict(
            name=name,
            onnx=_text(data, "onnx", source, p),
            torch=_text(data, "torch", source, p),
            widths=tuple(widths),
            spacing_kji=spacing,
            window_hu=window,
            shape_multiple=multiple,
            crop=crop,
            margin_mm=margin,
            min_extent_mm=min_extent,
            max_extent_mm=max_extent,
            input_name=str(data.get("input", "image")),
            output_name=str(data.get("output", "probs")),
            window_relative_to=_reference(data.get("window_relative_to"), source, p),
        )
        try:  # each field reads well alone; what is left is how they fit together
            return cls(**fields)  # type: ignore[arg-type]
        except ValueError as exc:
            raise _fail(source, f"networks.{name}", str(exc)) from exc

    def to_dict(self) -> dict[str, Any]:
        return {
            "onnx": self.onnx, "torch": self.torch, "widths": list(self.widths),
            "spacing_mm_kji": list(self.spacing_kji), "window_hu": list(self.window_hu),
            "window_relative_to": self.window_relative_to,
            "intensity": (
                "HU clipped to window_hu, then mapped linearly onto [-1, 1]"
                if self.window_relative_to is None else
                "HU clipped to window_hu added to the gland's median HU, then mapped linearly "
                "onto [-1, 1]; the gland is first the one the body network found, then, in a "
                "second look, the parenchyma this network marked (lesions left out)"
            ),
            "shape_multiple": self.shape_multiple, "crop": self.crop,
            "margin_mm": self.margin_mm, "min_extent_mm_kji": list(self.min_extent_mm),
            "max_extent_mm_kji": list(self.max_extent_mm) if self.max_extent_mm else None,
            "input": self.input_name, "output": self.output_name,
        }


RECIPE_ACTIONS = ("locate", "crop", "segment")  # the order the bundled kind of model runs them


@dataclass(frozen=True, slots=True)
class RecipeStep:
    """One step of how a model of the bundled kind chains its networks on a volume.

    ``locate``: ``network`` (crop ``body``) looks at the whole body; the largest pancreas it
    marks is the gland. ``crop``: a box around that gland, on ``network``'s grid and with its
    margin and extents. ``segment``: ``network`` (crop ``pancreas``) looks at the box, twice
    when its window is relative to the gland.
    """

    action: str
    network: str

    def __post_init__(self) -> None:
        if self.action not in RECIPE_ACTIONS:
            raise ValueError(f"recipe step must be one of {', '.join(RECIPE_ACTIONS)}, got {self.action!r}")
        if not isinstance(self.network, str) or not self.network:
            raise ValueError(f"recipe step {self.action!r} must name a network, got {self.network!r}")

    def to_dict(self) -> dict[str, str]:
        return {"action": self.action, "network": self.network}


def default_recipe(networks: Mapping[str, NetworkCard]) -> tuple[RecipeStep, ...]:
    """The recipe of a card that names none: its body network locates, the main segmenter
    crops and segments (the bundled model's card, written before recipes were data)."""
    body = [n.name for n in networks.values() if n.crop == "body"]
    locate = body[0] if body else ""
    return (RecipeStep("locate", locate), RecipeStep("crop", CANONICAL_NETWORK),
            RecipeStep("segment", CANONICAL_NETWORK))


def check_recipe(recipe: tuple[RecipeStep, ...], networks: Mapping[str, NetworkCard]) -> None:
    """ValueError unless ``recipe`` is locate → crop → segment over networks that fit each step."""
    if not all(isinstance(step, RecipeStep) for step in recipe):
        raise TypeError(f"a recipe is a tuple of RecipeStep, got {recipe!r}")
    actions = tuple(step.action for step in recipe)
    if actions != RECIPE_ACTIONS:
        raise ValueError(f"recipe must run {' -> '.join(RECIPE_ACTIONS)}, got {' -> '.join(actions) or 'nothing'}")
    for step in recipe:
        if step.network not in networks:
            raise ValueError(f"recipe step {step.action!r} names network {step.network!r}, which the "
                             f"card does not have ({', '.join(networks)})")
    wanted = {"locate": "body", "crop": "pancreas", "segment": "pancreas"}
    for step in recipe:
        if networks[step.network].crop != wanted[step.action]:
            raise ValueError(f"recipe step {step.action!r} needs a network with crop "
                             f"{wanted[step.action]!r}; {step.network!r} has {networks[step.network].crop!r}")
    if recipe[1].network != recipe[2].network:
        raise ValueError(f"recipe: the crop is made for the network that segments "
                         f"({recipe[2].network!r}), not {recipe[1].network!r}")


# The detector's features a calibration may weigh, and what each one is.
FEATURE_MEANING: dict[str, str] = {
    "lesion_logit": "logit of the highest lesion probability in or next to the pancreas",
    "lesion_cube_logit": "logit of the highest lesion probability averaged over a cube of "
                         "3x3x3 voxels (4.5 mm), in or next to the pancreas",
    "lesion_log_mm3": "log(1 + volume in mm3 of the most suspicious lesion component)",
}


@dataclass(frozen=True, slots=True)
class Calibration:
    """Platt scaling: score = sigmoid(intercept + sum(coef * features))."""

    features: tuple[str, ...]
    coef: tuple[float, ...]
    intercept: float

    def __post_init__(self) -> None:
        if len(self.features) != len(self.coef):
            raise ValueError(f"{len(self.features)} calibration features but {len(self.coef)} coefficients")
        unknown = [f for f in self.features if f not in FEATURE_MEANING]
        if unknown:
            raise ValueError(f"unknown calibration feature(s) {unknown}; the detector computes "
                             f"{sorted(FEATURE_MEANING)}")

    def score(self, values: Mapping[str, float]) -> float:
        z = self.intercept + sum(c * float(values[f]) for f, c in zip(self.features, self.coef))
        # Written to stay finite for any z: exp of a large positive number overflows.
        return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))


@dataclass(frozen=True, slots=True)
class Postprocess:
    """Thresholds that turn probability maps into a pancreas, lesions and a location."""

    pancreas_probability: float = 0.5
    lesion_probability: float = 0.5
    min_pancreas_ml: float = 1.0
    min_lesion_mm3: float = 10.0
    location_fractions: tuple[float, float] = (1 / 3, 2 / 3)

    def __post_init__(self) -> None:
        a, b = self.location_fractions
        if not 0.0 < a < b < 1.0:
            raise ValueError(f"location_fractions must satisfy 0 < head/body < body/tail < 1, got {self.location_fractions}")


@dataclass(frozen=True, slots=True)
class ModelCard:
    name: str
    version: str
    intended_use: str
    limitations: tuple[str, ...]
    classes: tuple[str, ...]
    networks: Mapping[str, NetworkCard]
    calibration: Calibration
    threshold: float
    postprocess: Postprocess = field(default_factory=Postprocess)
    tolerance: Mapping[str, Any] = field(default_factory=dict)
    training: Mapping[str, Any] = field(default_factory=dict)
    accuracy: Mapping[str, Any] = field(default_factory=dict)
    recipe: tuple[RecipeStep, ...] = ()  # empty: default_recipe(networks)

    def __post_init__(self) -> None:
        if not self.recipe:
            object.__setattr__(self, "recipe", default_recipe(self.networks))
        check_recipe(self.recipe, self.networks)

    def step(self, action: str) -> NetworkCard:
        """The network the recipe runs at ``action``."""
        for step in self.recipe:
            if step.action == action:
                return self.networks[step.network]
        raise ValueError(f"model {self.name!r} has no recipe step {action!r}")

    @property
    def locate(self) -> NetworkCard:
        return self.step("locate")

    @property
    def segment(self) -> NetworkCard:
        return self.step("segment")

    def to_dict(self) -> dict[str, Any]:
        """The card as written to ``model.json``; :meth:`from_dict` reads it back."""
        return {
            "format": CARD_FORMAT, "name": self.name, "version": self.version,
            "intended_use": self.intended_use, "limitations": list(self.limitations),
            "classes": list(self.classes),
            "networks": {name: n.to_dict() for name, n in self.networks.items()},
            "calibration": {
                "method": "platt", "features": list(self.calibration.features),
                "feature_meaning": {f: FEATURE_MEANING[f] for f in self.calibration.features},
                "coef": list(self.calibration.coef), "intercept": self.calibration.intercept,
            },
            "threshold": self.threshold,
            "postprocess": {
                k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self.postprocess).items()
            },
            "tolerance": dict(self.tolerance), "training": dict(self.training),
            "accuracy": dict(self.accuracy),
            # Written only where it differs from the default, so a card without one reads and
            # writes back the same.
            **({"recipe": [step.to_dict() for step in self.recipe]}
               if self.recipe != default_recipe(self.networks) else {}),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str) -> ModelCard:
        fmt = _get(data, "format", source)
        if fmt != CARD_FORMAT:
            raise _fail(source, "format", f"must be {CARD_FORMAT}, got {fmt!r}")
        limitations = _get(data, "limitations", source)
        if not isinstance(limitations, list) or not all(isinstance(s, str) for s in limitations):
            raise _fail(source, "limitations", "must be a list of strings")
        classes = _get(data, "classes", source)
        if not isinstance(classes, list) or tuple(classes)[:3] != ("background", "pancreas", "lesion"):
            raise _fail(source, "classes", f"must start with background, pancreas, lesion; got {classes!r}")
        raw_networks = _get(data, "networks", source)
        if not isinstance(raw_networks, Mapping) or not raw_networks:
            raise _fail(source, "networks", "must be an object naming at least one network")
        networks = {
            name: NetworkCard.from_dict(name, spec, source) for name, spec in raw_networks.items()
        }
        if CANONICAL_NETWORK not in networks:
            raise _fail(source, f"networks.{CANONICAL_NETWORK}", "is missing (the main segmenter)")
        if networks[CANONICAL_NETWORK].onnx != "model.onnx":
            raise _fail(source, f"networks.{CANONICAL_NETWORK}.onnx", "must be 'model.onnx'")
        if sum(n.crop == "body" for n in networks.values()) != 1:
            raise _fail(source, "networks", "needs exactly one network with crop 'body'")
        cal = _get(data, "calibration", source)
        features = _get(cal, "features", source, "calibration.")
        coef = _get(cal, "coef", source, "calibration.")
        if not isinstance(features, list) or not isinstance(coef, list) or len(features) != len(coef):
            raise _fail(source, "calibration.coef", "must be a list as long as calibration.features")
        weights = tuple(_number(c, source, f"calibration.coef[{i}]") for i, c in enumerate(coef))
        intercept = _number(_get(cal, "intercept", source, "calibration."), source, "calibration.intercept")
        try:
            calibration = Calibration(tuple(str(f) for f in features), weights, intercept)
        except ValueError as exc:
            raise _fail(source, "calibration.features", str(exc)) from exc
        threshold = _number(_get(data, "threshold", source), source, "threshold")
        if not 0.0 <= threshold <= 1.0:
            raise _fail(source, "threshold", f"must be a probability in [0, 1], got {threshold}")
        post = data.get("postprocess", {})
        try:
            postprocess = Postprocess(**{
                k: tuple(v) if isinstance(v, list) else v for k, v in post.items()
            })
        except (TypeError, ValueError) as exc:
            raise _fail(source, "postprocess", str(exc)) from exc
        recipe = _recipe(data.get("recipe"), networks, source)
        return cls(
            recipe=recipe,
            name=_text(data, "name", source),
            version=_text(data, "version", source),
            intended_use=_text(data, "intended_use", source),
            limitations=tuple(limitations),
            classes=tuple(classes),
            networks=networks,
            calibration=calibration,
            threshold=threshold,
            postprocess=postprocess,
            tolerance=dict(data.get("tolerance", {})),
            training=dict(data.get("training", {})),
            accuracy=dict(data.get("accuracy", {})),
        )


def _recipe(value: Any, networks: Mapping[str, NetworkCard], source: str) -> tuple[RecipeStep, ...]:
    if value is None:
        return default_recipe(networks)
    if not isinstance(value, list) or not all(isinstance(v, Mapping) for v in value):
        raise _fail(source, "recipe", f"must be a list of steps ({{\"action\": ..., \"network\": ...}}), got {value!r}")
    try:
        steps = tuple(RecipeStep(str(_get(v, "action", source, f"recipe[{n}].")),
                                 str(_get(v, "network", source, f"recipe[{n}]."))) for n, v in enumerate(value))
        check_recipe(steps, networks)
    except ValueError as exc:
        if isinstance(exc, CardError):
            raise
        raise _fail(source, "recipe", str(exc)) from exc
    return steps


def read_card(path: Path) -> ModelCard | NnunetCard:
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CardError(f"{path}: no model card ({CARD_FILE}) here") from None
    except json.JSONDecodeError as exc:
        raise CardError(f"{path}: not valid JSON ({exc})") from None
    if isinstance(data, Mapping) and data.get("kind") == "nnunet":  # an imported nnU-Net model
        from screen.nnunet.card import NnunetCard

        return NnunetCard.from_dict(data, str(path))
    return ModelCard.from_dict(data, str(path))
