"""The `screen` command line: thin commands that call the library and turn its errors into
clear messages and exit codes. Progress and summaries go to stderr; nothing else prints.
"""

from __future__ import annotations

import copy
import logging
import os
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from screen import __version__


class _NamedCommandOnly(typer.Typer):
    """A Typer that builds only the command its command line names. Typer makes every
    command's options when it builds the whole group; a command should not wait for those of
    all the others. Help of the whole, --version and a misspelt name get the whole group."""

    def __call__(self, args: list[str] | None = None, **kwargs: Any) -> Any:
        named = next((a for a in (sys.argv[1:] if args is None else args)
                      if a not in ("-v", "--verbose")), None)
        only = copy.copy(self)
        only.registered_commands = [c for c in self.registered_commands if c.name == named]
        only.registered_groups = [g for g in self.registered_groups if g.name == named]
        if not (only.registered_commands or only.registered_groups):
            only = self
        return typer.Typer.__call__(only, args, **kwargs)


app = _NamedCommandOnly(
    add_completion=False,
    no_args_is_help=True,
    help="Sweep an imaging archive for abdominal CTs and rank suspicious pancreata for review.",
)
err = Console(stderr=True)
logger = logging.getLogger(__name__)

def _existing_archives(values: list[str]) -> list[str]:
    # Folders and files must exist; a DICOMweb address (dicomweb+https://...) is checked by
    # asking the PACS, before any work.
    for value in values:
        if not value.startswith("dicomweb+") and not Path(value).exists():
            raise typer.BadParameter(f"Path '{value}' does not exist.")
    return values


Archives = Annotated[list[str], typer.Argument(
    help="Archive folders or files to crawl, or one PACS as dicomweb+https://HOST/PATH.",
    callback=_existing_archives, show_default=False, metavar="ARCHIVES...")]
RulesOption = Annotated[Path | None, typer.Option(
    "--rules", help="Selection rules file (TOML); default: the rules shipped with screen.",
    exists=True, dir_okay=False)]
WorkersOption = Annotated[int | None, typer.Option(
    "--workers", min=1, help="Worker processes for reading headers (default: one per core).")]
FollowLinksOption = Annotated[bool, typer.Option(
    "--follow-links", help="Follow symbolic links that lead out of the archive (by default "
    "they are listed in the errors and not followed).")]


# The choices of scan's --backend and --precision, spelled out so that `screen --help` loads
# no backend; tests hold them to screen.backends' own registry and precisions.
class Backend(str, Enum):
    auto = "auto"
    tensorrt = "tensorrt"
    torch = "torch"
    onnxruntime = "onnxruntime"


class Precision(str, Enum):
    fp32 = "fp32"
    fp16 = "fp16"
    int8 = "int8"


class Transit(str, Enum):
    auto = "auto"
    float32 = "float32"
    float16 = "float16"

# Options of a PACS sweep (an ARCHIVES argument of dicomweb+https://HOST/PATH).
SinceOption = Annotated[str | None, typer.Option(
    "--since", help="PACS: studies from this StudyDate on (YYYYMMDD).", show_default=False)]
UntilOption = Annotated[str | None, typer.Option(
    "--until", help="PACS: studies up to this StudyDate (YYYYMMDD).", show_default=False)]
ModalityOption = Annotated[str, typer.Option(
    "--modality", help="PACS: the modality of the series to take.")]
StudyUidsOption = Annotated[Path | None, typer.Option(
    "--study-uid", help="PACS: only the studies whose StudyInstanceUIDs this file lists, one a "
    "line.", exists=True, dir_okay=False, show_default=False)]
AccessionsOption = Annotated[Path | None, typer.Option(
    "--accession", help="PACS: only the studies whose accession numbers this file lists, one a "
    "line.", exists=True, dir_okay=False, show_default=False)]
AuthOption = Annotated[str | None, typer.Option(
    "--auth", help="PACS credentials: basic:USER:PASSWORD-FILE or token:TOKEN-FILE (the file "
    "holds the secret; never put it on the command line).", show_default=False)]
CaBundleOption = Annotated[Path | None, typer.Option(
    "--ca-bundle", help="PACS: verify its TLS certificate against this CA bundle (TLS is always "
    "verified).", exists=True, dir_okay=False, show_default=False)]
MaxConnectionsOption = Annotated[int, typer.Option(
    "--max-connections", min=1, help="PACS: at most this many requests at once.")]


