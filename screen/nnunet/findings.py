"""From an imported model's class probabilities to a Detection: the pancreas, the lesion
candidates (as the PANORAMA baseline extracts them), the score, the lesion's centre, size and
place in the gland."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from screen.detect.postprocess import feret_diameter_mm, largest, location_in_mask, voxels_of
from screen.nnunet.card import NnunetCard
from screen.records import Detection, Volume

logger = logging.getLogger(__name__)

CANDIDATE_FRACTION = 2.5  # a candidate holds the voxels above its peak / 2.5 ...
MIN_CANDIDATE_VOXELS = 10  # ... and more than this many of them
MIN_PANCREAS_ML = 1.0
_FULL = np.ones((3, 3, 3), bool)
_VOXELS_A_BLOCK = 1 << 20


@dataclass(frozen=True, slots=True, eq=False)
class Candidates:
    """Lesion candidates: a map with each candidate filled with its peak, and the most
    suspicious one (the first found, at the highest peak)."""

    map: np.ndarray  # float32, 0 outside candidates
    peak: float  # the score: the most suspicious candidate's peak probability (0 if none)
    voxels: np.ndarray | None  # (n, 3) voxels of that candidate: the lesion reported


def class_labels(probabilities: np.ndarray) -> np.ndarray:
    """``probabilities.argmax(axis=0)`` as uint8, the first class winning ties as argmax does,
    without argmax's int64 map (eight bytes a voxel, as large as two class maps)."""
    if len(probabilities) > 256:
        raise ValueError(f"at most 256 classes fit a uint8 label map, got {len(probabilities)}")
    labels = np.zeros(probabilities.shape[1:], np.uint8)
    best = probabilities[0].copy()
    better = np.empty(labels.shape, bool)
    for c in range(1, len(probabilities)):
        np.greater(probabilities[c], best, out=better)
        labels[better] = c
        np.maximum(best, probabilities[c], out=best)
    return labels


def bounding_box(mask: np.ndarray) -> tuple[slice, ...] | None:
    """The smallest box holding every nonzero voxel of ``mask``, or None if there is none."""
    box = []
    for axis in range(mask.ndim):
        hits = np.flatnonzero(np.any(mask, axis=tuple(a for a in range(mask.ndim) if a != axis)))
        if not len(hits):
            return None
        box.append(slice(int(hits[0]), int(hits[-1]) + 1))
    return tuple(box)


def largest_region(mask: np.ndarray) -> np.ndarray:
    """:func:`screen.detect.postprocess.largest`, labelling only the box around the mask (an
    organ is a small part of the series, and the labels are four bytes a voxel)."""
    box = bounding_box(mask)
    if box is None:
        return mask.astype(bool)
    out = np.zeros(mask.shape, bool)
    out[box] = largest(mask[box])
    return out


def lesion_candidates(prob: np.ndarray, fraction: float = CANDIDATE_FRACTION,
                      min_voxels: int = MIN_CANDIDATE_VOXELS) -> Candidates:
    """Candidates by dynamic thresholding, as the PANORAMA baseline extracts them: the
    region above max/``fraction`` (26-connected) around the highest voxel becomes a candidate
    filled with that maximum if it has more than ``min_voxels`` voxels; it is then removed and
    the next highest voxel tried, until no probability is left above the first threshold."""
    prob = np.asarray(prob)
    out = np.zeros(prob.shape, np.float32)
    # Every threshold is above 0, so all candidates lie in the box of positive voxels: the
    # work (a copy, labels each pass) is done there only.
    box = bounding_box(prob > 0) if prob.size else None
    if box is None:
        return Candidates(out, 0.0, None)
    work = np.array(prob[box], dtype=np.float32)
    inner = out[box]
    floor = float(work.max()) / fraction
    best_peak, best_voxels = 0.0, None
    while True:
        peak = float(work.max())
        if peak <= floor or peak <= 0:
            break
        labelled, _ = ndimage.label(work > peak / fraction, structure=_FULL)
        seed = np.unravel_index(int(work.argmax()), work.shape)
        region = labelled == labelled[seed]
        del labelled
        if int(region.sum()) > min_voxels:
            inner[region] = peak
            if best_voxels is None:
                best_peak = peak
                best_voxels = voxels_of(region)
                best_voxels += np.array([b.start for b in box])  # in place: 24 bytes a voxel
        work[region] = 0
    return Candidates(out, best_peak, best_voxels)


def surface_voxels(voxels: np.ndarray) -> np.ndarray:
    """The voxels of a region with a neighbour outside it (6-connected). The widest distance
    across a region runs between two of its convex hull's corners, which are all on its
    surface, so it is the same measured on these; a large region's hull over every voxel
    would take gigabytes."""
    lo = voxels.min(axis=0)
    mask = np.zeros(tuple(voxels.max(axis=0) - lo + 1), bool)
    for start in range(0, len(voxels), _VOXELS_A_BLOCK):  # indices of a block, not of all at once
        mask[tuple((voxels[start:start + _VOXELS_A_BLOCK] - lo).T)] = True
    mask &= ~ndimage.binary_erosion(mask, border_value=0)
    surface = voxels_of(mask)
    surface += lo
    return surface


def findings(volume: Volume, card: NnunetCard, probabilities: np.ndarray,
             lesion_prob: np.ndarray | None = None) -> tuple[Detection, np.ndarray | None, np.ndarray | None]:
    """The Detection for class ``probabilities`` (C, K, J, I) on the volume's grid, the
    pancreas mask, and the (n, 3) voxels of the lesion the Detection reports, if any (they
    travel on, so that review images and the DICOM Segmentation outline that region).

    ``lesion_prob`` replaces the lesion class's probability (a recipe may have masked it)."""
    spacing = volume.spacing
    voxel_ml = float(np.prod(spacing)) / 1000.0
    if lesion_prob is None:
        lesion_prob = (probabilities[card.index(card.lesion_label)] if card.lesion_label
                       else np.zeros(probabilities.shape[1:], np.float32))
    found = lesion_candidates(lesion_prob)
    # Only the reported candidate is kept, not the candidates' map; and a recipe's masked copy
    # of the lesion map is gone too, before the gland is found.
    raw, lesion = found.peak, found.voxels
    del lesion_prob, found
    pancreas = None
    if card.pancreas_label is not None:
        mask = class_labels(probabilities) == card.index(card.pancreas_label)
        mask = largest_region(mask)
        if mask.sum() * voxel_ml >= MIN_PANCREAS_ML:
            pancreas = mask
    score = card.calibration.score(raw) if card.calibration is not None else raw
    volume_ml = float(pancreas.sum() * voxel_ml) if pancreas is not None else 0.0
    if lesion is None:
        return Detection(float(np.clip(score, 0, 1)), pancreas is not None, volume_ml), pancreas, None
    centre = lesion.mean(axis=0)
    centre_lps = volume.to_lps(centre)
    location = None
    if pancreas is not None:
        location = location_in_mask(pancreas, volume.to_lps, centre_lps)
    detection = Detection(
        score=float(np.clip(score, 0, 1)), pancreas_found=pancreas is not None,
        pancreas_volume_ml=volume_ml,
        lesion_center_lps=tuple(float(v) for v in centre_lps),  # type: ignore[arg-type]
        lesion_diameter_mm=feret_diameter_mm(surface_voxels(lesion), spacing),
        lesion_location=location, key_slice=int(round(centre[0])),
    )
    return detection, pancreas, lesion
