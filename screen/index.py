"""`screen index`: crawl archives, read headers, assemble series and decide which to screen.

No pixel is read. Headers are read in worker processes over a bounded window of chunks, so an
archive of millions of files never becomes millions of pending tasks. The archive is only
ever opened for reading.
"""

from __future__ import annotations

import logging
import os
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from itertools import islice
from pathlib import Path

import pyarrow as pa

from screen import paths, tables
from screen.crawl import Found, crawl
from screen.pseudonym import Pseudonymizer
from screen.records import Decision, FileError, Instance, InventoryEntry, Series, Stage
from screen.select import Rules, facts, load_rules
from screen.series import assemble

logger = logging.getLogger(__name__)

CONTENT_RULE = "content"  # the rule name for series the image content ruled out
CHUNK = 64  # files per task: large enough to amortise the round trip, small enough to balance
WINDOW_PER_WORKER = 4  # chunks in flight per worker process


@dataclass(frozen=True, slots=True)
class IndexResult:
    entries: tuple[InventoryEntry, ...]
    errors: tuple[FileError, ...]
    files_found: int

    @property
    def eligible(self) -> tuple[InventoryEntry, ...]:
        return tuple(e for e in self.entries if e.decision.eligible)

    @property
    def rejected_by_rule(self) -> dict[str, int]:
        """How many series each rule turned away, most first."""
        rules = Counter(e.decision.rule for e in self.entries if not e.decision.eligible)
        return dict(rules.most_common())

    @property
    def abdominal_rejected_for_geometry(self) -> dict[str, int]:
        """Series whose tags say abdominal CT, turned away for their geometry, by rule."""
        rules = Counter(e.decision.rule for e in self.entries if e.abdominal_by_tags)
        return dict(rules.most_common())

    @property
    def errors_by_stage(self) -> dict[str, int]:
        """How many files could not be read or placed at each stage, most first."""
        return dict(Counter(e.stage.value for e in self.errors).most_common())


@dataclass
class Progress:
    """Callbacks a front end can use to show progress; all optional."""

    on_files: Callable[[int, int], None] = field(default=lambda read, errors: None)
    on_stage: Callable[[str], None] = field(default=lambda name: None)


def index(
    roots: Sequence[str | Path],
    *,
    rules: Rules | None = None,
    workers: int | None = None,
    executor: Executor | None = None,
    progress: Progress | None = None,
    follow_links: bool = False,
) -> IndexResult:
    """Everything found under ``roots``: series with their decisions, and files in error.

    Links out of the archive are reported and not followed unless ``follow_links``.
    """
    rules = rules or load_rules()
    progress = progress or Progress()
    instances: list[Instance] = []
    errors: list[FileError] = []
    shared = _SharedValues()
    found = 0
    for outcome in read_headers(roots, workers=workers, executor=executor,
                                follow_links=follow_links):
        found += 1
        if isinstance(outcome, FileError):
            errors.append(outcome)
        else:
            instances.append(shared.compact(outcome))
        if found % 256 == 0:
            progress.on_files(found, len(errors))
    progress.on_files(found, len(errors))
    progress.on_stage("assembling series")
    series, duplicates = assemble(instances)
    errors.extend(duplicates)
    entries = tuple(inventory_entry(s, rules) for s in series)
    return IndexResult(entries, tuple(errors), found)


class _SharedValues:
    """One copy of each value that many instances repeat (UIDs of the study and series,
    descriptions, orientation), so memory grows with what is unique to each file: its path,
    its SOP instance UID and its position."""

    FIELDS = ("transfer_syntax_uid", "sop_class_uid", "modality", "patient_id", "patient_name",
              "patient_birth_date",
              "accession_number", "study_instance_uid", "study_date", "study_description",
              "series_instance_uid", "series_description", "protocol_name",
              "body_part_examined", "frame_of_reference_uid", "manufacturer", "image_type",
              "convolution_kernel", "contrast_agent", "image_orientation", "pixel_spacing")

    def __init__(self) -> None:
        self._values: dict[object, object] = {}

    def compact(self, instance: Instance) -> Instance:
        values = self._values
        for name in self.FIELDS:
            value = getattr(instance, name)
            # Frozen records are rebuilt field by field only here, where memory is at stake.
            object.__setattr__(instance, name, values.setdefault(value, value))
        return instance


def inventory_entry(series: Series, rules: Rules) -> InventoryEntry:
    decision, confirm = rules.decide(series)
    return InventoryEntry(series, decision, geometry_warnings(series), confirm,
                          abdominal_by_tags=rules.abdominal_by_tags(series, decision))