def _pacs_source(archives: list[str], *, since: str | None, until: str | None,
                 modality: str, study_uids: Path | None, accessions: Path | None,
                 auth: str | None, ca_bundle: Path | None, max_connections: int,
                 cache: Path | None = None):
    """The PACS to sweep when ARCHIVES is one DICOMweb address, checked by asking it; None for
    files. A bad address, filter or credential fails here, in one line, before any work."""
    from screen.dicomweb.address import is_pacs_address

    if not any(is_pacs_address(a) for a in archives):
        if any(o is not None for o in (since, until, study_uids, accessions, auth, ca_bundle,
                                       cache)):
            raise fail("--since, --until, --study-uid, --accession, --auth, --ca-bundle and "
                       "--cache apply to a PACS (dicomweb+https://HOST/PATH) only")
        return None
    if len(archives) != 1:
        raise fail("sweep one PACS at a time, and not together with folders")
    from screen.dicomweb import Filters, PacsAddress, PacsSource, parse_auth
    from screen.dicomweb.connection import Connection, PacsError

    try:
        filters = Filters(since=since or "", until=until or "", modality=modality.upper(),
                          study_uids=_lines(study_uids), accessions=_lines(accessions))
        connection = Connection(PacsAddress.parse(archives[0]),
                                parse_auth(auth) if auth else None,
                                verify=ca_bundle or True, max_connections=max_connections)
        connection.check()
    except (ValueError, PacsError) as exc:
        raise fail(str(exc)) from None
    return PacsSource(connection, filters, cache)


def _store_target(text: str | None, pacs):
    """Where --store-results sends results; the swept PACS's credentials go with them when
    it is the same service."""
    if text is None:
        return None
    from screen.dicomweb.store import StoreTarget

    try:
        return StoreTarget.parse(text, like=pacs.connection if pacs else None)
    except ValueError as exc:
        raise fail(str(exc)) from None


def _folders(archives: list[str]) -> list[Path]:
    """The archives that are folders or files, not a PACS."""
    from screen.dicomweb.address import is_pacs_address

    return [Path(a) for a in archives if not is_pacs_address(a)]


def _lines(path: Path | None) -> tuple[str, ...]:
    if path is None:
        return ()
    return tuple(line.strip() for line in path.read_text().splitlines() if line.strip())


def fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code)


def version_callback(value: bool) -> None:
    if value:
        typer.echo(f"screen {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log each step.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=version_callback,
                                          is_eager=True, help="Print the version.")] = False,
) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if not verbose:
        # Dask reports every worker start and stop; a sweep's user needs only its failures.
        # Said through the environment, which Dask reads when first imported: commands that
        # never start a cluster then never load it.
        os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "error")
        for name in ("distributed", "distributed.nanny", "distributed.scheduler",
                     "distributed.core", "distributed.worker"):
            logging.getLogger(name).setLevel(logging.ERROR)


@app.command("index")
def index_command(
    archives: Archives,
    out: Annotated[Path, typer.Option("--out", help="Inventory to write (Parquet).")] = Path(
        "inventory.parquet"),
    errors: Annotated[Path | None, typer.Option(
        "--errors", help="Errors table (default: errors.parquet beside --out).")] = None,
    rules: RulesOption = None,
    workers: WorkersOption = None,
    follow_links: FollowLinksOption = False,
    since: SinceOption = None,
    until: UntilOption = None,
    modality: ModalityOption = "CT",
    study_uid: StudyUidsOption = None,
    accession: AccessionsOption = None,
    auth: AuthOption = None,
    ca_bundle: CaBundleOption = None,
    max_connections: MaxConnectionsOption = 4,
) -> None:
    """Crawl archives and decide which series to screen, reading headers only (no pixels)."""
    from screen.atomic import check_writable
    from screen.index import index, summary, write_outputs
    from screen.outputs import refuse_inside_archives
    from screen.select import load_rules

    errors_path = errors or out.with_name("errors.parquet")
    try:
        refuse_inside_archives(_folders(archives), {"--out": out, "--errors": errors})
        loaded = load_rules(rules)
    except ValueError as exc:
        raise fail(str(exc)) from None
    pacs = _pacs_source(archives, since=since, until=until, modality=modality,
                        study_uids=study_uid, accessions=accession, auth=auth,
                        ca_bundle=ca_bundle, max_connections=max_connections)
    try:
        for path in (out, errors_path):  # before any work, not after it
            check_writable(path)
    except OSError as exc:
        raise fail(str(exc)) from None
    roots = [] if pacs else [Path(a) for a in archives]
    with _file_progress() as progress:
        if pacs is not None:
            from screen.dicomweb.connection import PacsError
            from screen.dicomweb.sweep import index_pacs

            try:
                result = index_pacs(pacs, rules=loaded, progress=progress)
            except PacsError as exc:
                raise fail(str(exc)) from None
        else:
            result = index(roots, rules=loaded, workers=workers, progress=progress,
                           follow_links=follow_links)
    write_outputs(result, out, errors_path, rules=loaded, roots=roots)
    _print_summary(summary(result), {"inventory": out, "errors": errors_path})


