"""The detector, top to bottom: locate the pancreas on the whole body, look closer at a box
around it, turn probabilities into a Detection.

    coarse grid over the body ─locate network─▶ pancreas box
    fine grid over the box ─segment network─▶ pancreas and lesion probabilities
      (a window relative to the gland: a second look, windowed from the parenchyma it found)
    ─postprocess─▶ pancreas volume, most suspicious lesion, its centre, size and location,
                   features ─calibration─▶ score

The steps are data: the card's ``recipe`` names each step's network (a card without one
locates with its body network and crops and segments with its main segmenter), and
``_STEPS`` holds what each step does.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import numpy as np
from scipy import ndimage

from screen.backends import Runner, load_runner
from screen.backends.outputs import Above, Channels, Winning, run_keeping
from screen.detect.postprocess import components, feret_diameter_mm, largest, location_in_mask
from screen.detect.preprocess import Grid, body_grid, box_grid, gland_hu, resample
from screen.model.card import ModelCard, NetworkCard
from screen.model.package import ModelPackage
from screen.records import Detection, Location, Volume

logger = logging.getLogger(__name__)

# What training calibrates the score on; a card may name any of FEATURE_MEANING's features.
FEATURES: tuple[str, ...] = ("lesion_cube_logit", "lesion_log_mm3")
_LOGIT_CLIP = 1e-4
_CUBE = 3  # voxels along each side of the cube the lesion probability is averaged over


@dataclass(frozen=True, slots=True, eq=False)
class Detector:
    """A model card with one runner per network, loaded once and reused for every volume."""

    card: ModelCard
    runners: Mapping[str, Runner]
    package_sha256: str = ""

    def __post_init__(self) -> None:
        missing = set(self.card.networks) - set(self.runners)
        if missing:
            raise ValueError(f"no runner for network(s) {sorted(missing)} of model {self.card.name!r}")

    @classmethod
    def open(
        cls, package: ModelPackage, backend: str = "auto", precision: str = "fp32",
        device: str | None = None,
    ) -> Detector:
        if getattr(package.card, "kind", "") == "nnunet":  # an imported model runs its own way
            from screen.nnunet.predictor import NnunetModel

            return NnunetModel.open(package, backend, precision, device)  # type: ignore[return-value]
        runners = {
            name: load_runner(package, name, backend, precision, device) for name in package.card.networks
        }
        return cls(package.card, runners, package.sha256)

    def probes(self) -> list[tuple[str, Runner, tuple[int, ...]]]:
        """Each network with its runner and the smallest input it can be given, to try the
        model once before a sweep."""
        return [(name, self.runners[name], self.card.networks[name].smallest_input)
                for name in self.card.networks]

    @property
    def backend(self) -> str:
        return self.runners[self.card.segment.name].name

    @property
    def precision(self) -> str:
        return self.runners[self.card.segment.name].precision


@dataclass(frozen=True, slots=True, eq=False)
class Analysis:
    """A Detection and what it was made from, for evaluation, review images and the DICOM
    Segmentation: these take the lesion from here, as found, rather than search for it again."""

    detection: Detection
    features: Mapping[str, float]
    locate_grid: Grid
    segment_grid: Grid | None
    lesion_probability: np.ndarray | None  # (K, J, I) on segment_grid, as the network gave it
    pancreas_mask: np.ndarray | None  # bool on segment_grid
    gland_hu: float | None = None  # the gland's HU the segmenter's window was placed from
    seconds: Mapping[str, float] = field(default_factory=dict)  # preprocess, inference, postprocess
    # The reported lesion's voxels (n, 3) as (k, j, i) on segment_grid: the region its centre,
    # size and location were measured on; None without a lesion.
    lesion: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.lesion is None:
            return
        if not isinstance(self.lesion, np.ndarray) or self.lesion.ndim != 2 \
                or self.lesion.shape[1] != 3 or len(self.lesion) == 0:
            raise ValueError(f"lesion must be (n, 3) voxel indices, got "
                             f"{getattr(self.lesion, 'shape', self.lesion)!r}")
        if self.segment_grid is None or self.detection.lesion_center_lps is None:
            raise ValueError("a lesion region needs the grid it lies on and a Detection that "
                             "reports it")


def features_of(lesion_peak: float, lesion_cube_peak: float, lesion_mm3: float) -> dict[str, float]:
    """Calibration inputs: the logits of the highest lesion probability, alone and averaged
    over a small cube, and the log lesion volume."""
    return {"lesion_logit": _logit(lesion_peak), "lesion_cube_logit": _logit(lesion_cube_peak),
            "lesion_log_mm3": math.log1p(max(lesion_mm3, 0.0))}


def _logit(p: float) -> float:
    p = min(max(p, _LOGIT_CLIP), 1.0 - _LOGIT_CLIP)
    return math.log(p / (1.0 - p))


def _gland(threshold: float) -> Above:
    """Pancreas or lesion, the bundled networks' channels 1 and 2, at the card's threshold."""
    return Above((1, 2), threshold)


@dataclass(frozen=True, slots=True, eq=False)
class _Progress:
    """What the recipe's steps have made of one volume so far."""

    coarse: Grid | None = None  # the locating network's grid
    coarse_hu: np.ndarray | None = None  # the volume on it, kept to measure the gland's HU on
    gland: np.ndarray | None = None  # bool on the coarse grid
    fine: Grid | None = None  # the box the segmenting network looks at
    reference: float | None = None  # the gland's HU its window is placed from
    above: np.ndarray | None = None  # bool on the fine grid: pancreas or lesion, all regions
    lesion: np.ndarray | None = None  # the lesion channel on the fine grid


