"""The sweep's tasks: what runs on the workers for one series.

They never raise for a bad series: its reason goes into the series' row. A series is one
task, on a CPU worker: loading, preprocessing and postprocessing stay there, and with GPU
workers only the networks' inputs leave it, through its detector's runners (see
screen.backends.service).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from screen import index as indexing
from screen import worklist
from screen.cluster import DetectorSpec, open_detector, worker_detector
from screen.metrics import is_flagged
from screen.pseudonym import Pseudonymizer
from screen.records import Series, Volume
from screen.worklist_row import WorklistRow

if TYPE_CHECKING:
    from screen.detect.detector import Detector
    from screen.dicomweb import PacsSource

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SeriesOutputs:
    """What a worker writes for a series besides its row; travels with every task."""

    threshold: float
    review_dir: Path | None = None
    dicom_out: Path | None = None
    pseudonym_key: bytes | None = None
    pacs: PacsSource | None = None  # where the pixels come from; None: the files

    def pseudonymizer(self) -> Pseudonymizer | None:
        return Pseudonymizer(self.pseudonym_key) if self.pseudonym_key else None


@dataclass(frozen=True, slots=True)
class LoadedVolume:
    """The series' volume, and how long loading it took."""

    volume: Volume
    seconds: float


@dataclass(frozen=True, slots=True)
class NotAbdominal:
    """The tags did not name the abdomen and the pixels do not show one."""

    reason: str
    seconds: float


@dataclass(frozen=True, slots=True)
class LoadFailed:
    """Why the series could not be loaded, in one line."""

    reason: str
    seconds: float


# What loading a series gave: its volume, or why there is none; each with how long it took.
Loaded = LoadedVolume | NotAbdominal | LoadFailed


def load_series(series: Series, confirm: bool, pacs: PacsSource | None = None) -> Loaded:
    """The series' volume, why its content rules it out, or why it could not be loaded."""
    from screen.volume import VolumeError, load_volume, looks_abdominal
    from screen.volume.decode import read_dataset

    start = time.perf_counter()
    try:
        volume = load_volume(series, read=pacs.reader(series) if pacs else read_dataset)
    except VolumeError as exc:
        return LoadFailed(f"could not be loaded: {exc}", time.perf_counter() - start)
    except Exception as exc:  # noqa: BLE001 - a strange file costs its series, not a traceback
        return LoadFailed(f"could not be loaded: {type(exc).__name__}: "
                          f"{' '.join(str(exc).split())}", time.perf_counter() - start)
    if confirm:
        abdominal, why = looks_abdominal(volume)
        if not abdominal:
            reason = f"no tag names the abdomen and the image does not show one: {why}"
            return NotAbdominal(reason, time.perf_counter() - start)
    return LoadedVolume(volume, time.perf_counter() - start)


def detect_series(series: Series, loaded: Loaded, outputs: SeriesOutputs) -> WorklistRow:
    """The series' worklist row; for a flagged series also its review images and DICOM."""
    from screen.detect.detector import analyse
    from screen.monitor.intake import measure_intake

    detector = worker_detector()
    producer = worklist.Producer(detector.card.name, detector.card.version,
                                 detector.package_sha256, detector.backend, detector.precision)
    pseudonymizer = outputs.pseudonymizer()
    if pseudonymizer is not None:
        indexing.observe_identity(pseudonymizer, series)

    def private(row: WorklistRow) -> WorklistRow:
        return pseudonymizer.pseudonymize_worklist_row(row) if pseudonymizer else row

    if isinstance(loaded, LoadFailed):
        return private(worklist.row(series, producer, error=loaded.reason,
                                    load_seconds=loaded.seconds))
    if isinstance(loaded, NotAbdominal):
        return private(worklist.row(series, producer, error=loaded.reason,
                                    status=worklist.REJECTED, load_seconds=loaded.seconds))
    volume = loaded.volume
    start = time.perf_counter()
    try:
        analysis = analyse(volume, detector)
    except Exception as exc:  # noqa: BLE001 - the reason goes into the row, not a traceback
        reason = f"detector failed: {type(exc).__name__}: {exc}"
        logger.info("series %s: %s", series.key, reason)
        return private(worklist.row(series, producer, error=reason, load_seconds=loaded.seconds))
    detect_seconds = time.perf_counter() - start
    detection = analysis.detection
    key_uid = volume.slice_uids[detection.key_slice] if detection.key_slice is not None else None
    by_path = {i.path: i.sop_instance_uid for i in series.instances}
    warnings = [pseudonymizer.pseudonymize_text(w) or "" for w in volume.warnings] \
        if pseudonymizer else list(volume.warnings)
    row = private(worklist.row(series, producer, detection, key_sop_instance_uid=key_uid,
                               warnings=warnings,
                               left_out=[by_path[p] for p in volume.left_out if p in by_path],
                               intake=measure_intake(volume, analysis),
                               load_seconds=loaded.seconds, detect_seconds=detect_seconds))
    if is_flagged(detection.score, outputs.threshold):
        _write_extras(series, volume, analysis, row, outputs)
    return row