@app.command("scan")
def scan_command(
    archives: Archives,
    out: Annotated[Path, typer.Option("--out", help="Worklist to write (Parquet).")] = Path(
        "worklist.parquet"),
    inventory: Annotated[Path | None, typer.Option(
        "--inventory", help="Inventory (default: inventory.parquet beside --out).")] = None,
    errors: Annotated[Path | None, typer.Option(
        "--errors", help="Errors table (default: errors.parquet beside --out).")] = None,
    model: Annotated[str, typer.Option("--model", help="Model package name or folder.")] = (
        "pancreas-phantom-v1"),
    backend: Annotated[Backend, typer.Option(
        "--backend", help="Where the networks run (auto: the fastest this machine has).")] = (
        Backend.auto),
    precision: Annotated[Precision, typer.Option(
        "--precision", help="Numeric precision (fp16 and int8 need an engine built by "
        "build-engine).")] = Precision.fp32,
    workers: Annotated[int | None, typer.Option(
        "--workers", min=1, help="CPU worker processes (default: one per core).")] = None,
    gpus: Annotated[int | None, typer.Option(
        "--gpus", min=0, help="GPUs to use (default: all NVML sees; 0 for none).")] = None,
    gpu_batch: Annotated[int | None, typer.Option(
        "--gpu-batch", min=1, help="Most network inputs a GPU runs at once, across series "
        "(default: as many as half its free memory holds).")] = None,
    gpu_transit: Annotated[Transit, typer.Option(
        "--gpu-transit", help="What network inputs and outputs travel as between CPU and GPU "
        "workers (auto: float16 to and from a GPU, float32 from a CPU standing in for "
        "one).")] = Transit.auto,
    scheduler: Annotated[str | None, typer.Option(
        "--scheduler", help="Use a running Dask cluster, e.g. tls://10.0.0.5:8786.")] = None,
    scheduler_security: Annotated[Path | None, typer.Option(
        "--scheduler-security", help="Dask configuration file with the TLS CA, certificate and "
        "key to reach a --scheduler cluster that uses TLS.", exists=True,
        dir_okay=False)] = None,
    worker_memory: Annotated[str | None, typer.Option(
        "--worker-memory", help="Memory each local worker may use, e.g. 4GiB. A worker that "
        "goes over is restarted; a series that does it on its own is an error row (default: "
        "no limit).")] = None,
    resume: Annotated[bool, typer.Option(
        "--resume/--no-resume", help="Skip series this model already scored into --out.")] = True,
    threshold: Annotated[float | None, typer.Option(
        "--threshold", min=0.0, max=1.0, help="Flag at this score (default: the model's).")] = None,
    rules: RulesOption = None,
    review_dir: Annotated[Path | None, typer.Option(
        "--review-dir", help="Write key images and an offline HTML report for flagged series.",
        file_okay=False)] = None,
    review_top: Annotated[int, typer.Option(
        "--review-top", min=0, help="Also draw the N highest-scoring series that were not "
        "flagged.")] = 0,
    viewer_url: Annotated[str | None, typer.Option(
        "--viewer-url", help="Link each review row and page to the site's viewer, e.g. "
        "'https://pacs.example/viewer?StudyInstanceUIDs={study}'; {study}, {series} and "
        "{accession} are filled in, URL-encoded. With --pseudonymize only {study} and {series} "
        "may be used: the UIDs stay real, the accession number does not.")] = None,
    dicom_out: Annotated[Path | None, typer.Option(
        "--dicom-out", help="Write a DICOM SR and SEG for each flagged series (for the PACS).",
        file_okay=False)] = None,
    pseudonymize: Annotated[bool, typer.Option(
        "--pseudonymize", help="Replace patient ID, accession and paths holding them by keyed "
        "pseudonyms in the worklist, inventory, errors and review pages.")] = False,
    pseudonymize_key: Annotated[Path | None, typer.Option(
        "--pseudonymize-key", help="Key file (created with a new random key if absent; "
        "keep it to re-identify).", dir_okay=False)] = None,
    follow_links: FollowLinksOption = False,
    since: SinceOption = None,
    until: UntilOption = None,
    modality: ModalityOption = "CT",
    study_uid: StudyUidsOption = None,
    accession: AccessionsOption = None,
    auth: AuthOption = None,
    ca_bundle: CaBundleOption = None,
    max_connections: MaxConnectionsOption = 4,
    cache: Annotated[Path | None, typer.Option(
        "--cache", help="PACS: keep the series retrieved in this folder (default: pixels are "
        "never written to disk).", file_okay=False, show_default=False)] = None,
    store_results: Annotated[str | None, typer.Option(
        "--store-results", help="Send each flagged series' SR and SEG to dicomweb+https://HOST/"
        "PATH (STOW-RS) or dimse://AET@HOST:PORT (C-STORE); the worklist records whether it "
        "was stored.", show_default=False)] = None,
    since_last_run: Annotated[bool, typer.Option(
        "--since-last-run", help="PACS: sweep only the studies new or changed since the last "
        "sweep into --out (remembered in a small file beside it).")] = False,
) -> None:
    """Index archives, screen every eligible series and write the ranked worklist."""
    from screen.outputs import refuse_inside_archives
    from screen.pseudonym import create_key_file
    from screen.scan import ScanOptions, scan

    if pseudonymize != (pseudonymize_key is not None):
        raise fail("--pseudonymize and --pseudonymize-key go together")
    if scheduler_security is not None and not scheduler:
        raise fail("--scheduler-security goes with --scheduler (a local cluster makes its own)")
    if review_top and review_dir is None:
        raise fail("--review-top needs --review-dir")
    if viewer_url is not None:
        from screen.review.viewer import ViewerLink

        if review_dir is None:
            raise fail("--viewer-url needs --review-dir")
        try:
            link = ViewerLink(viewer_url)
            if pseudonymize:
                link.check_pseudonymized()
        except ValueError as exc:
            raise fail(str(exc)) from None
    if worker_memory is not None and scheduler:
        raise fail("--worker-memory sizes local workers; give the workers of a --scheduler "
                   "cluster --memory-limit when you start them")
    memory_limit = 0 if worker_memory is None else _bytes("--worker-memory", worker_memory)
    try:
        # Before anything is written or shown (the library checks again, for its callers).
        refuse_inside_archives(_folders(archives), {
            "--out": out, "--inventory": inventory, "--errors": errors,
            "--review-dir": review_dir, "--dicom-out": dicom_out,
            "--pseudonymize-key": pseudonymize_key})
    except ValueError as exc:
        raise fail(str(exc)) from None
    if pseudonymize_key is not None and not pseudonymize_key.exists():
        create_key_file(pseudonymize_key)
        err.print(f"created a new pseudonymisation key in {pseudonymize_key}; keep it safe",
                  highlight=False)
    pacs = _pacs_source(archives, since=since, until=until, modality=modality,
                        study_uids=study_uid, accessions=accession, auth=auth,
                        ca_bundle=ca_bundle, max_connections=max_connections, cache=cache)
    roots = [] if pacs else [Path(a) for a in archives]
    if since_last_run and pacs is None:
        raise fail("--since-last-run applies to a PACS (dicomweb+https://HOST/PATH) only")
    target = _store_target(store_results, pacs)
    options = ScanOptions(model=model, backend=backend.value, precision=precision.value,
                          workers=workers,
                          gpus=gpus, scheduler=scheduler, scheduler_security=scheduler_security,
                          worker_memory=memory_limit,
                          resume=resume, threshold=threshold,
                          rules=rules, review_dir=review_dir, review_top=review_top,
                          viewer_url=viewer_url, dicom_out=dicom_out,
                          pseudonymize_key=pseudonymize_key,
                          follow_links=follow_links, pacs=pacs,
                          store_results=target, since_last_run=since_last_run,
                          gpu_batch=gpu_batch, gpu_transit=gpu_transit.value)
    try:
        with _scan_progress() as progress:
            summary = scan(roots, out, inventory=inventory, errors=errors, options=options,
                           progress=progress)
    except (ValueError, OSError) as exc:
        raise fail(str(exc)) from None
    _print_summary({
        "files found": summary.files_found, "errors by stage": summary.errors_by_stage,
        "series": summary.series, "rejected by rule": summary.rejected_by_rule,
        "abdominal by tags rejected for geometry": summary.abdominal_rejected_for_geometry,
        "eligible": summary.eligible, "already scored (resumed)": summary.resumed,
        "scored": summary.scored, "failed (see error column)": summary.failed,
        "flagged": summary.flagged,
    }, {"worklist": summary.worklist, "inventory": summary.inventory, "errors": summary.errors},
        title="screen scan")
    if summary.eligible and not summary.scored and summary.failed:
        raise fail(f"all {summary.failed} eligible series failed; the error column of "
                   f"{summary.worklist} says why", code=1)


