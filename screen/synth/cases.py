"""Synthetic cases for training and evaluation: phantoms rendered as scanners would see them.

Each case is drawn from a seed and a :class:`ScanSettings`, so a training or evaluation set is
reproduced exactly from its seeds; nothing is cached on disk.
"""

from __future__ import annotations

import logging
import multiprocessing
from dataclasses import dataclass
from multiprocessing.pool import Pool

import numpy as np
from scipy import ndimage

from screen.records import Volume
from screen.synth.phantom import Phantom, render, sample_spec

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ScanSettings:
    """Ranges the acquisition is drawn from: slice spacing, pixel size, matrix, z coverage."""

    slice_mm: tuple[float, ...] = (1.5, 2.0, 3.0, 4.0, 5.0)
    pixel_mm: tuple[float, float] = (1.45, 1.7)
    matrix: int = 256
    z_cover_mm: tuple[float, float] = (200.0, 320.0)
    lesion_fraction: float = 0.6
    extra_noise_hu: tuple[float, float] = (0.0, 0.0)  # added on top of the phantom's own noise

    def __post_init__(self) -> None:
        if not self.slice_mm or min(self.slice_mm) <= 0:
            raise ValueError(f"slice_mm must list positive spacings, got {self.slice_mm}")
        if not 0.0 <= self.lesion_fraction <= 1.0:
            raise ValueError(f"lesion_fraction must lie in [0, 1], got {self.lesion_fraction}")


TRAIN_SETTINGS = ScanSettings()
# Held out: other slice spacings, finer pixels, a larger matrix, more noise, half positives.
HELD_OUT_SETTINGS = ScanSettings(
    slice_mm=(1.75, 2.5, 3.75), pixel_mm=(1.25, 1.4), matrix=288, z_cover_mm=(200.0, 280.0),
    lesion_fraction=0.5, extra_noise_hu=(0.0, 8.0),
)


# Each set of phantoms has its own run of seeds, so that no phantom serves two sets: training
# set s starts at 1,000,000 (s + 1) and its validation set 500,000 further on; held-out set s
# starts at 900,000,000 + 1,000 s, past every training seed this allows.
_TRAINING_SETS, _HELD_OUT_SETS = 899, 100_000
_TRAINING_ROOM, _HELD_OUT_ROOM = 500_000, 1000
# The engine builder's accuracy gate draws its phantoms from the run of training set 89, which
# is therefore refused for training.
GATE_TRAINING_SET = 89


def training_seeds(seed: int, cases: int) -> list[int]:
    """The phantoms training set ``seed`` learns from."""
    _refuse_gate_set(seed)
    return _run(1_000_000 * (seed + 1), seed, _TRAINING_SETS, cases, _TRAINING_ROOM, "training")


def validation_seeds(seed: int, cases: int) -> list[int]:
    """The phantoms training set ``seed`` is calibrated and judged on."""
    _refuse_gate_set(seed)
    return _run(1_000_000 * (seed + 1) + _TRAINING_ROOM, seed, _TRAINING_SETS, cases, _TRAINING_ROOM,
                "validation")


def held_out_seeds(seed: int, cases: int) -> list[int]:
    """The phantoms of held-out set ``seed``: drawn with :data:`HELD_OUT_SETTINGS`, far from
    every training and validation seed."""
    return _run(900_000_000 + _HELD_OUT_ROOM * seed, seed, _HELD_OUT_SETS, cases, _HELD_OUT_ROOM,
                "held-out")


def gate_seeds() -> range:
    """The seeds the engine gate draws its phantoms from, in order (it skips some to balance
    lesion and no lesion): training set :data:`GATE_TRAINING_SET`'s run, after its first seed."""
    start = 1_000_000 * (GATE_TRAINING_SET + 1)
    return range(start + 1, start + _TRAINING_ROOM)


def _refuse_gate_set(seed: int) -> None:
    if seed == GATE_TRAINING_SET:
        raise ValueError(f"training set {seed} is reserved: its seeds are the engine gate's phantoms")


def _run(start: int, seed: int, sets: int, cases: int, room: int, kind: str) -> list[int]:
    if not 0 <= seed < sets:
        raise ValueError(f"a {kind} set's seed lies in 0 to {sets - 1}, not {seed}")
    if not 0 <= cases < room:
        raise ValueError(f"a {kind} set holds 0 to {room - 1} phantoms, not {cases}")
    return [start + i for i in range(cases)]


def phantom_volume(phantom: Phantom, name: str = "phantom") -> Volume:
    """A phantom as the loader would hand it over: HU with the phantom's affine."""
    uids = tuple(f"{name}.{k}" for k in range(phantom.hu.shape[0]))
    return Volume(hu=phantom.hu, affine=phantom.affine, slice_uids=uids)


