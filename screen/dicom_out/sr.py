"""A flagged series' finding as a DICOM Comprehensive 3D SR (TID 1500 Measurement Report).

    Measurement Report (TID 1500), observer: the model as a device
      └─ Volumetric ROI group (TID 1411): finding "Lesion", site head/body/tail of pancreas,
           region: the lesion centre as an SCOORD3D POINT in the series' frame of reference,
           measurements: diameter (mm), suspicion score (no units), each naming the model

A series flagged on its score alone, without a lesion to point at, gets a group with the
score and the pancreas as finding site, and no region.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
from highdicom.sr import (
    AlgorithmIdentification,
    Comprehensive3DSR,
    DeviceObserverIdentifyingAttributes,
    FindingSite,
    Measurement,
    MeasurementReport,
    MeasurementsAndQualitativeEvaluations,
    ObservationContext,
    ObserverContext,
    SourceSeriesForSegmentation,
    TrackingIdentifier,
    VolumeSurface,
    VolumetricROIMeasurementsAndQualitativeEvaluations,
)
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

from screen.dicom_out import codes as c
from screen.dicom_out.sources import (
    MANUFACTURER,
    SR_SERIES_NUMBER,
    declare_private_codes,
    output_path,
    read_sources,
    save,
    stable_uid,
)
from screen.records import Detection, Series

logger = logging.getLogger(__name__)


def write_sr(out_dir: Path, series: Series, detection: Detection, model_name: str,
             model_version: str, score: float, *, segmentation: Path | None = None,
             headers: list[Dataset] | None = None) -> Path:
    """Write ``<out_dir>/<series key>.sr.dcm`` and return its path.

    ``segmentation``: the series' SEG file, which the SR then lists in its evidence beside
    the source images, so a viewer that opens the report finds the outlines. ``headers``:
    the source instances' headers, when they were not read from files.
    """
    if not isinstance(series, Series):
        raise TypeError(f"write_sr needs a Series, got {type(series).__name__}")
    if not isinstance(detection, Detection):
        raise TypeError(f"write_sr needs a Detection, got {type(detection).__name__}")
    if not model_name or not model_version:
        raise ValueError(f"the SR must name the model and its version, got {model_name!r} {model_version!r}")
    if not (0.0 <= score <= 1.0) or math.isnan(score):
        raise ValueError(f"score must be a probability, got {score}")
    frame_of_reference = series.first.frame_of_reference_uid
    if detection.lesion_center_lps is not None and not frame_of_reference:
        raise ValueError(f"series {series.key!r} has no FrameOfReferenceUID to place the lesion in")

    sources = read_sources(series, headers)
    evidence = list(sources)
    if segmentation is not None:
        evidence.append(pydicom.dcmread(segmentation, stop_before_pixels=True))
    algorithm = AlgorithmIdentification(name=model_name, version=model_version)
    device = ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=DeviceObserverIdentifyingAttributes(
            uid=stable_uid("device", model_name, model_version), name=model_name,
            manufacturer_name=MANUFACTURER, model_name=f"{model_name} {model_version}"),
    )
    measurements = [Measurement(name=c.SCORE, value=float(score), unit=c.NO_UNITS,
                                algorithm_id=algorithm)]
    tracking = TrackingIdentifier(uid=stable_uid("lesion", series.key, model_name, model_version),
                                  identifier="Most suspicious pancreatic lesion")
    if detection.lesion_center_lps is None:
        group = MeasurementsAndQualitativeEvaluations(
            tracking_identifier=tracking, finding_type=c.LESION, algorithm_id=algorithm,
            finding_sites=[FindingSite(c.PANCREAS)], measurements=measurements)
    else:
        site = c.SITE[detection.lesion_location] if detection.lesion_location else c.PANCREAS
        measurements.insert(0, Measurement(name=c.DIAMETER, value=float(detection.lesion_diameter_mm),
                                           unit=c.MILLIMETRE, algorithm_id=algorithm))
        centre = VolumeSurface(
            graphic_type=hd.sr.GraphicTypeValues3D.POINT,
            graphic_data=np.asarray([detection.lesion_center_lps], dtype=np.float64),
            frame_of_reference_uid=frame_of_reference,
            source_series=SourceSeriesForSegmentation(series.first.series_instance_uid),
        )
        group = VolumetricROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=tracking, referenced_volume_surface=centre, finding_type=c.LESION,
            algorithm_id=algorithm, finding_sites=[FindingSite(site)], measurements=measurements)
    report = MeasurementReport(
        observation_context=ObservationContext(observer_device_context=device),
        procedure_reported=c.PROCEDURE, imaging_measurements=[group], title=c.REPORT_TITLE)
    sr = Comprehensive3DSR(
        evidence=evidence, content=report,
        series_instance_uid=stable_uid("sr-series", series.key, model_name, model_version),
        series_number=SR_SERIES_NUMBER,
        sop_instance_uid=stable_uid("sr", series.key, model_name, model_version),
        instance_number=1, manufacturer=MANUFACTURER, is_complete=True,
        series_description=f"Pancreas screening {model_name} {model_version}"[:64],
    )
    declare_private_codes(sr)
    path = save(sr, output_path(out_dir, series, "sr"))
    logger.info("wrote SR for series %s to %s", series.key, path)
    return path
