"""Synthetic abdominal CT phantoms with a known pancreas and, when asked, a known lesion.

A phantom is drawn in two steps. ``sample_spec`` draws everything that varies between
patients (body habitus, organ placement, the shape of the pancreas, contrast phase, noise, an
optional lesion) into a frozen ``PhantomSpec``; ``render`` turns a spec into voxels on any
grid. Anatomy is placed in patient millimetres (DICOM LPS: x towards the patient's left, y
towards posterior, z towards the head), so two grids of different spacing show the same
patient. The pancreas sits near z = 0; the liver dome lies 110-150 mm above it and the iliac
crest 130-190 mm below.

This module assembles a phantom and is where its public names are imported from; the parts live
beside it: ``anatomy`` (organ codes, phases), ``spec`` (the frozen records), ``sampling``
(drawing a spec), ``drawing`` (grids and shapes), ``painters`` (one per organ system),
``attenuation`` (HU and noise) and ``regions`` (head, chest and pelvis distractors).

Arrays follow ``screen.records.Volume``: ``hu[k, j, i]`` with i towards patient left, j
towards posterior, k from feet to head.

Organ labels written to ``Phantom.organs`` (``ORGAN_LABELS`` holds the same table):

====  ===================  ====  ===================
code  structure            code  structure
====  ===================  ====  ===================
0     air outside          14    artery (aorta, SMA, iliacs)
1     subcutaneous fat     15    inferior vena cava
2     muscle               16    portal, splenic, SMV veins
3     visceral fat         17    cortical bone
4     liver                18    cancellous bone
5     gallbladder          19    spinal canal
6     spleen               20    lung
7     kidney cortex        21    pancreas head
8     kidney medulla       22    pancreas body
9     stomach wall         23    pancreas tail
10    bowel wall           24    main pancreatic duct
11    luminal fluid        25    pancreatic lesion
12    luminal gas          26    heart
13    oral contrast        27    intervertebral disc
====  ===================  ====  ===================
"""

from __future__ import annotations

import logging

import numpy as np

from screen.synth.anatomy import CODE, LESION_CODE, ORGAN_LABELS, PANCREAS_CODES, Phase
from screen.synth.attenuation import attenuation
from screen.synth.drawing import check_grid, make_grid, paint_ellipsoid, paint_tube
from screen.synth.painters import (
    paint_body,
    paint_lesion,
    paint_lungs,
    paint_pancreas,
    paint_ribs_and_pelvis,
    paint_spine,
    paint_stomach,
    paint_vessels,
)
from screen.synth.regions import REGIONS, render_region
from screen.synth.sampling import location_of, pancreas_centerline, pancreas_radius, sample_spec
from screen.synth.spec import Phantom, PhantomSpec

logger = logging.getLogger(__name__)

__all__ = [
    "LESION_CODE", "ORGAN_LABELS", "PANCREAS_CODES", "REGIONS", "Phantom", "PhantomSpec", "Phase",
    "location_of", "pancreas_centerline", "pancreas_radius", "render", "render_region", "sample_spec",
]


def render(spec: PhantomSpec, *, shape_kji: tuple[int, int, int],
           spacing_kji: tuple[float, float, float], z_center_mm: float | None = None) -> Phantom:
    """Voxelise ``spec`` on a grid centred in-plane on the body and in z on ``z_center_mm``
    (default ``spec.scan_center_z_mm``), with CT-like noise and partial-volume blur."""
    if not isinstance(spec, PhantomSpec):
        raise TypeError(f"spec must be a PhantomSpec, got {type(spec).__name__}")
    shape_kji = tuple(int(n) for n in shape_kji)  # type: ignore[assignment]
    spacing_kji = tuple(float(s) for s in spacing_kji)  # type: ignore[assignment]
    check_grid(shape_kji, spacing_kji)
    z_center = spec.scan_center_z_mm if z_center_mm is None else float(z_center_mm)
    grid = make_grid(shape_kji, spacing_kji, z_center)
    organs = np.zeros(shape_kji, dtype=np.uint8)

    cavity = paint_body(organs, grid, spec)
    paint_lungs(organs, grid, spec, cavity)
    for e, code in ((spec.liver, "liver"), (spec.liver_left_lobe, "liver"),
                    (spec.spleen, "spleen")):
        paint_ellipsoid(organs, grid, e, CODE[code], cavity)
    if spec.gallbladder is not None:
        paint_ellipsoid(organs, grid, spec.gallbladder, CODE["gallbladder"], cavity)
    paint_stomach(organs, grid, spec, cavity)
    for tube in spec.bowel:
        paint_tube(organs, grid, tube, CODE["bowel_wall"], cavity)
    for kidney in (spec.kidney_right, spec.kidney_left):
        paint_ellipsoid(organs, grid, kidney, CODE["kidney_cortex"])
        paint_ellipsoid(organs, grid, kidney, CODE["kidney_medulla"], scale=0.62)
    paint_tube(organs, grid, spec.duodenum, CODE["bowel_wall"], cavity)
    paint_spine(organs, grid, spec)
    paint_ribs_and_pelvis(organs, grid, spec)
    paint_vessels(organs, grid, spec)
    paint_pancreas(organs, grid, spec.pancreas)
    if spec.lesion is not None:
        paint_lesion(organs, grid, spec.lesion)

    hu = attenuation(organs, spec, spacing_kji)
    labels = np.zeros(shape_kji, dtype=np.uint8)
    labels[np.isin(organs, PANCREAS_CODES)] = 1
    labels[organs == LESION_CODE] = 2

    origin = (float(grid.x[0]), float(grid.y[0]), float(grid.z[0]))
    centre_kji = diameter = location = None
    if spec.lesion is not None and np.any(labels == 2):
        cx, cy, cz = spec.lesion.center_mm
        centre_kji = ((cz - origin[2]) / spacing_kji[0], (cy - origin[1]) / spacing_kji[1],
                      (cx - origin[0]) / spacing_kji[2])
        diameter, location = spec.lesion.diameter_mm, spec.lesion.location
    elif spec.lesion is not None:
        logger.debug("lesion at %s lies outside the rendered range", spec.lesion.center_mm)
    return Phantom(hu=hu, labels=labels, organs=organs, spacing_kji=spacing_kji,  # type: ignore[arg-type]
                   origin_lps=origin, spec=spec, lesion_center_kji=centre_kji,
                   lesion_diameter_mm=diameter, lesion_location=location)
