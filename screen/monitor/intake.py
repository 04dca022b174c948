"""What a sweep measures of each series' input, for monitoring across sweeps: the aorta's HU
and the contrast phase it implies, and the gland's HU the detector windowed from.

Measured on the worker while the volume is in memory and stored in the worklist row, so that
`screen monitor` compares sweeps from their worklists alone and never reads pixels again.

The aorta is found without a segmentation, from anatomy every abdominal CT shares: in the
slices through the pancreas, it is the brightest compact soft-tissue region just in front of
the vertebral body, on or left of the midline. Its HU separates the phases well enough to see
a protocol change: blood is about 40 HU without contrast, 130-230 HU in the portal venous
phase and above that in the arterial (pancreatic) phase.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from screen.detect.detector import Analysis
from screen.records import Volume

logger = logging.getLogger(__name__)

BONE_HU = 500.0  # cortical bone: the vertebral body's rim
SPINE_MM = 60.0  # a vertebra's pieces lie this close to its largest
BODY_HU = -300.0
ROI_FRONT_MM = (2.0, 35.0)  # in front of the vertebral body's anterior edge
ROI_SIDE_MM = (-15.0, 35.0)  # right (-) to left (+) of the spine's centre
BLOOD_POOL_MM = 8.0  # the region averaged: smaller than any aorta, larger than noise
SLAB = 5  # slices through the middle of the gland
NON_CONTRAST_BELOW_HU = 100.0
ARTERIAL_ABOVE_HU = 230.0


@dataclass(frozen=True, slots=True)
class Intake:
    aorta_hu: float | None
    contrast_phase: str | None  # non_contrast, portal_venous, arterial; None unmeasured
    pancreas_hu: float | None


def contrast_phase(aorta_hu: float | None) -> str | None:
    if aorta_hu is None:
        return None
    if aorta_hu < NON_CONTRAST_BELOW_HU:
        return "non_contrast"
    return "portal_venous" if aorta_hu <= ARTERIAL_ABOVE_HU else "arterial"


def measure_intake(volume: Volume, analysis: Analysis) -> Intake:
    """The series' aorta HU (and phase) at the gland's level, and the gland's own HU."""
    slices = _gland_slices(volume, analysis)
    aorta = aorta_hu(volume.hu, volume.spacing, slices)
    gland = analysis.gland_hu
    return Intake(aorta, contrast_phase(aorta), None if gland is None else round(float(gland), 1))


def _gland_slices(volume: Volume, analysis: Analysis) -> list[int]:
    n = volume.hu.shape[0]
    centre = n // 2
    if analysis.segment_grid is not None and analysis.pancreas_mask is not None:
        found = np.argwhere(np.asarray(analysis.pancreas_mask, bool))
        if len(found):
            centre = int(np.clip(round(float(analysis.segment_grid.to_volume(found.mean(axis=0))[0])), 0, n - 1))
    half = SLAB // 2
    return list(range(max(0, centre - half), min(n, centre + half + 1)))


def aorta_hu(hu: np.ndarray, spacing_kji: tuple[float, float, float], slices: list[int]) -> float | None:
    """Median over ``slices`` of the aorta's HU on each (None when no slice shows a spine)."""
    _, sj, si = spacing_kji
    values = [v for k in slices if (v := _aorta_on_slice(np.asarray(hu[k], np.float32), sj, si)) is not None]
    return round(float(np.median(values)), 1) if values else None


def _aorta_on_slice(image: np.ndarray, sj: float, si: float) -> float | None:
    body = image > BODY_HU
    if not body.any():
        return None
    body_j, body_i = np.argwhere(body).mean(axis=0)
    bone = image > BONE_HU
    labels, count = ndimage.label(bone)
    pieces = []
    for n, where in enumerate(ndimage.find_objects(labels), start=1):
        part = labels[where] == n
        pieces.append((part, where, np.argwhere(part).mean(axis=0) + [where[0].start, where[1].start]))
    # The spine: the largest bone near the midline and not in front of the body's centre, with
    # every piece of bone close to it (a vertebra's rim falls apart into pieces at 4 mm).
    midline = [p for p in pieces if abs(p[2][1] - body_i) * si < 40.0 and (p[2][0] - body_j) * sj > -20.0]
    if not midline:
        return None
    seed = max(midline, key=lambda p: int(p[0].sum()))[2]
    spine = np.zeros_like(bone)
    for part, where, centre in pieces:
        if np.hypot((centre[0] - seed[0]) * sj, (centre[1] - seed[1]) * si) < SPINE_MM:
            spine[where] |= part
    if not spine.any():
        return None
    pixels = np.argwhere(spine)
    ci = pixels[:, 1].mean()
    front = pixels[np.abs(pixels[:, 1] - ci) * si < 15.0][:, 0].min()  # the vertebral body's front
    j0, j1 = max(0, int(front - ROI_FRONT_MM[1] / sj)), int(front - ROI_FRONT_MM[0] / sj) + 1
    i0, i1 = max(0, int(ci + ROI_SIDE_MM[0] / si)), int(ci + ROI_SIDE_MM[1] / si) + 1
    roi = image[j0:j1, i0:i1]
    if roi.size == 0:
        return None
    # Leave out bone, the marrow its rim encloses, and a few mm around: they would read as
    # contrast.
    step = max(1, round(4.0 / min(sj, si)))
    solid = ndimage.binary_fill_holes(ndimage.binary_closing(bone, iterations=step))
    near_bone = ndimage.binary_dilation(solid, iterations=step)[j0:j1, i0:i1]
    usable = (~near_bone & (roi > -100.0)).astype(np.float32)
    size = (max(1, round(BLOOD_POOL_MM / sj)), max(1, round(BLOOD_POOL_MM / si)))
    share = ndimage.uniform_filter(usable, size=size, mode="constant")
    pooled = ndimage.uniform_filter(roi * usable, size=size, mode="constant") / np.maximum(share, 1e-6)
    whole = share > 0.99  # every pixel of the window usable
    return float(pooled[whole].max()) if whole.any() else None