@app.command("synth")
def synth_command(
    out: Annotated[Path, typer.Argument(help="Folder to create (must not exist or be empty).")],
    cases: Annotated[int, typer.Option("--cases", min=1, help="Patients to generate.")] = 8,
    seed: Annotated[int, typer.Option("--seed", help="Random seed; same seed, same archive.")] = 0,
    matrix: Annotated[int, typer.Option("--matrix", min=32, max=1024,
                                        help="Image size in pixels (rows = columns).")] = 256,
) -> None:
    """Write a synthetic PACS-like archive of abdominal CT phantoms with ground truth."""
    from screen.synth.archive import write_archive

    try:
        result = write_archive(out, cases, seed=seed, matrix=matrix)
    except ValueError as exc:
        raise fail(str(exc)) from None
    err.print(f"wrote {result.files} files in {result.series} series ({result.lesion_cases} of "
              f"{result.cases} cases with a lesion, {result.junk_files} junk files) to "
              f"{result.archive}; ground truth in {result.truth_csv}", highlight=False)


@app.command("evaluate")
def evaluate_command(
    worklist: Annotated[Path, typer.Argument(help="Worklist written by screen scan.",
                                             exists=True, dir_okay=False)],
    truth: Annotated[Path | None, typer.Option("--truth", help="Truth CSV (series_instance_uid,"
                                               "label,lesion_x_mm,...).", exists=True,
                                               dir_okay=False)] = None,
    decisions: Annotated[Path | None, typer.Option(
        "--decisions", help="Reviewers' decisions (decisions.parquet in a review folder): the "
        "flags' positive predictive value and the reviewers' agreement.", exists=True,
        dir_okay=False)] = None,
    threshold: Annotated[float | None, typer.Option(
        "--threshold", min=0.0, max=1.0,
        help="Operating threshold (default: the worklist's flagged column).")] = None,
    replicates: Annotated[int, typer.Option("--replicates", min=100,
                                            help="Bootstrap replicates.")] = 1000,
    seed: Annotated[int, typer.Option("--seed", help="Bootstrap seed.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
    plot: Annotated[Path | None, typer.Option("--plot", help="Write the ROC curve as PNG.")] = None,
) -> None:
    """AUROC, sensitivity and specificity with 95% CIs, localisation, by lesion size and place;
    with --decisions, the flags against the reviewers."""
    import json

    from screen.evaluate import evaluate, plot_roc, render_table

    if truth is None and decisions is None:
        raise fail("give --truth, --decisions or both")
    if decisions is not None:
        from screen.evaluate_decisions import evaluate_decisions

        try:
            reviewed = evaluate_decisions(worklist, decisions)
        except (ValueError, OSError) as exc:
            raise fail(str(exc)) from None
        if as_json and truth is None:
            typer.echo(json.dumps(reviewed.to_dict(), indent=2))
        else:
            for line in reviewed.lines():
                err.print(line, highlight=False)
    if truth is None:
        return
    try:
        result = evaluate(worklist, truth, threshold=threshold, replicates=replicates, seed=seed)
    except (ValueError, OSError) as exc:
        raise fail(str(exc)) from None
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
    else:
        Console().print(render_table(result))
    if plot is not None:
        plot_roc(result, plot)
        err.print(f"ROC curve written to {plot}", highlight=False)


@app.command("build-engine")
def build_engine_command(
    fp16: Annotated[bool, typer.Option("--fp16", help="Mixed-precision FP16 ONNX.")] = False,
    int8: Annotated[bool, typer.Option("--int8", help="INT8 Q/DQ ONNX (needs --calib).")] = False,
    model: Annotated[str, typer.Option("--model", help="Model package name or folder.")] = (
        "pancreas-phantom-v1"),
    calib: Annotated[Path | None, typer.Option(
        "--calib", help="Calibration: an archive to draw series from, or a saved .npz.",
        exists=True)] = None,
    validate: Annotated[Path | None, typer.Option(
        "--validate", help="Archive with truth.csv beside it for the accuracy gate "
        "(default: held-out phantoms).", exists=True)] = None,
    out: Annotated[Path | None, typer.Option(
        "--out", help="Engine cache folder (default: ~/.cache/screen/engines).")] = None,
    force: Annotated[bool, typer.Option(
        "--force", help="Register even if AUROC drops by more than 0.02 (recorded).")] = False,
    method: Annotated[str, typer.Option("--method", help="INT8 calibration: max or entropy.")] = (
        "max"),
    gate_cases: Annotated[int, typer.Option("--gate-cases", min=4,
                                            help="Phantoms for the default gate.")] = 12,
) -> None:
    """Build FP16 or INT8 ONNX (checked with ONNX Runtime) and, where TensorRT and a GPU
    exist, a TensorRT plan for this GPU. Everything goes to the engine cache."""
    from screen.engines.build import build_engine

    if fp16 == int8:
        raise fail("choose exactly one of --fp16 and --int8")
    try:
        result = build_engine(model, "fp16" if fp16 else "int8", calib=calib, validate=validate,
                              out=out, force=force, method=method, gate_cases=gate_cases)
    except (ValueError, OSError) as exc:
        raise fail(str(exc)) from None
    if result.gate is not None:
        err.print(result.gate.summary(), highlight=False)
    for artifact in (*result.onnx, *result.plans):
        err.print(f"built {artifact.path}", highlight=False)
    err.print(result.tensorrt, highlight=False)


@app.command("doctor")
def doctor_command(
    model: Annotated[str, typer.Option("--model", help="Model package name or folder.")] = (
        "pancreas-phantom-v1"),
    cache: Annotated[Path | None, typer.Option("--cache", help="Engine cache folder.")] = None,
) -> None:
    """What this machine offers (GPUs, CUDA, TensorRT, ONNX Runtime, engines) and what
    `scan --backend auto` would use, and why."""
    from screen.doctor import doctor_report, render_doctor

    render_doctor(doctor_report(model=model, cache=cache))


@app.command("review")
def review_command(
    folder: Annotated[Path, typer.Argument(help="Review report folder (--review-dir of a scan).",
                                           exists=True, file_okay=False)],
    reviewer: Annotated[str | None, typer.Option(
        "--reviewer", help="Name recorded with each decision (default: your login name).")] = None,
    port: Annotated[int, typer.Option("--port", min=0, max=65535,
                                      help="Port on 127.0.0.1 (default: any free one).")] = 0,
) -> None:
    """Serve a review report on this machine, so that reviewers can record agree, disagree or
    unsure and a note for each series, into decisions.parquet in the report folder."""
    import getpass

    from screen.review.server import ReviewServer

    try:
        server = ReviewServer(folder, reviewer or getpass.getuser(), port=port)
    except (ValueError, OSError) as exc:
        raise fail(str(exc)) from None
    err.print(f"reviewing as {server.reviewer}; open {server.url}\n"
              "the address holds a key: share it only with reviewers. Ctrl-C stops.",
              highlight=False)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()


@app.command("monitor")
def monitor_command(
    sweeps: Annotated[list[Path], typer.Argument(help="Worklists of the sweeps, oldest first.",
                                                 exists=True, dir_okay=False, show_default=False)],
    reference: Annotated[Path | None, typer.Option(
        "--reference", help="Worklist to compare against (default: the first sweep).",
        exists=True, dir_okay=False)] = None,
    decisions: Annotated[list[Path] | None, typer.Option(
        "--decisions", help="Reviewers' decisions.parquet, for calibration (repeatable).",
        exists=True, dir_okay=False)] = None,
    html: Annotated[Path, typer.Option("--html", help="Page with plots to write.")] = Path(
        "monitor.html"),
    summary: Annotated[Path, typer.Option("--json", help="JSON summary to write.")] = Path(
        "monitor.json"),
    psi_threshold: Annotated[float, typer.Option(
        "--psi-threshold", min=0.0, help="A population stability index above this is a "
        "shift.")] = 0.25,
    fail_on_shift: Annotated[bool, typer.Option(
        "--fail-on-shift", help="Exit with status 1 when any sweep shifted.")] = False,
) -> None:
    """Compare sweeps over time: score distribution, flagged, pancreas-found and rejection
    rates, and the inputs (slice thickness, kernel, contrast phase, scanner)."""
    from screen.atomic import write_bytes_atomic
    from screen.monitor.drift import monitor
    from screen.monitor.report import write_html

    try:
        report = monitor(sweeps, reference, decisions=decisions or (), psi_threshold=psi_threshold)
        write_html(report, html)
        write_bytes_atomic(summary, report.to_json().encode())
    except (ValueError, OSError) as exc:
        raise fail(str(exc)) from None
    for sweep, shift in report.shifted:
        err.print(f"[bold yellow]warning:[/] {sweep}: {shift.what} shifted from "
                  f"{report.reference} (PSI {shift.psi:.2f} > {psi_threshold})", highlight=False)
    err.print(f"{len(report.sweeps)} sweeps against {report.reference}: "
              f"{len(report.shifted)} shifts; plots in {html}, summary in {summary}",
              highlight=False)
    if fail_on_shift and report.shifted:
        raise typer.Exit(1)


def _bytes(option: str, text: str) -> int:
    """A size such as 4GiB, 1.5GB or 800MB, in bytes, or a failure that names the option."""
    from dask.utils import parse_bytes

    try:
        size = parse_bytes(text)
    except ValueError:
        raise fail(f"{option}: {text!r} is not a size such as 4GiB or 800MB") from None
    if size <= 0:
        raise fail(f"{option} must be more than 0, got {text!r}")
    return size


class _file_progress:
    """A rich progress display fed by the library's progress callbacks."""

    def __enter__(self):
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
        )

        from screen.index import Progress as Callbacks

        self._bar = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                             MofNCompleteColumn(), TextColumn("{task.fields[errors]} errors"),
                             TimeElapsedColumn(), console=err, transient=False)
        self._bar.start()
        self._task = self._bar.add_task("reading headers", total=None, errors=0)
        return Callbacks(on_files=self._files, on_stage=self._stage)

    def _files(self, read: int, errors: int) -> None:
        self._bar.update(self._task, completed=read, errors=errors)

    def _stage(self, name: str) -> None:
        self._bar.update(self._task, description=name)

    def __exit__(self, *exc: object) -> None:
        self._bar.update(self._task, description="files indexed")
        self._bar.stop()