def draw_case(seed: int, settings: ScanSettings = TRAIN_SETTINGS) -> tuple[Volume, Phantom]:
    """One synthetic scan, fully determined by ``seed`` and ``settings``."""
    rng = np.random.default_rng(seed)
    lesion = bool(rng.random() < settings.lesion_fraction)
    spec = sample_spec(rng, lesion=lesion)
    slice_mm = float(rng.choice(settings.slice_mm))
    pixel_mm = float(rng.uniform(*settings.pixel_mm))
    z_cover = float(rng.uniform(*settings.z_cover_mm))
    shape = (max(8, round(z_cover / slice_mm)), settings.matrix, settings.matrix)
    phantom = render(spec, shape_kji=shape, spacing_kji=(slice_mm, pixel_mm, pixel_mm),
                     z_center_mm=spec.scan_center_z_mm + float(rng.uniform(-20, 20)))
    lo, hi = settings.extra_noise_hu
    if hi > 0:
        sigma = float(rng.uniform(lo, hi))
        noisy = phantom.hu + rng.normal(0.0, sigma, phantom.hu.shape).astype(np.float32)
        phantom = Phantom(hu=noisy, labels=phantom.labels, organs=phantom.organs,
                          spacing_kji=phantom.spacing_kji, origin_lps=phantom.origin_lps,
                          spec=phantom.spec, lesion_center_kji=phantom.lesion_center_kji,
                          lesion_diameter_mm=phantom.lesion_diameter_mm,
                          lesion_location=phantom.lesion_location)
    return phantom_volume(phantom, f"case{seed}"), phantom


def render_pool(workers: int) -> Pool:
    """Processes that render phantoms, one thread each. A phantom renders and cuts fastest on
    one thread (1.0 s, against 2.3 s with torch's default of 16 on a 16-core machine), and
    workers that each start as many threads as there are cores swamp them: 14 such workers on
    16 cores took about 25 s a phantom."""
    return multiprocessing.get_context("spawn").Pool(workers, initializer=_one_thread)


def _one_thread() -> None:
    import torch  # the workers import it anyway, to cut phantoms onto the networks' grids

    torch.set_num_threads(1)


# The probe is the whole lesion, or where it cannot be moved about the gland whole, the
# lesion within the first of these radii (mm) of its centre that can.
CONSPICUITY_PROBE_MM = (10.0, 7.5, 5.0)
CONSPICUITY_PLACEMENTS = 150


def lesion_conspicuity(phantom: Phantom, seed: int = 0) -> float | None:
    """How plainly the lesion stands out for an observer told where it is: the gland's mean HU
    minus the lesion's, in standard deviations of the same difference with the lesion's shape
    moved to random places in the normal gland of the same scan (noise, partial volume and
    texture included). Under about 3 the lesion is hardly told from normal gland even at its
    known position; a detector that must also search for it will mostly miss it. None when
    there is no lesion, or no room in the gland for even its central 5 mm."""
    if phantom.lesion_center_kji is None:
        return None
    # All of it happens in the gland's bounding box: the scan around it plays no part.
    inside = phantom.labels > 0
    box = tuple(slice(int(np.argmax(a)), len(a) - int(np.argmax(a[::-1])))
                for a in (inside.any(axis=(1, 2)), inside.any(axis=(0, 2)), inside.any(axis=(0, 1))))
    labels, hu = phantom.labels[box], phantom.hu[box]
    spacing = np.asarray(phantom.spacing_kji)
    lesion = np.argwhere(labels == 2)
    centre = np.asarray(phantom.lesion_center_kji) - [b.start for b in box]
    near = np.linalg.norm((lesion - centre) * spacing, axis=1)
    gland = labels == 1
    gland_mean = float(hu[gland].mean())
    depth = ndimage.distance_transform_edt(np.pad(gland, 1), sampling=spacing)[1:-1, 1:-1, 1:-1]
    rng = np.random.default_rng(seed)
    for radius in (np.inf, *CONSPICUITY_PROBE_MM):
        core = lesion[near <= radius]
        if not len(core):
            return None
        anchor = np.rint(core.mean(axis=0)).astype(int)
        reach = float(np.linalg.norm((core - anchor) * spacing, axis=1).max())
        places = np.argwhere(depth > reach)  # deep enough in the gland for the whole probe
        null = []
        for place in places[rng.permutation(len(places))[:2 * CONSPICUITY_PLACEMENTS]]:
            moved = core + (place - anchor)
            if gland[tuple(moved.T)].all():  # the depth is measured to voxel centres: check
                null.append(gland_mean - float(hu[tuple(moved.T)].mean()))
            if len(null) == CONSPICUITY_PLACEMENTS:
                break
        if len(null) >= 20:
            contrast = gland_mean - float(hu[tuple(core.T)].mean())
            return (contrast - float(np.mean(null))) / max(float(np.std(null)), 1e-6)
    return None
