"""`screen scan`: the whole sweep, top to bottom.

    archives ─index (headers; before a local cluster starts, on a user's)─▶ inventory.parquet,
                                                                          errors.parquet
    eligible series ─load volume → confirm content → detect─▶ worklist rows (part files)
    part files ─one row per series, ranked─▶ worklist.parquet

Dask decides only where each step runs. Each series is one task on a CPU worker; with GPU
workers its networks run on their inference services (screen.backends.service), which
receive only network inputs, batched across series. The client keeps a bounded window of series in
flight, writes finished rows to part files as they come, and on --resume skips every series
the same model package already scored.

Before any work: no output may lie inside an archive, one sweep at a time holds ``--out``,
and the model package is opened and run once on a tiny input (before a local sweep's index,
in a process of its own; on a worker as soon as the cluster is up); a model that cannot run
fails the sweep there, in one line, instead of in every series' row.
"""

from __future__ import annotations

import logging
import multiprocessing
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from distributed import Client, Future, KilledWorker, wait
from distributed.security import Security

from screen import index as indexing
from screen import worklist
from screen.cluster import (
    DetectorPlugin,
    DetectorSpec,
    connect,
    cpu_resources,
    hide_in_cluster_logs,
    site_security,
    start_inference_services,
)
from screen.gpus import Gpu, find_gpus
from screen.memory import peak_rss_mib
from screen.outputs import OutputLock, refuse_inside_archives
from screen.pseudonym import Pseudonymizer, hide_in_logs, read_key_file
from screen.records import InventoryEntry, Series
from screen.select import Rules, load_rules
from screen.tasks import (
    SeriesOutputs,
    check_detector,
    check_detector_apart,
    review_series,
    screen_series,
    unknown_producer,
    write_extras_again,
)
from screen.worklist_row import ERROR, OK, WorklistRow

if TYPE_CHECKING:
    from screen.backends.service import ServiceStats
    from screen.dicomweb import PacsSource
    from screen.dicomweb.last_run import LastRun
    from screen.dicomweb.store import StoreTarget
    from screen.model.package import ModelPackage

logger = logging.getLogger(__name__)

NOT_DIAGNOSTIC = "not for diagnostic use"  # in a card's intended use: say so at every scan
SERIES_PER_WORKER = 2  # series in flight per worker: enough to keep each busy, few in memory
FLUSH_ROWS = 16
FLUSH_SECONDS = 2.0  # at most this much finished work is lost to a crash


@dataclass(frozen=True, slots=True)
class ScanOptions:
    model: str = "pancreas-phantom-v1"
    backend: str = "auto"
    precision: str = "fp32"
    workers: int | None = None
    gpus: int | None = None  # None: every GPU NVML sees; 0: none
    cpu_threads: int | None = None  # per worker; None: an even share of this machine's cores
    scheduler: str | None = None
    scheduler_security: Path | None = None  # a Dask configuration file with the site's TLS
    worker_memory: int = 0  # bytes each local worker may use; 0: no cap
    resume: bool = True
    threshold: float | None = None
    rules: Path | None = None
    review_dir: Path | None = None  # key images and an HTML report for flagged series
    review_top: int = 0  # ... and for the N highest-scoring series that were not flagged
    viewer_url: str | None = None  # a link template to the site's viewer on each review page
    dicom_out: Path | None = None  # an SR and a SEG for each flagged series, for the PACS
    pseudonymize_key: Path | None = None  # keyed pseudonyms in every output that leaves
    follow_links: bool = False  # follow symbolic links out of the archive
    pacs: PacsSource | None = None  # sweep this PACS (DICOMweb) instead of the archive roots
    store_results: StoreTarget | None = None  # send flagged series' SR and SEG here
    since_last_run: bool = False  # PACS: only studies new or changed since the last sweep
    gpu_batch: int | None = None  # samples per network batch on a GPU; None: from its memory
    gpu_transit: str = "auto"  # what network inputs and outputs cross to a GPU worker as

    def __post_init__(self) -> None:
        from screen.backends.service import TRANSITS

        if self.gpu_transit not in TRANSITS:
            raise ValueError(f"gpu_transit must be one of {', '.join(TRANSITS)}, got "
                             f"{self.gpu_transit!r}")