def _write_extras(series: Series, volume: Volume, analysis, row: WorklistRow,
                  outputs: SeriesOutputs) -> None:
    """Review images and DICOM objects; a failure here is logged, never loses the row (the
    end of the sweep finds what is missing and tries again, see _fill_in_extras)."""
    card = worker_detector().card
    try:
        if outputs.review_dir is not None:
            from screen.review import render_series

            render_series(outputs.review_dir, series, volume, analysis, row)
        if outputs.dicom_out is not None:
            from screen.dicom_out import write_seg, write_sr

            # These go back into the PACS, so they keep the real identifiers.
            headers = outputs.pacs.headers(series) if outputs.pacs else None
            seg = None
            try:  # the SEG first, so that the SR can list it in its evidence
                seg = write_seg(outputs.dicom_out, series, volume, analysis,
                                model_name=card.name, model_version=card.version,
                                headers=headers)
            except ValueError as exc:  # no pancreas to outline: the SR goes alone
                logger.warning("no SEG for series %s: %s", series.key, exc)
            write_sr(outputs.dicom_out, series, analysis.detection, card.name, card.version,
                     analysis.detection.score, segmentation=seg, headers=headers)
    except Exception as exc:  # noqa: BLE001 - a missing picture must not lose the row
        logger.warning("could not write review images or DICOM for %s: %s: %s", series.key,
                    type(exc).__name__, exc)


def write_extras_again(series: Series, row: WorklistRow, outputs: SeriesOutputs) -> None:
    """Review images and DICOM for a flagged series scored earlier, from its pixels again."""
    from screen.detect.detector import analyse

    loaded = load_series(series, confirm=False, pacs=outputs.pacs)
    if isinstance(loaded, LoadedVolume):
        _write_extras(series, loaded.volume, analyse(loaded.volume, worker_detector()), row,
                      outputs)


def check_detector() -> str | None:
    """On a worker: open its detector and run every network once on zeros of the smallest
    input its card allows (what a TensorRT plan's profile starts at, too); why that failed, in
    one line, or None."""
    return _probe(worker_detector)


def check_detector_apart(spec: DetectorSpec, environment: dict[str, str]) -> str | None:
    """:func:`check_detector` in a process of its own, started clean as a local worker is,
    with ``environment`` (a GPU worker's CUDA_VISIBLE_DEVICES) set before any backend loads."""
    from screen.backends import set_cpu_threads

    os.environ.update(environment)
    set_cpu_threads(spec.cpu_threads)
    return _probe(lambda: open_detector(spec))


def _probe(detector: Callable[[], Detector]) -> str | None:
    import numpy as np

    try:
        for name, runner, shape in detector().probes():
            out = runner.run(np.zeros(shape, dtype=np.float32))
            if out.ndim != 5 or out.shape[2:] != shape[2:] or not np.isfinite(out).all():
                return (f"network {name!r} gave output of shape {out.shape} (or not finite) "
                        f"for an input of {shape}")
    except Exception as exc:  # noqa: BLE001 - whatever breaks, the sweep must say it in a line
        return f"{type(exc).__name__}: {' '.join(str(exc).split())}"
    return None


def review_series(series: Series, row: WorklistRow, outputs: SeriesOutputs) -> None:
    """Key images for a series scored earlier (the top N that were not flagged)."""
    from screen.detect.detector import analyse
    from screen.review import render_series

    loaded = load_series(series, confirm=False, pacs=outputs.pacs)
    if isinstance(loaded, LoadedVolume):
        analysis = analyse(loaded.volume, worker_detector())
        render_series(outputs.review_dir, series, loaded.volume, analysis, row)


def screen_series(series: Series, confirm: bool, outputs: SeriesOutputs) -> WorklistRow:
    return detect_series(series, load_series(series, confirm, outputs.pacs), outputs)


def unknown_producer() -> worklist.Producer:
    return worklist.Producer("", "", "", "", "")