class _Clock:
    """Seconds spent in each stage, lap by lap."""

    def __init__(self) -> None:
        self.seconds = {"preprocess": 0.0, "inference": 0.0, "postprocess": 0.0}
        self._last = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.seconds[stage] += now - self._last
        self._last = now


def _locate(volume: Volume, detector: Detector, network: NetworkCard, done: _Progress,
            clock: _Clock) -> _Progress:
    coarse = body_grid(volume, network)
    coarse_hu = resample(volume.hu, coarse)
    x = network.normalise(coarse_hu)[None, None]
    clock.lap("preprocess")
    (above,) = run_keeping(detector.runners[network.name], x,
                           (_gland(detector.card.postprocess.pancreas_probability),))
    clock.lap("inference")
    gland = largest(above[0]) if above.any() else None
    return replace(done, coarse=coarse, coarse_hu=coarse_hu, gland=gland)


def _crop(volume: Volume, detector: Detector, network: NetworkCard, done: _Progress,
          clock: _Clock) -> _Progress:
    # Grid voxel bounds to volume voxel bounds, widened by half a coarse voxel on each side.
    voxels = np.argwhere(done.gland)
    lo = done.coarse.to_volume(voxels.min(axis=0) - 0.5)
    hi = done.coarse.to_volume(voxels.max(axis=0) + 0.5)
    fine = box_grid(volume, lo, hi, network)
    reference = gland_hu(done.coarse_hu, done.gland)
    clock.lap("postprocess")
    return replace(done, fine=fine, reference=reference)


def _segment(volume: Volume, detector: Detector, network: NetworkCard, done: _Progress,
             clock: _Clock) -> _Progress:
    fine_hu = resample(volume.hu, done.fine)  # kept for a second look

    def look(reference: float | None, *kept: Above | Channels | Winning) -> list[np.ndarray]:
        x = network.normalise(fine_hu, reference)[None, None]
        clock.lap("preprocess")
        out = run_keeping(detector.runners[network.name], x, kept)
        clock.lap("inference")
        return [o[0] for o in out]

    reference = done.reference
    if network.window_relative_to == "gland":
        # The coarse mask's HU strays from the parenchyma's: it mixes in neighbours (bright
        # veins in the portal phase) and any lesion. Look again, windowed from the gland the
        # segmenter itself marked (channel 1), lesions left out. Without one, the second look
        # is the first again.
        (parenchyma,) = look(reference, Winning(1))
        measured = gland_hu(fine_hu, parenchyma)
        if measured is not None:
            reference = measured
    above, lesion = look(reference, _gland(detector.card.postprocess.pancreas_probability),
                         Channels((2,)))
    return replace(done, reference=reference, above=above, lesion=lesion[0])


