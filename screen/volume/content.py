"""A cheap look at the pixels, for series whose tags do not say they show the abdomen.

``looks_abdominal`` measures three things in the middle third of the volume along the
patient's head-foot axis (where an abdominal CT shows the upper abdomen and an
abdomen-pelvis CT the mid abdomen), on a grid coarsened to about 3 mm:

1. the body's cross-section, as the diameter of a circle of the same area: an adult abdomen
   is 20-45 cm across, a head 14-19 cm; anything under ``MIN_BODY_DIAMETER_CM`` is a head,
   a limb or a phantom piece, not an abdomen;
2. the fraction of the body (holes filled) that is air or lung (below -400 HU): the lungs
   fill a third or more of a chest slice, while bowel gas rarely passes a tenth of the
   abdomen; above ``MAX_AIR_FRACTION`` the middle of the scan is chest;
3. the fraction of the body that is soft tissue of solid organs and muscle (0-120 HU): the
   liver, spleen, kidneys and muscle make up well over a quarter of an abdominal section;
   below ``MIN_SOFT_TISSUE_FRACTION`` the section is mostly fat, air or bone.

It is a screen, not a classifier: it says whether the content contradicts "abdomen", and the
reason names the numbers so that a person can judge. It can be wrong for children (small
bodies), scans centred on the lung bases, and heavily cropped fields of view.
"""

from __future__ import annotations

import logging

import numpy as np
from scipy import ndimage

from screen import geometry
from screen.records import Volume

logger = logging.getLogger(__name__)

BODY_HU = -500.0  # skin and everything denser: the body outline
AIR_HU = -400.0  # lung parenchyma and gas
SOFT_TISSUE_HU = (0.0, 120.0)
MIN_BODY_DIAMETER_CM = 19.0
MAX_AIR_FRACTION = 0.2
MIN_SOFT_TISSUE_FRACTION = 0.25
_TARGET_PIXEL_MM = 3.0


def looks_abdominal(volume: Volume) -> tuple[bool, str]:
    """Whether the middle of the volume looks like an abdomen, and the numbers that say so."""
    if not isinstance(volume, Volume):
        raise TypeError(f"looks_abdominal needs a Volume, got {type(volume).__name__}")
    middle, pixel_area_mm2 = _middle_sections(volume)
    body = np.stack([_body(section) for section in middle])
    body_pixels = body.sum(axis=(1, 2))
    if not body_pixels.any():
        return False, "no body found in the middle slices (nothing denser than -500 HU)"
    area_cm2 = float(np.median(body_pixels)) * pixel_area_mm2 / 100.0
    diameter_cm = 2.0 * np.sqrt(area_cm2 / np.pi)
    inside = middle[body]
    air = float(np.mean(inside < AIR_HU))
    soft = float(np.mean((inside >= SOFT_TISSUE_HU[0]) & (inside <= SOFT_TISSUE_HU[1])))
    numbers = (f"body {diameter_cm:.0f} cm across, {air:.0%} air or lung and {soft:.0%} "
               f"soft tissue in the middle slices")
    if diameter_cm < MIN_BODY_DIAMETER_CM:
        return False, f"{numbers}: too small for an adult abdomen (head, limb or partial view?)"
    if air > MAX_AIR_FRACTION:
        return False, f"{numbers}: too much air for an abdomen (chest?)"
    if soft < MIN_SOFT_TISSUE_FRACTION:
        return False, f"{numbers}: too little solid-organ soft tissue for an abdomen"
    return True, f"{numbers}: consistent with an abdomen"


def _middle_sections(volume: Volume) -> tuple[np.ndarray, float]:
    """Axial sections through the middle third along S, coarsened in-plane to about 3 mm."""
    hu = volume.hu
    # The array axis (of k, j, i) nearest the head-foot direction.
    axis = 2 - int(np.argmax(np.abs(geometry.unit_axes(volume.affine)[2])))
    sections = np.moveaxis(hu, axis, 0)
    n = sections.shape[0]
    lo, hi = n // 3, max(n // 3 + 1, (2 * n) // 3)
    # At most 9 sections: enough to be robust, cheap on a 600-slice series.
    picks = np.unique(np.linspace(lo, hi - 1, num=min(9, hi - lo)).round().astype(int))
    spacing_kji = volume.spacing
    in_plane = [spacing_kji[a] for a in range(3) if a != axis]
    strides = [max(1, round(_TARGET_PIXEL_MM / s)) for s in in_plane]
    middle = sections[picks][:, ::strides[0], ::strides[1]].astype(np.float32, copy=False)
    return middle, in_plane[0] * strides[0] * in_plane[1] * strides[1]


def _body(section: np.ndarray) -> np.ndarray:
    """The largest connected region denser than fat's lower bound, holes filled."""
    dense = section > BODY_HU
    labels, count = ndimage.label(dense)
    if count == 0:
        return dense
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return ndimage.binary_fill_holes(labels == int(np.argmax(sizes)))