def with_content_decisions(result: IndexResult, ruled_out: dict[str, str]) -> IndexResult:
    """The result with series whose image content showed no abdomen marked ineligible."""
    entries = tuple(
        replace(e, decision=Decision(False, CONTENT_RULE, ruled_out[e.series.key]))
        if e.series.key in ruled_out else e
        for e in result.entries
    )
    return replace(result, entries=entries)


def geometry_warnings(series: Series) -> tuple[str, ...]:
    g = series.geometry
    warnings = []
    if g.gantry_tilt_deg and abs(g.gantry_tilt_deg) > 0.1:
        warnings.append(f"gantry tilt {g.gantry_tilt_deg:.1f} degrees: corrected when loaded")
    if g.unique_positions and not g.uniform_spacing and g.min_gap_mm is not None:
        warnings.append(f"uneven slice spacing ({g.min_gap_mm:.2f} to {g.max_gap_mm:.2f} mm): "
                        "resampled when loaded")
    if not g.consistent_pixel_spacing:
        warnings.append("pixel spacing differs between slices or is missing")
    if series.split_reason:
        warnings.append(f"one series UID held several volumes; {series.split_reason}")
    warnings.extend(series.assembly_warnings)
    return tuple(warnings)


def default_workers() -> int:
    return os.cpu_count() or 1


def read_headers(roots: Sequence[str | Path], *, workers: int | None = None,
                 executor: Executor | None = None, follow_links: bool = False
                 ) -> Iterator[Instance | FileError]:
    """Crawl and read every file's header, yielding one outcome per file found.

    Reads run in ``executor`` when given (a Dask cluster's, say), else in a pool of
    ``workers`` processes, or in this process when ``workers`` is 1. A worker process that
    dies (a decoder library crashing on a strange file, or the memory killer) takes its reads
    with it; those files are read again afterwards, alone, so that the one it died of ends in
    the errors and every other file is read.
    """
    workers = workers or default_workers()
    paths = _PathsAndErrors(crawl(roots, follow_links=follow_links))
    chunks = _chunks(paths.iterate(), CHUNK)
    if executor is None and workers == 1:
        for chunk in chunks:
            yield from paths.take_errors()
            yield from read_instances(chunk)
        yield from paths.take_errors()
        return
    readers = _Readers(executor, workers)
    lost: list[list[str]] = []
    try:
        pending: dict[Future[list[Instance | FileError]], list[str]] = {}
        window = workers * WINDOW_PER_WORKER
        exhausted = False
        while pending or not exhausted:
            while not exhausted and len(pending) < window:
                chunk = next(chunks, None)
                if chunk is None:
                    exhausted = True
                else:
                    pending[readers.submit(chunk)] = chunk
            yield from paths.take_errors()
            if pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    chunk = pending.pop(future)
                    try:
                        outcomes = future.result()
                    except Exception as exc:
                        if not _worker_died(exc):
                            raise
                        logger.warning("a worker reading headers died (%s: %s)", type(exc).__name__, exc)
                        lost.append(chunk)
                    else:
                        yield from outcomes
        yield from paths.take_errors()
        if lost:
            logger.warning("%d files were lost with a worker that died; reading them again, alone, "
                        "to find which one it died of", sum(map(len, lost)))
        for chunk in lost:
            yield from readers.alone(chunk)
    finally:
        readers.close()


def read_instances(paths: list[str]) -> list[Instance | FileError]:
    """The outcome of reading each file's header, in order. pydicom is loaded here, with the
    first file there is to read, not with the command: an empty folder is indexed without it."""
    from screen.headers import read_instances as read

    return read(paths)


def _worker_died(exc: BaseException) -> bool:
    """Whether a read failed because the process doing it died: in a pool of our own, or on a
    Dask cluster (KilledWorker; Dask is imported only where one is used, so none without)."""
    distributed = sys.modules.get("distributed")
    return isinstance(exc, BrokenProcessPool) or (
        distributed is not None and isinstance(exc, distributed.KilledWorker))