class _scan_progress(_file_progress):
    """Files read, then series screened and flagged so far."""

    def __enter__(self):
        from screen.scan import ScanProgress

        callbacks = super().__enter__()
        self._series = None
        return ScanProgress(index=callbacks, on_cluster=self._cluster, on_series=self._on_series,
                            on_notice=self._notice)

    def _notice(self, text: str) -> None:
        err.print(f"[bold yellow]notice:[/] {text}", highlight=False)

    def _cluster(self, where: str) -> None:
        if where.startswith("http"):
            err.print(f"Dask dashboard: {where}", highlight=False)
        elif where:
            err.print(f"using the Dask cluster at {where}", highlight=False)

    def _on_series(self, done: int, total: int, flagged: int, errors: int) -> None:
        if self._series is None:
            self._series = self._bar.add_task("screening series", total=total, errors=0)
        self._bar.update(self._series, completed=done, total=total, errors=errors,
                         description=f"screening series ({flagged} flagged)")


def _print_summary(numbers: dict[str, object], outputs: dict[str, Path],
                   title: str = "screen index") -> None:
    table = Table(title=title, show_header=False, title_justify="left")
    for key, value in numbers.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}: {v}" for k, v in value.items()) or "none"
        table.add_row(key.replace("_", " "), str(value))
    for name, path in outputs.items():
        table.add_row(name, str(path))
    err.print(table)