@dataclass
class ScanProgress:
    """Callbacks for a front end; all optional."""

    index: indexing.Progress = field(default_factory=indexing.Progress)
    on_cluster: Callable[[str], None] = field(default=lambda dashboard: None)
    on_notice: Callable[[str], None] = field(default=lambda text: None)
    on_series: Callable[[int, int, int, int], None] = field(
        default=lambda done, total, flagged, errors: None)


@dataclass(frozen=True, slots=True)
class ScanSummary:
    files_found: int
    series: int
    eligible: int
    resumed: int
    # Why the other series were not screened (a rule name, or "content" when their pixels
    # ruled them out) and which files could not be read, by stage: the same as screen index.
    rejected_by_rule: dict[str, int]
    errors_by_stage: dict[str, int]
    scored: int
    failed: int
    flagged: int
    worklist: Path
    inventory: Path
    errors: Path
    dashboard: str | None
    seconds: dict[str, float] = field(default_factory=dict)  # index, screen, write
    client_peak_rss_mib: float = 0.0
    worker_peak_rss_mib: dict[str, float] = field(default_factory=dict)
    # Series whose tags say abdominal CT that were turned away for their geometry, by rule.
    abdominal_rejected_for_geometry: dict[str, int] = field(default_factory=dict)
    # Flagged series whose review page or DICOM asked for could not be written, even when
    # tried again at the end of the sweep (by series key).
    missing_extras: tuple[str, ...] = ()
    # What each GPU worker's inference service ran and how many bytes crossed to and from it.
    inference: tuple[ServiceStats, ...] = ()


def scan(roots: Sequence[Path], out: Path, *, inventory: Path | None = None,
         errors: Path | None = None, options: ScanOptions = ScanOptions(),
         progress: ScanProgress | None = None) -> ScanSummary:
    from screen.model.package import find_package

    progress = progress or ScanProgress()
    inventory = inventory or out.with_name("inventory.parquet")
    errors = errors or out.with_name("errors.parquet")
    refuse_inside_archives(roots, {"--out": out, "--inventory": inventory, "--errors": errors,
                                   "--review-dir": options.review_dir,
                                   "--dicom-out": options.dicom_out})
    rules = load_rules(options.rules)
    package = find_package(options.model)  # fails here, before any work, if the model is wrong
    if NOT_DIAGNOSTIC in package.card.intended_use.lower():
        why = package.card.limitations[0] if package.card.limitations else ""
        progress.on_notice(f"model {package.card.name} {package.card.version} is not for "
                           f"diagnostic use. {why}".strip())
    threshold = worklist.check_threshold(
        options.threshold if options.threshold is not None else package.card.threshold)
    security = site_security(options.scheduler_security) if options.scheduler_security else None
    with OutputLock(out) as lock:
        if lock.stale is not None:
            progress.on_notice(f"took over the lock on {out} left by a sweep that is no longer "
                               f"running ({lock.stale})")
        return _scan_locked(roots, out, inventory, errors, options, progress, package, rules,
                            threshold, security)