class _Readers:
    """Where header reads run: ``executor``, or a process pool of this reader's own, which is
    renewed when a worker's death breaks it (the death fails every read then in flight)."""

    def __init__(self, executor: Executor | None, workers: int) -> None:
        self._owned = executor is None
        self._workers = workers
        self._pool = executor or ProcessPoolExecutor(max_workers=workers)

    def submit(self, paths: list[str]) -> Future[list[Instance | FileError]]:
        try:
            return self._pool.submit(read_instances, paths)
        except BrokenProcessPool:
            if not self._owned:
                raise
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = ProcessPoolExecutor(max_workers=self._workers)
            return self._pool.submit(read_instances, paths)

    def alone(self, paths: list[str]) -> Iterator[Instance | FileError]:
        """Read ``paths`` with nothing else in flight, halving them each time their worker
        dies, down to the file it dies of, which becomes an error."""
        try:
            outcomes = self.submit(paths).result()
        except Exception as exc:
            if not _worker_died(exc):
                raise
            if len(paths) > 1:
                half = len(paths) // 2
                yield from self.alone(paths[:half])
                yield from self.alone(paths[half:])
            else:
                yield FileError(paths[0], Stage.HEADER,
                                "the process reading this file's header died (a crash in a "
                                f"decoder library, or out of memory): {type(exc).__name__}: {exc}")
        else:
            yield from outcomes

    def close(self) -> None:
        if self._owned:
            self._pool.shutdown(cancel_futures=True)


class _PathsAndErrors:
    """Splits the crawl into paths to read and crawl errors to pass straight through."""

    def __init__(self, found: Iterable[Found | FileError]) -> None:
        self._found = iter(found)
        self._errors: list[FileError] = []

    def iterate(self) -> Iterator[str]:
        for item in self._found:
            if isinstance(item, FileError):
                self._errors.append(item)
            else:
                yield item.path

    def take_errors(self) -> list[FileError]:
        taken, self._errors = self._errors, []
        return taken