# --- nnU-Net models: import-model, predict ------------------------------------------------

import_model_app = typer.Typer(no_args_is_help=True, help=(
    "Turn a trained model from another framework into a model package that scan, predict and "
    "calibrate can run."))
app.add_typer(import_model_app, name="import-model")


@import_model_app.command("nnunet")
def import_nnunet_command(
    folder: Annotated[Path, typer.Argument(
        help="An nnU-Net v2 trained-model folder (<Trainer>__<Plans>__<configuration>) holding "
             "plans.json, dataset.json and fold_N/ folders.", show_default=False)],
    out: Annotated[Path, typer.Option("--out", help="The package folder to write (must not exist).",
                                      show_default=False)],
    folds: Annotated[str | None, typer.Option(
        "--folds", help="Folds to use, e.g. 0,1,2 (default: every fold present).")] = None,
    checkpoint: Annotated[str, typer.Option(
        "--checkpoint", help="Checkpoint file in each fold folder.")] = "checkpoint_final.pth",
    mirroring: Annotated[bool | None, typer.Option(
        "--mirroring/--no-mirroring",
        help="Test-time mirroring (default: as the checkpoint allows, as nnU-Net does).",
        show_default=False)] = None,
    name: Annotated[str | None, typer.Option("--name", help="The package's name.")] = None,
    lesion_label: Annotated[str | None, typer.Option(
        "--lesion-label", help="The lesion class, by name or number (default: found by name).")] = None,
    pancreas_label: Annotated[str | None, typer.Option(
        "--pancreas-label", help="The pancreas class, by name or number (default: found by name).")] = None,
    tile_step: Annotated[float, typer.Option(
        "--tile-step", help="Sliding-window step as a fraction of the patch (nnU-Net: 0.5).")] = 0.5,
    orientation: Annotated[str, typer.Option(
        "--orientation", help="How the training images' voxel axes ran: LPS (as read from DICOM) "
                              "or RAS (canonical NIfTI, as TotalSegmentator's).")] = "LPS",
    recipe: Annotated[str, typer.Option(
        "--recipe", help="single: this model alone; panorama: the PANORAMA baseline's two "
                         "stages, with --localiser finding the pancreas first.")] = "single",
    localiser: Annotated[Path | None, typer.Option(
        "--localiser", help="With --recipe panorama: the pancreas model's trained-model folder "
                            "(the baseline's low-resolution model, or TotalSegmentator's).")] = None,
    localiser_orientation: Annotated[str, typer.Option(
        "--localiser-orientation", help="As --orientation, for the localiser (RAS for "
                                        "TotalSegmentator).")] = "LPS",
    localiser_tile_step: Annotated[float, typer.Option(
        "--localiser-tile-step", help="As --tile-step, for the localiser (TotalSegmentator: 0.8).")] = 0.5,
) -> None:
    """An nnU-Net v2 trained-model folder (the PANORAMA baseline, TotalSegmentator, a site's own)
    → a model package: the card from its plans, one ONNX per fold, and the weights."""
    from screen.nnunet.folder import NnunetFolderError
    from screen.nnunet.importer import ImportOptions, import_nnunet

    try:
        options = ImportOptions(
            folds=tuple(f.strip() for f in folds.split(",") if f.strip()) if folds else None,
            checkpoint=checkpoint, mirroring=mirroring, name=name, lesion_label=lesion_label,
            pancreas_label=pancreas_label, tile_step=tile_step, orientation=orientation.upper())
        if options.orientation not in ("LPS", "RAS"):
            raise ValueError(f"--orientation must be LPS or RAS, got {orientation!r}")
        if recipe not in ("single", "panorama"):
            raise ValueError(f"--recipe must be single or panorama, got {recipe!r}")
        if (recipe == "panorama") != (localiser is not None):
            raise ValueError("--recipe panorama needs --localiser FOLDER, and --localiser needs "
                             "--recipe panorama")
        located = ImportOptions(name="localiser", orientation=localiser_orientation.upper(),
                                tile_step=localiser_tile_step)
        if located.orientation not in ("LPS", "RAS"):
            raise ValueError(f"--localiser-orientation must be LPS or RAS, got {localiser_orientation!r}")
        card = import_nnunet(folder, out, options, localiser=localiser, localiser_options=located)
    except (NnunetFolderError, ValueError) as exc:
        raise fail(str(exc)) from None
    err.print(f"wrote {out}: {card.name}, {len(card.networks)} fold(s), classes "
              f"{', '.join(card.classes)}; lesion label {card.lesion_label or 'none'}, "
              f"pancreas label {card.pancreas_label or 'none'}", highlight=False)
    if not card.calibrated:
        err.print("[yellow]note:[/] its score is uncalibrated; run screen calibrate on this "
                  "site's labelled series before reading it as a probability", highlight=False)