def _scan_locked(roots: Sequence[Path], out: Path, inventory: Path, errors: Path,
                 options: ScanOptions, progress: ScanProgress, package: ModelPackage,
                 rules: Rules, threshold: float, security: Security | None) -> ScanSummary:
    key = read_key_file(options.pseudonymize_key) if options.pseudonymize_key else None
    dicom_out = options.dicom_out
    if options.store_results is not None and dicom_out is None:
        dicom_out = out.with_name(out.name + ".dicom")  # what is stored is kept beside --out
    outputs = SeriesOutputs(threshold, options.review_dir, dicom_out, key, options.pacs)
    pseudonymizer = outputs.pseudonymizer()
    store = worklist.PartStore(out, pseudonymizer)
    if not options.resume:
        store.clear()
    done = store.done(package.sha256) if options.resume else set()

    gpus = () if options.gpus == 0 else find_gpus()[0][: options.gpus]
    cpu_workers = options.workers or indexing.default_workers()
    # Local workers share this machine's cores; a user's cluster sizes its own workers.
    threads = options.cpu_threads or (
        None if options.scheduler else max(1, indexing.default_workers() // cpu_workers))
    spec = DetectorSpec(str(package.path), options.backend, options.precision, threads)
    indexed = None
    if options.scheduler is None:
        # A local cluster's scheduler and nannies (threads of this process) and its idle
        # workers take a share of the cores that the index needs, and its workers load the
        # model on them: the index runs first, with the machine to itself, as `screen index`
        # does. The model is checked before it, in a process of its own.
        _check_detector_apart(spec, gpus)
        indexed = _index(roots, options, rules, progress, inventory, errors, pseudonymizer,
                         out, executor=None, workers=cpu_workers)
    with connect(scheduler=options.scheduler, cpu_workers=cpu_workers, gpus=gpus,
                 memory_limit=options.worker_memory, security=security) as client:
        dashboard = None if options.scheduler else client.dashboard_link
        progress.on_cluster(dashboard or options.scheduler or "")
        on_cpu = cpu_resources(client)  # where series are read and prepared
        services = start_inference_services(client, spec, options.gpu_batch, options.gpu_transit)
        client.register_plugin(DetectorPlugin(spec, services.handles))
        _check_detector(client, spec, on_cpu)  # again, on the cluster: before any series
        if indexed is None:
            # A user's cluster: its machines share the reading out between them, on CPU
            # workers, so that a file that crashes its reader cannot take a GPU's inference
            # service with it.
            executor = client.get_executor(resources=on_cpu) if on_cpu else \
                client.get_executor()
            indexed = _index(roots, options, rules, progress, inventory, errors, pseudonymizer,
                             out, executor=executor, workers=cpu_workers)
        result, last_run, index_seconds = indexed
        if pseudonymizer is not None:  # it has seen every identifier now
            hide_in_cluster_logs(client, pseudonymizer)
        seconds = {"index": index_seconds}
        todo = [e for e in result.eligible if e.series.key not in done]
        clock = time.perf_counter()
        _screen_all(client, todo, store, outputs, progress, len(result.eligible), on_cpu)
        seconds["screen"] = time.perf_counter() - clock
        inference = services.stats()

        eligible_keys = {e.series.key for e in result.eligible}
        rows = [r for r in store.read() if r.series_key in eligible_keys]
        ranked = worklist.finalise(rows, threshold)
        clock = time.perf_counter()
        missing_extras = _fill_in_extras(client, ranked, result, outputs, progress, on_cpu)
        if options.store_results is not None and dicom_out is not None:
            from screen.dicomweb.store import store_flagged

            stored = store_flagged(ranked, {e.series.key: e.series for e in result.eligible},
                                   dicom_out, options.store_results, progress.on_notice)
            store.write(stored)  # so that a resumed run knows what is still to be stored
            rows += stored
            ranked = worklist.finalise(rows, threshold)
        if options.review_dir is not None:
            _review_top(client, ranked, result, options.review_top, outputs, on_cpu)
        if options.review_dir is not None or options.dicom_out is not None:
            seconds["review"] = time.perf_counter() - clock
        worker_rss = client.run(peak_rss_mib)
    clock = time.perf_counter()

    screened = _with_what_loading_found(result, rows)
    if screened is not result:  # the inventory learns what the pixels said
        result = screened
        indexing.write_outputs(result, inventory, errors, rules=rules, roots=roots,
                               pseudonymizer=pseudonymizer)
    store.compact(rows)
    ruled_out = worklist.rejected(rows)
    extra: dict[str, object] = {
        "model": package.card.name, "model_version": package.card.version,
        "model_sha256": package.sha256, "threshold": threshold,
        "backend_requested": options.backend, "precision": options.precision,
        "archives": [str(Path(r).resolve()) for r in roots],
        # For `screen monitor`: rejected series leave the worklist, their count stays here.
        "eligible_by_tags": len(result.eligible) + len(ruled_out),
        "rejected_by_content": len(ruled_out),
    }
    if options.pacs is not None:
        extra["pacs"] = str(options.pacs.address)  # its address only: no credentials
    if pseudonymizer is not None:
        extra = indexing.private_provenance(extra, pseudonymizer)
    worklist.write_worklist(ranked, out, extra)
    if last_run is not None:
        last_run.save(ranked, result.errors)
    if options.review_dir is not None:
        from screen.review import ViewerLink, write_index
        from screen.worklist_row import to_table

        viewer = ViewerLink(options.viewer_url) if options.viewer_url else None
        write_index(options.review_dir, to_table(ranked), viewer=viewer, threshold=threshold)
    seconds["write"] = time.perf_counter() - clock
    if pseudonymizer is not None:
        hide_in_logs(None)  # this sweep's messages are all out
    statuses = [r.status for r in ranked]
    return ScanSummary(
        files_found=result.files_found, series=len(result.entries),
        # Counted once the pixels have had their say: a series ruled out by its content in the
        # earlier run is neither eligible nor resumed.
        eligible=len(result.eligible), resumed=len({e.series.key for e in result.eligible} & done),
        rejected_by_rule=result.rejected_by_rule, errors_by_stage=result.errors_by_stage,
        scored=statuses.count("ok"), failed=statuses.count("error"),
        flagged=sum(1 for r in ranked if r.flagged),
        worklist=out, inventory=inventory, errors=errors, dashboard=dashboard,
        seconds=seconds, client_peak_rss_mib=peak_rss_mib(), worker_peak_rss_mib=worker_rss,
        abdominal_rejected_for_geometry=result.abdominal_rejected_for_geometry,
        missing_extras=missing_extras, inference=inference,
    )


def _index(roots: Sequence[Path], options: ScanOptions, rules: Rules, progress: ScanProgress,
           inventory: Path, errors: Path, pseudonymizer: Pseudonymizer | None, out: Path, *,
           executor: Executor | None, workers: int
           ) -> tuple[indexing.IndexResult, LastRun | None, float]:
    """The archives' (or the PACS's) index, written out; what the last run saw where the
    sweep asked for what is new since; and the seconds that took."""
    clock = time.perf_counter()
    last_run = None
    if options.pacs is not None:
        from screen.dicomweb.last_run import LastRun
        from screen.dicomweb.sweep import index_pacs

        last_run = LastRun(out, str(options.pacs.address)) if options.since_last_run else None
        result = index_pacs(options.pacs, rules=rules, progress=progress.index,
                            last_run=last_run)
    else:
        # Headers are read by the index's own pool, as by `screen index`, unless the
        # ``executor`` of a user's cluster is given (Dask's costs a round trip per chunk).
        result = indexing.index(roots, rules=rules, workers=workers, executor=executor,
                                progress=progress.index, follow_links=options.follow_links)
    indexing.write_outputs(result, inventory, errors, rules=rules, roots=roots,
                           pseudonymizer=pseudonymizer)
    return result, last_run, time.perf_counter() - clock


def _check_detector(client: Client, spec: DetectorSpec,
                    resources: dict[str, float] | None) -> None:
    """Open the model package on a worker and run each network once on a tiny input, before
    any work: a broken package or an unusable backend or precision is one clear error here
    (with GPU workers, on a CPU worker, through the inference service as every series)."""
    future = client.submit(check_detector, key="screen-check-model", pure=False,
                           resources=resources)
    _refuse_if(future.result(), spec)


def _check_detector_apart(spec: DetectorSpec, gpus: Sequence[Gpu]) -> None:
    """The same check before a local cluster starts, in a process started clean as its
    workers are (on the first of its GPUs where it has any)."""
    environment = {"CUDA_VISIBLE_DEVICES": gpus[0].uuid} if gpus else {}
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as process:
        try:
            problem = process.submit(check_detector_apart, spec, environment).result()
        except BrokenProcessPool as exc:  # a backend library that crashes its process
            problem = f"the process opening it died: {exc}"
    _refuse_if(problem, spec)


def _refuse_if(problem: str | None, spec: DetectorSpec) -> None:
    if problem:
        raise ValueError(f"model {spec.model} cannot run with --backend {spec.backend} "
                         f"--precision {spec.precision}: {problem}")


def _with_what_loading_found(result: indexing.IndexResult, rows: list[WorklistRow]
                             ) -> indexing.IndexResult:
    """The index result with what screening learnt from the pixels: series whose content
    ruled them out, and, for series scored without some damaged slices, those slices gone
    from ``files`` and the loader's warnings added (as the rows hold them: pseudonymised
    already where the sweep is)."""
    ruled_out = worklist.rejected(rows)
    if ruled_out:
        result = indexing.with_content_decisions(result, ruled_out)
    noted = {r.series_key: r for r in rows
             if r.status == OK and (r.warnings or r.left_out_sop_instance_uids)}
    if not noted:
        return result
    entries = []
    for entry in result.entries:
        row = noted.get(entry.series.key)
        if row is not None:
            left_out = set(row.left_out_sop_instance_uids)
            kept = tuple(i for i in entry.series.instances if i.sop_instance_uid not in left_out)
            entry = replace(entry, series=replace(entry.series, instances=kept or
                                                  entry.series.instances),
                            warnings=entry.warnings + row.warnings)
        entries.append(entry)
    return replace(result, entries=tuple(entries))


def _fill_in_extras(client: Client, ranked: list[WorklistRow], result: indexing.IndexResult,
                    outputs: SeriesOutputs, progress: ScanProgress,
                    resources: dict[str, float] | None) -> tuple[str, ...]:
    """Review pages and DICOM asked for but absent for a flagged series (a series resumed from
    a sweep run without them, or whose writing failed, a full disk say) are written now; the
    keys of those still without them afterwards."""
    if outputs.review_dir is None and outputs.dicom_out is None:
        return ()
    by_key = {e.series.key: e for e in result.eligible}
    flagged = [r for r in ranked if r.status == OK and r.flagged and r.series_key in by_key]
    lacking = [r for r in flagged if _missing_extras(by_key[r.series_key].series, outputs)]
    if not lacking:
        return ()
    progress.on_notice(f"writing the review pages or DICOM missing for {len(lacking)} flagged "
                       "series")
    futures = [client.submit(write_extras_again, by_key[r.series_key].series, r, outputs,
                             pure=False, resources=resources) for r in lacking]
    wait(futures)
    still = tuple(r.series_key for r in lacking
                  if _missing_extras(by_key[r.series_key].series, outputs))
    if still:
        progress.on_notice(f"{len(still)} flagged series still lack their review page or DICOM "
                           f"(run the sweep again to retry): {', '.join(still)}")
    return still


def _missing_extras(series: Series, outputs: SeriesOutputs) -> bool:
    from screen.dicom_out.sources import output_path
    from screen.review import page_path

    if outputs.review_dir is not None and not page_path(outputs.review_dir, series.key).is_file():
        return True
    return outputs.dicom_out is not None and not all(
        output_path(outputs.dicom_out, series, kind).is_file() for kind in ("sr", "seg"))


def _screen_all(client: Client, todo: list[InventoryEntry], store: worklist.PartStore,
                outputs: SeriesOutputs, progress: ScanProgress, total: int,
                resources: dict[str, float] | None = None) -> None:
    """Screen every entry with a bounded window of futures, flushing rows to part files.

    A series lost with its worker is screened again at the end, alone: Dask counts a worker's
    death against every series sent to it (dask/distributed#5234), so only a death with nothing
    else on the cluster says which series it died of. The others then get their scores.
    """
    window = max(2, SERIES_PER_WORKER * len(client.scheduler_info(n_workers=-1)["workers"]))
    queue = list(reversed(todo))
    pending: dict[Future, InventoryEntry] = {}
    lost: list[InventoryEntry] = []
    rows = _Rows(store, progress, outputs.threshold, total - len(todo), total)
    rows.report()
    while queue or pending:
        while queue and len(pending) < window:
            entry = queue.pop()
            pending[_submit(client, entry, outputs, resources)] = entry
        completed, _ = wait(list(pending), return_when="FIRST_COMPLETED")
        for future in completed:
            entry = pending.pop(future)
            if _died_with_its_worker(future):
                lost.append(entry)
            else:
                rows.add(_row_of(future, entry, outputs))
        rows.report()
    if lost:
        progress.on_notice(f"{len(lost)} series were lost with a worker that died; screening "
                           "each again, alone, to find which one it died of")
    for entry in lost:
        rows.add(_row_of(_submit(client, entry, outputs, resources, alone=True), entry,
                         outputs))
        rows.report()
    rows.flush()


def _died_with_its_worker(future: Future) -> bool:
    return future.status == "error" and isinstance(future.exception(), KilledWorker)


class _Rows:
    """Finished rows: counted for the progress display, flushed to part files in batches."""

    def __init__(self, store: worklist.PartStore, progress: ScanProgress, threshold: float,
                 finished: int, total: int) -> None:
        self._store, self._progress, self._threshold = store, progress, threshold
        self._buffered: list[WorklistRow] = []
        self._last_flush = time.monotonic()
        self.finished, self.total, self.flagged, self.errors = finished, total, 0, 0

    def add(self, row: WorklistRow) -> None:
        self._buffered.append(row)
        self.finished += 1
        self.flagged += worklist.flagged_count([row], self._threshold)
        self.errors += row.status == ERROR

    def report(self) -> None:
        self._progress.on_series(self.finished, self.total, self.flagged, self.errors)
        if len(self._buffered) >= FLUSH_ROWS or \
                time.monotonic() - self._last_flush > FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        self._store.write(self._buffered)
        self._buffered, self._last_flush = [], time.monotonic()


def _submit(client: Client, entry: InventoryEntry, outputs: SeriesOutputs,
            resources: dict[str, float] | None, alone: bool = False) -> Future:
    """One task per series: load, preprocess, postprocess and write its outputs where
    ``resources`` say (the CPU workers, with GPU workers about); only its networks' inputs go
    to the GPU, through the worker's runners (screen.backends.service)."""
    # A second try needs keys of its own: the scheduler may still hold the first, erred.
    name = f"{entry.series.key}-alone" if alone else entry.series.key
    return client.submit(screen_series, entry.series, bool(entry.confirm), outputs,
                         key=f"screen-{name}", pure=False, resources=resources)


def _review_top(client: Client, ranked: list[WorklistRow], result: indexing.IndexResult,
                top: int, outputs: SeriesOutputs, resources: dict[str, float] | None) -> None:
    """Key images for the ``top`` highest-scoring series that were not flagged (flagged ones
    have theirs already, drawn while their volume was in memory)."""
    rows = worklist.highest_unflagged(ranked, top)
    by_key = {e.series.key: e for e in result.eligible}
    futures = [client.submit(review_series, by_key[r.series_key].series, r, outputs,
                             pure=False, resources=resources)
               for r in rows if r.series_key in by_key]
    for future in futures:
        try:
            future.result()
        except Exception as exc:  # noqa: BLE001 - a missing picture must not lose the worklist
            logger.warning("could not draw review images: %s", exc)


def _row_of(future: Future, entry: InventoryEntry, outputs: SeriesOutputs) -> WorklistRow:
    """The row a task returned, or an error row when the task itself was lost."""
    try:
        return future.result()
    except Exception as exc:  # noqa: BLE001 - a lost task (KilledWorker) must still leave a row
        logger.info("series %s failed: %s", entry.series.key, exc)
        reason = f"{type(exc).__name__}: {exc}"
        if isinstance(exc, KilledWorker):
            reason = ("the worker screening this series died, also with no other series on the "
                      "cluster (out of memory?): " + reason)
        row = worklist.row(entry.series, unknown_producer(), error=reason)
        pseudonymizer = outputs.pseudonymizer()
        if pseudonymizer is None:
            return row
        indexing.observe_identity(pseudonymizer, entry.series)
        return pseudonymizer.pseudonymize_worklist_row(row)