# The card's recipe names the steps; each is one of these (checked when the card is read).
_STEPS = {"locate": _locate, "crop": _crop, "segment": _segment}


def analyse(volume: Volume, detector: Detector) -> Analysis:
    """The card's recipe run on one volume (an imported model's runs as nnU-Net would)."""
    if getattr(detector.card, "kind", "") == "nnunet":
        from screen.detect.imported import analyse_imported

        return analyse_imported(volume, detector)  # type: ignore[arg-type]
    card = detector.card
    clock = _Clock()
    done = _Progress()
    for step in card.recipe:
        done = _STEPS[step.action](volume, detector, card.networks[step.network], done, clock)
        if step.action == "locate" and done.gland is None:
            logger.info("no pancreas found on the coarse grid")
            features = features_of(0.0, 0.0, 0.0)
            detection = Detection(card.calibration.score(features), False, 0.0)
            clock.lap("postprocess")
            return Analysis(detection, features, done.coarse, None, None, None, seconds=clock.seconds)
    analysis = _findings(volume, card, done.coarse, done.fine, done.above, done.lesion)
    clock.lap("postprocess")
    return replace(analysis, gland_hu=done.reference, seconds=clock.seconds)


def _findings(volume: Volume, card: ModelCard, coarse: Grid, fine: Grid, above: np.ndarray,
              lesion: np.ndarray) -> Analysis:
    post = card.postprocess
    spacing = card.segment.spacing_kji
    voxel_mm3 = float(np.prod(spacing))
    pancreas = largest(above)
    pancreas_ml = float(pancreas.sum()) * voxel_mm3 / 1000.0
    found = pancreas_ml >= post.min_pancreas_ml

    # Lesions count only in or against the gland: the segmenter's view extends past it.
    near = ndimage.binary_dilation(pancreas, iterations=2) if found else np.ones_like(pancreas)
    lesion_prob = np.where(near, lesion, 0.0)
    candidates = [
        c for c in components(lesion_prob > post.lesion_probability, lesion_prob)
        if c.size * voxel_mm3 >= post.min_lesion_mm3
    ]
    best = candidates[0] if candidates else None
    peak = float(lesion_prob.max()) if lesion_prob.size else 0.0
    # A lone voxel's probability says less than a lesion's worth of them: the cube's mean
    # (4.5 mm across at 1.5 mm) ranks scans better than the single highest voxel.
    cube_peak = float(ndimage.uniform_filter(lesion_prob, _CUBE).max()) if lesion_prob.size else 0.0
    features = features_of(peak, cube_peak, best.size * voxel_mm3 if best else 0.0)
    score = card.calibration.score(features)

    centre_lps = diameter = location = key = None
    if best is not None:
        centre_kji = fine.to_volume(best.centre)
        centre_lps = tuple(float(v) for v in volume.to_lps(centre_kji))
        diameter = feret_diameter_mm(best.voxels, spacing)
        key = int(np.clip(round(float(centre_kji[0])), 0, volume.hu.shape[0] - 1))
        if found:
            location = location_in_mask(pancreas, lambda v: volume.to_lps(fine.to_volume(v)),
                                        np.asarray(centre_lps), post.location_fractions)
    detection = Detection(
        score=score, pancreas_found=found, pancreas_volume_ml=pancreas_ml,
        lesion_center_lps=centre_lps, lesion_diameter_mm=diameter,  # type: ignore[arg-type]
        lesion_location=location if isinstance(location, Location) else None, key_slice=key,
    )
    return Analysis(detection, features, coarse, fine, lesion, pancreas,
                    lesion=best.voxels if best is not None else None)


def detect(volume: Volume, detector: Detector | ModelPackage) -> Detection:
    """The detector's conclusion about one volume.

    Given a package rather than a :class:`Detector`, its runners are chosen automatically
    and cached for the process, so calling this in a loop loads the model only once.
    """
    if isinstance(detector, ModelPackage):
        detector = Detector.open(detector)
    from screen.nnunet.predictor import NnunetModel

    if not isinstance(detector, (Detector, NnunetModel)):
        raise TypeError(f"detect needs a Detector or a ModelPackage, got {type(detector).__name__}")
    return analyse(volume, detector).detection