@app.command("predict")
def predict_command(
    source: Annotated[Path, typer.Argument(
        help="A DICOM series folder or a NIfTI file (.nii, .nii.gz).", exists=True, show_default=False)],
    model: Annotated[str, typer.Option("--model", help="An imported model package (name or folder).",
                                       show_default=False)],
    out: Annotated[Path, typer.Option("--out", help="Label map to write (NIfTI, .nii.gz).",
                                      show_default=False)],
    probabilities: Annotated[Path | None, typer.Option(
        "--probabilities", help="Also write the class probabilities: 4-D float32 NIfTI, one "
                                "volume per class in the model's label order.")] = None,
    backend: Annotated[str, typer.Option("--backend", help="auto, onnxruntime, torch or tensorrt.")] = "auto",
) -> None:
    """One series through one imported model: the label map (and probabilities) in the input's
    own grid, and the Detection printed as JSON."""
    import time

    from screen.model.package import find_package
    from screen.nnunet import recipe
    from screen.nnunet.card import NnunetCard
    from screen.nnunet.predictor import NnunetModel
    from screen.predict import PredictError, detection_json, load_input, write_maps

    for path in (out, probabilities):
        if path is not None and not path.name.lower().endswith((".nii", ".nii.gz")):
            raise fail(f"{path}: outputs are NIfTI files; name them .nii.gz")
    try:
        package = find_package(model)
        if not isinstance(package.card, NnunetCard):
            raise ValueError(f"model {package.card.name!r} is not an imported model; predict runs "
                             "models made by screen import-model")
        runner = NnunetModel.open(package, backend)
        loaded = load_input(source)
    except (PredictError, ValueError) as exc:
        raise fail(str(exc)) from None
    start = time.perf_counter()
    outcome = recipe.run(runner, loaded.volume)
    write_maps(loaded, outcome.probabilities, out, probabilities)
    typer.echo(detection_json(outcome.detection, {
        "model": package.card.name, "model_version": package.card.version,
        "calibrated": package.card.calibrated, "backend": runner.backend,
        "seconds": round(time.perf_counter() - start, 2)}))
    if not package.card.calibrated:
        err.print("[yellow]note:[/] the score is uncalibrated (see the model card)", highlight=False)


