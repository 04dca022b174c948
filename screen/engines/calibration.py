"""INT8 calibration sets: real series, preprocessed exactly as inference preprocesses them.

A calibration set holds, for every network of a package, a stack of network inputs
(N, 1, K, J, I). The inputs are made the way a scan makes them: the FP32 detector runs on
each volume through ONNX Runtime, and the inputs it fed its networks (the whole-body grid
for the locate network, the box around the pancreas it found for the segmenter) are kept.
Inputs of one network differ in size from volume to volume; they are centre-cropped to the
smallest common size so they stack (a calibration set only needs representative values).

Series are drawn stratified: by label (lesion or not, when a ``truth.csv`` lies beside the
archive) and by slice thickness, round robin, so a handful of series still spans the
archive. The set is saved as ``calib-<hash>.npz``, the hash taken over the arrays' contents,
so the same series give the same name and a build can be repeated with ``--calib FILE.npz``.
"""

from __future__ import annotations

import hashlib
import io
import logging
import random
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from screen.atomic import write_bytes_atomic
from screen.model.package import ModelPackage
from screen.records import Volume
from screen.truth import read_truth, truth_beside

logger = logging.getLogger(__name__)

DEFAULT_SERIES = 16
THICKNESS_BINS_MM: tuple[float, ...] = (1.5, 3.0)  # thin <= 1.5 < medium <= 3.0 < thick
_SERIES_KEY = "__series__"


@dataclass(frozen=True, slots=True)
class CalibrationSet:
    """Network inputs for INT8 calibration, named by the hash of their contents."""

    inputs: Mapping[str, np.ndarray]  # network name -> (N, 1, K, J, I) float32
    sha256: str
    series: tuple[str, ...] = ()
    path: Path | None = None

    def __post_init__(self) -> None:
        if not self.inputs:
            raise ValueError("a calibration set needs inputs for at least one network")
        for name, array in self.inputs.items():
            if not isinstance(array, np.ndarray) or array.dtype != np.float32 or array.ndim != 5:
                raise ValueError(
                    f"calibration inputs for {name!r} must be float32 (N, 1, K, J, I), got "
                    f"{getattr(array, 'dtype', type(array).__name__)} {getattr(array, 'shape', '')}"
                )
            if array.shape[0] < 1 or array.shape[1] != 1:
                raise ValueError(f"calibration inputs for {name!r} have shape {array.shape}; need (N>=1, 1, K, J, I)")

    def for_network(self, network: str) -> np.ndarray:
        try:
            return self.inputs[network]
        except KeyError:
            raise ValueError(
                f"calibration set {self.path or self.sha256[:16]} has no inputs for network "
                f"{network!r}; it has {sorted(self.inputs)}"
            ) from None


