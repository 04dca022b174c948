"""The detector's pancreas and lesion as a DICOM Segmentation (BINARY) over the source images.

The masks live on the volume's voxels, which are the source pixels turned to L-P-S order
(and, for a tilted or gapped series, resampled). The SEG must instead be laid frame by frame
over the source images as stored. So each source pixel is placed in patient space from its
own ImagePositionPatient, ImageOrientationPatient and PixelSpacing (``screen.geometry``),
carried into the volume's voxels (``Volume.from_lps``) and given the nearest voxel's label:
correct whatever turn, flip, tilt or slice order the loader applied.
"""

from __future__ import annotations

import logging
from pathlib import Path

import highdicom as hd
import numpy as np
from highdicom.seg import SegmentAlgorithmTypeValues, SegmentationTypeValues, SegmentDescription
from pydicom.dataset import Dataset

from screen import __version__, geometry
from screen.detect.detector import Analysis
from screen.detect.masks import Masks, volume_masks
from screen.dicom_out import codes as c
from screen.dicom_out.sources import (
    MANUFACTURER,
    SEG_SERIES_NUMBER,
    SOFTWARE_VERSION,
    declare_private_codes,
    output_path,
    read_sources,
    save,
    stable_uid,
)
from screen.records import Instance, Series, Volume

logger = logging.getLogger(__name__)


def write_seg(out_dir: Path, series: Series, volume: Volume, analysis: Analysis, *,
              model_name: str = "screen", model_version: str = __version__,
              headers: list[Dataset] | None = None) -> Path:
    """Write ``<out_dir>/<series key>.seg.dcm`` with segment 1 pancreas (the whole gland)
    and, when the detection has one, segment 2 lesion; return its path. ``headers``: the
    source instances' headers, when they were not read from files."""
    if not isinstance(series, Series):
        raise TypeError(f"write_seg needs a Series, got {type(series).__name__}")
    if not isinstance(volume, Volume):
        raise TypeError(f"write_seg needs a Volume, got {type(volume).__name__}")
    if not isinstance(analysis, Analysis):
        raise TypeError(f"write_seg needs an Analysis, got {type(analysis).__name__}")
    masks = volume_masks(volume, analysis)
    if not masks.pancreas.any():
        raise ValueError(f"series {series.key!r}: the detector found no pancreas to segment")
    with_lesion = bool(masks.lesion.any())
    frames = source_frames(series, volume, masks)
    if not with_lesion:
        frames = frames[..., :1]

    algorithm = hd.AlgorithmIdentificationSequence(name=model_name, family=c.NETWORK_FAMILY,
                                                   version=model_version)
    segments = [SegmentDescription(
        segment_number=1, segment_label="Pancreas",
        segmented_property_category=c.ANATOMICAL_STRUCTURE, segmented_property_type=c.PANCREAS,
        algorithm_type=SegmentAlgorithmTypeValues.AUTOMATIC, algorithm_identification=algorithm,
        tracking_uid=stable_uid("seg-pancreas", series.key, model_name, model_version),
        tracking_id="Pancreas", anatomic_regions=[c.ABDOMEN],
        display_color=hd.color.CIELabColor.from_rgb(*c.PANCREAS_RGB))]
    if with_lesion:
        segments.append(SegmentDescription(
            segment_number=2, segment_label="Suspected lesion",
            segmented_property_category=c.ABNORMAL_STRUCTURE, segmented_property_type=c.LESION,
            algorithm_type=SegmentAlgorithmTypeValues.AUTOMATIC, algorithm_identification=algorithm,
            tracking_uid=stable_uid("seg-lesion", series.key, model_name, model_version),
            tracking_id="Most suspicious pancreatic lesion", anatomic_regions=[c.PANCREAS],
            display_color=hd.color.CIELabColor.from_rgb(*c.LESION_RGB)))
    seg = hd.seg.Segmentation(
        source_images=read_sources(series, headers), pixel_array=frames,
        segmentation_type=SegmentationTypeValues.BINARY, segment_descriptions=segments,
        series_instance_uid=stable_uid("seg-series", series.key, model_name, model_version),
        series_number=SEG_SERIES_NUMBER,
        sop_instance_uid=stable_uid("seg", series.key, model_name, model_version),
        instance_number=1, manufacturer=MANUFACTURER,
        manufacturer_model_name=f"{model_name} {model_version}"[:64],
        software_versions=SOFTWARE_VERSION, device_serial_number="none",
        content_label="PANCREAS", content_description="Pancreas and suspected lesion",
        series_description=f"Pancreas segmentation {model_name} {model_version}"[:64],
    )
    declare_private_codes(seg)
    path = save(seg, output_path(out_dir, series, "seg"))
    logger.info("wrote SEG for series %s (%d frames) to %s", series.key, len(frames), path)
    return path


def source_frames(series: Series, volume: Volume, masks: Masks) -> np.ndarray:
    """Masks laid over the source frames: bool (frames, rows, columns, 2) in the order
    highdicom expects (instances as listed, each multi-frame file's frames in turn);
    channel 0 pancreas, channel 1 lesion."""
    multi = [i for i in series.instances if i.number_of_frames > 1]
    if multi and len(series.instances) > 1:
        raise ValueError(f"series {series.key!r} mixes multi-frame files with others; "
                         "a Segmentation can reference only one multi-frame source")
    labels = masks.pancreas.astype(np.uint8) | (masks.lesion.astype(np.uint8) << 1)
    frames = [_frame_labels(instance, position, labels, volume)
              for instance, _, position in geometry.frames(series.instances)]
    stacked = np.stack(frames)
    return np.stack([(stacked & 1) > 0, (stacked & 2) > 0], axis=-1)


def _frame_labels(instance: Instance, position: tuple[float, float, float], labels: np.ndarray,
                  volume: Volume) -> np.ndarray:
    """The label of the nearest volume voxel under every pixel of one source frame."""
    if instance.image_orientation is None or instance.pixel_spacing is None \
            or not instance.rows or not instance.columns:
        raise ValueError(f"{instance.path} lacks the geometry (orientation, spacing, size) to "
                         "place a segmentation frame")
    to_lps = geometry.affine(instance.image_orientation, position, instance.pixel_spacing,
                             np.zeros(3))
    r, cols = np.mgrid[0:instance.rows, 0:instance.columns]
    lps = cols[..., None] * to_lps[:3, 0] + r[..., None] * to_lps[:3, 1] + to_lps[:3, 3]
    kji = np.rint(volume.from_lps(lps)).astype(np.int64)
    shape = np.asarray(labels.shape)
    inside = np.all((kji >= 0) & (kji < shape), axis=-1)
    clipped = np.clip(kji, 0, shape - 1)
    values = labels[clipped[..., 0], clipped[..., 1], clipped[..., 2]]
    return np.where(inside, values, 0).astype(np.uint8)