@app.command("calibrate")
def calibrate_command(
    archives: Archives,
    model: Annotated[str, typer.Option("--model", help="An imported model package (name or folder).",
                                       show_default=False)],
    truth: Annotated[Path, typer.Option("--truth", help="Truth CSV, as screen evaluate reads it.",
                                        exists=True, dir_okay=False, show_default=False)],
    out: Annotated[Path, typer.Option("--out", help="Folder for the calibrated copy of the package.",
                                      show_default=False)],
    sensitivity: Annotated[float, typer.Option(
        "--sensitivity", min=0.5, max=1.0, help="Share of lesions the threshold must flag.")] = 0.95,
    workers: WorkersOption = None,
) -> None:
    """Calibrate an imported model's score and operating threshold on this site's own labelled
    series; the fit, the threshold and the measured AUROC go into a copy of the package."""
    from screen.nnunet.calibrate import calibrate_package

    try:
        card = calibrate_package(model, archives, truth, out, target_sensitivity=sensitivity,
                                 workers=workers)
    except ValueError as exc:
        raise fail(str(exc)) from None
    measured = card.accuracy["site_calibration"]
    err.print(f"wrote {out}: AUROC {measured['auroc']:.3f} (95 % CI {measured['auroc_95ci'][0]:.3f}-"
              f"{measured['auroc_95ci'][1]:.3f}) on {measured['series']} series, threshold "
              f"{measured['threshold']:.3f}", highlight=False)