def _chunks(items: Iterable[str], size: int) -> Iterator[list[str]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


# ---------------------------------------------------------------------------------------------
# Tables


def inventory_table(entries: Iterable[InventoryEntry]) -> pa.Table:
    return tables.table_of([_inventory_row(e) for e in entries], INVENTORY_SCHEMA)


def errors_table(errors: Iterable[FileError]) -> pa.Table:
    rows = [{"path": paths.to_text(e.path), "stage": e.stage.value, "error": paths.to_text(e.error)}
            for e in errors]
    return tables.table_of(rows, tables.ERRORS_SCHEMA)


def write_outputs(result: IndexResult, inventory: Path, errors: Path, *,
                  rules: Rules, roots: Sequence[str | Path],
                  pseudonymizer: Pseudonymizer | None = None) -> None:
    """Inventory then errors, atomically; with a pseudonymizer, no identifier is written."""
    extra: dict[str, object] = {"rules": rules.source,
                                "archives": [paths.to_text(os.path.abspath(r)) for r in roots],
                                "files_found": result.files_found}
    inv, err = inventory_table(result.entries), errors_table(result.errors)
    if pseudonymizer is not None:
        for entry in result.entries:
            observe_identity(pseudonymizer, entry.series)
        # The inventory first: it teaches the pseudonymizer the identifiers that paths hold.
        inv = pseudonymizer.pseudonymize_table(inv)
        err = pseudonymizer.pseudonymize_table(err)
        extra = private_provenance(extra, pseudonymizer)
    tables.write_atomic(inv, inventory, extra)
    tables.write_atomic(err, errors, extra)


def observe_identity(pseudonymizer: Pseudonymizer, series: Series) -> None:
    """Teach the pseudonymizer every identifier of a series' patient, so that none of them
    survives in a path or a message, even those (name, birth date) we never write."""
    first = series.first
    pseudonymizer.observe({"patient_id": first.patient_id, "patient_name": first.patient_name,
                           "birth_date": first.patient_birth_date,
                           "accession_number": first.accession_number})


def private_provenance(extra: dict[str, object], pseudonymizer: Pseudonymizer
                       ) -> dict[str, object]:
    """Provenance whose command line and archive paths name no patient, and which records
    the key's fingerprint."""
    scrubbed = dict(extra)
    scrubbed["command"] = pseudonymizer.pseudonymize_command(
        tables.provenance()["command"])  # type: ignore[arg-type]
    scrubbed["pseudonymized_with"] = pseudonymizer.fingerprint
    if "archives" in scrubbed:
        scrubbed["archives"] = [pseudonymizer.pseudonymize_path(a)
                                for a in scrubbed["archives"]]  # type: ignore[union-attr]
    return scrubbed


def summary(result: IndexResult) -> dict[str, object]:
    return {
        "files_found": result.files_found,
        "instances": sum(len(e.series.instances) for e in result.entries),
        "series": len(result.entries),
        "eligible": len(result.eligible),
        "rejected_by_rule": result.rejected_by_rule,
        "abdominal_by_tags_rejected_for_geometry": result.abdominal_rejected_for_geometry,
        "errors_by_stage": result.errors_by_stage,
    }


INVENTORY_SCHEMA = pa.schema([
    ("series_key", pa.string()),
    ("series_instance_uid", pa.string()),
    ("uid_source", pa.string()),
    ("study_instance_uid", pa.string()),
    ("patient_id", pa.string()),
    ("accession_number", pa.string()),
    ("study_date", pa.string()),
    ("modality", pa.string()),
    ("sop_class_uid", pa.string()),
    ("body_part_examined", pa.string()),
    ("series_description", pa.string()),
    ("study_description", pa.string()),
    ("protocol_name", pa.string()),
    ("manufacturer", pa.string()),
    ("convolution_kernel", pa.string()),
    ("image_type", pa.string()),
    ("transfer_syntax_uid", pa.string()),
    ("n_instances", pa.int32()),
    ("n_slices", pa.int32()),
    ("rows", pa.int32()),
    ("columns", pa.int32()),
    ("pixel_spacing_mm", pa.list_(pa.float32())),
    ("slice_thickness_mm", pa.float32()),
    ("orientation", pa.string()),
    ("single_orientation", pa.bool_()),
    ("obliquity_deg", pa.float32()),
    ("unique_positions", pa.bool_()),
    ("uniform_spacing", pa.bool_()),
    ("slice_spacing_mm", pa.float32()),
    ("min_gap_mm", pa.float32()),
    ("max_gap_mm", pa.float32()),
    ("consistent_pixel_spacing", pa.bool_()),
    ("consistent_image_size", pa.bool_()),
    ("gantry_tilt_deg", pa.float32()),
    ("z_coverage_mm", pa.float32()),
    ("eligible", pa.bool_()),
    ("rule", pa.string()),
    ("reason", pa.string()),
    ("needs_content_check", pa.bool_()),
    ("abdominal_by_tags", pa.bool_()),
    ("warnings", pa.list_(pa.string())),
    ("split_reason", pa.string()),
    ("files", pa.list_(pa.string())),
    ("sop_instance_uids", pa.list_(pa.string())),
])


def _inventory_row(entry: InventoryEntry) -> dict[str, object]:
    s, g, d = entry.series, entry.series.geometry, entry.decision
    first = s.first
    f = facts(s)  # the same view of the series the rules saw
    return {
        "series_key": s.key,
        "series_instance_uid": first.series_instance_uid,
        "uid_source": s.uid_source,
        "study_instance_uid": first.study_instance_uid,
        "patient_id": first.patient_id,
        "accession_number": first.accession_number,
        "study_date": first.study_date,
        "modality": first.modality,
        "sop_class_uid": first.sop_class_uid,
        "body_part_examined": first.body_part_examined,
        "series_description": first.series_description,
        "study_description": first.study_description,
        "protocol_name": first.protocol_name,
        "manufacturer": first.manufacturer,
        "convolution_kernel": first.convolution_kernel,
        "image_type": "\\".join(f["image_type"]),
        "transfer_syntax_uid": first.transfer_syntax_uid,
        "n_instances": len(s.instances),
        "n_slices": s.n_frames,
        "rows": first.rows,
        "columns": first.columns,
        "pixel_spacing_mm": list(first.pixel_spacing) if first.pixel_spacing else None,
        "slice_thickness_mm": f["slice_thickness_mm"],
        "orientation": f["plane"][0],
        "single_orientation": g.single_orientation,
        "obliquity_deg": g.obliquity_deg,
        "unique_positions": g.unique_positions,
        "uniform_spacing": g.uniform_spacing,
        "slice_spacing_mm": g.slice_spacing_mm,
        "min_gap_mm": g.min_gap_mm,
        "max_gap_mm": g.max_gap_mm,
        "consistent_pixel_spacing": g.consistent_pixel_spacing,
        "consistent_image_size": g.consistent_image_size,
        "gantry_tilt_deg": g.gantry_tilt_deg,
        "z_coverage_mm": g.z_coverage_mm,
        "eligible": d.eligible,
        "rule": d.rule or None,
        "reason": d.reason or None,
        "needs_content_check": d.eligible and bool(entry.confirm),
        "abdominal_by_tags": entry.abdominal_by_tags,
        "warnings": list(entry.confirm + entry.warnings),
        "split_reason": s.split_reason or None,
        "files": [paths.to_text(i.path) for i in s.instances],
        "sop_instance_uids": [i.sop_instance_uid for i in s.instances],
    }