def content_sha256(inputs: Mapping[str, np.ndarray]) -> str:
    """Hash of the arrays (names, shapes, values), independent of how the file was written."""
    digest = hashlib.sha256()
    for name in sorted(inputs):
        array = np.ascontiguousarray(inputs[name], dtype=np.float32)
        digest.update(f"{name}\0{array.shape}\0".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def centre_crop_stack(arrays: Sequence[np.ndarray], multiple: int) -> np.ndarray:
    """(1, 1, K, J, I) inputs of varying size centre-cropped to their common size, stacked."""
    if not arrays:
        raise ValueError("no inputs to stack")
    shape = np.min([a.shape[2:] for a in arrays], axis=0)
    shape = np.maximum(multiple, shape // multiple * multiple)
    out = []
    for a in arrays:
        start = (np.asarray(a.shape[2:]) - shape) // 2
        k, j, i = (slice(int(s), int(s + n)) for s, n in zip(start, shape))
        out.append(a[0, :, k, j, i])
    return np.ascontiguousarray(np.stack(out), dtype=np.float32)


def network_inputs(volumes: Iterable[Volume], package: ModelPackage) -> dict[str, np.ndarray]:
    """What each network of ``package`` sees for each volume at inference, stacked per network."""
    from screen.backends import onnxruntime as ort_backend
    from screen.detect.detector import Detector, analyse
    from screen.detect.preprocess import preprocess, sample

    card = package.card
    runners = {name: ort_backend.load(package, name, "fp32", "cpu") for name in card.networks}
    detector = Detector(card, runners, package.sha256)
    seen: dict[str, list[np.ndarray]] = defaultdict(list)
    for volume in volumes:
        analysis = analyse(volume, detector)
        seen[card.locate.name].append(sample(volume, analysis.locate_grid, card.locate))
        for name, network in card.networks.items():
            if network.crop != "pancreas":
                continue
            if analysis.segment_grid is not None:
                seen[name].append(sample(volume, analysis.segment_grid, network, analysis.gland_hu))
            else:  # nothing found: the middle of the body stands in, as preprocess documents
                seen[name].append(preprocess(volume, network))
    if not seen:
        raise ValueError("no volumes to calibrate on")
    return {
        name: centre_crop_stack(arrays, card.networks[name].shape_multiple)
        for name, arrays in seen.items()
    }


def save_calibration(
    inputs: Mapping[str, np.ndarray], folder: Path, series: Sequence[str] = ()
) -> CalibrationSet:
    """Write the set as ``folder/calib-<hash>.npz`` (atomically) and return it."""
    sha = content_sha256(inputs)
    path = Path(folder) / f"calib-{sha[:16]}.npz"
    buffer = io.BytesIO()
    np.savez(buffer, **{name: np.asarray(a, np.float32) for name, a in inputs.items()},
             **{_SERIES_KEY: np.asarray(list(series), dtype=str)})
    write_bytes_atomic(path, buffer.getvalue())
    logger.info("calibration set %s: %s", path, {n: a.shape for n, a in inputs.items()})
    return CalibrationSet(dict(inputs), sha, tuple(series), path)


def load_calibration(path: Path) -> CalibrationSet:
    """A calibration set saved by :func:`save_calibration`; its hash is recomputed."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"calibration file {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as data:
            inputs = {k: np.asarray(data[k], np.float32) for k in data.files if k != _SERIES_KEY}
            series = tuple(str(s) for s in data[_SERIES_KEY]) if _SERIES_KEY in data.files else ()
    except (OSError, ValueError) as exc:
        raise ValueError(f"calibration file {path} is not a readable .npz: {exc}") from exc
    return CalibrationSet(inputs, content_sha256(inputs), series, path)


@dataclass(frozen=True, slots=True)
class Candidate:
    """One eligible series of an archive, with what it is stratified on."""

    uid: str
    label: bool | None  # None when the archive has no truth
    thickness_mm: float | None
    entry: object = field(repr=False, compare=False)  # the index's InventoryEntry

    @property
    def stratum(self) -> tuple[str, str]:
        label = "unknown" if self.label is None else ("lesion" if self.label else "no lesion")
        if self.thickness_mm is None:
            return label, "unknown"
        names = ("thin", "medium", "thick")
        return label, names[sum(self.thickness_mm > b for b in THICKNESS_BINS_MM)]


def stratified(candidates: Sequence[Candidate], n: int, seed: int = 0) -> list[Candidate]:
    """Up to ``n`` candidates, taken round robin over the strata (each shuffled with ``seed``)."""
    if n < 1:
        raise ValueError(f"the number of calibration series must be >= 1, got {n}")
    strata: dict[tuple[str, str], list[Candidate]] = defaultdict(list)
    for c in sorted(candidates, key=lambda c: c.uid):
        strata[c.stratum].append(c)
    rng = random.Random(seed)
    queues = [strata[s] for s in sorted(strata)]
    for q in queues:
        rng.shuffle(q)
    chosen: list[Candidate] = []
    while len(chosen) < n and any(queues):
        for q in queues:
            if q and len(chosen) < n:
                chosen.append(q.pop())
    return chosen


def archive_candidates(archive: Path) -> list[Candidate]:
    """The eligible series of ``archive`` (indexed from headers), with labels where known."""
    import statistics

    from screen.index import index

    archive = Path(archive)
    if not archive.is_dir():
        raise ValueError(f"calibration archive {archive} is not a folder")
    result = index([archive])
    truth_file = truth_beside(archive)
    labels = {c.series_instance_uid: c.label for c in read_truth(truth_file)} if truth_file else {}
    out = []
    for entry in result.eligible:
        series = entry.series
        thick = [i.slice_thickness for i in series.instances if i.slice_thickness]
        thickness = statistics.median(thick) if thick else series.geometry.slice_spacing_mm
        uid = series.first.series_instance_uid or series.key
        out.append(Candidate(uid, labels.get(uid), thickness, entry))
    if not out:
        raise ValueError(f"calibration archive {archive} holds no eligible series")
    return out


def calibration_from_archive(
    archive: Path, package: ModelPackage, folder: Path, n: int = DEFAULT_SERIES, seed: int = 0
) -> CalibrationSet:
    """Index ``archive``, draw ``n`` series stratified, load and preprocess them as inference
    does, and save the set under ``folder``."""
    from screen.volume import VolumeError, load_volume

    chosen = stratified(archive_candidates(archive), n, seed)
    used: list[str] = []

    def volumes() -> Iterable[Volume]:
        for c in chosen:
            try:
                volume = load_volume(c.entry.series)  # type: ignore[attr-defined]
            except VolumeError as exc:
                logger.warning("calibration skips series %s: %s", c.uid, exc)
                continue
            used.append(c.uid)
            yield volume

    inputs = network_inputs(volumes(), package)
    logger.info("calibrating on %d series: %s", len(used),
                dict(sorted(_count(c.stratum for c in chosen if c.uid in used).items())))
    return save_calibration(inputs, folder, used)


def _count(items: Iterable[tuple[str, str]]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for s in items:
        counts[" / ".join(s)] += 1
    return dict(counts)
