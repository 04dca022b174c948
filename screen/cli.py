"""The `screen` command line: thin commands that call the library and turn its errors into
clear messages and exit codes. Progress and summaries go to stderr; nothing else prints.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from screen import __version__

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Sweep an imaging archive for abdominal CTs and rank suspicious pancreata for review.",
)
err = Console(stderr=True)
logger = logging.getLogger(__name__)

Archives = Annotated[list[Path], typer.Argument(help="Archive folders or files to crawl.", exists=True,
                                                show_default=False)]
RulesOption = Annotated[Path | None, typer.Option(
    "--rules", help="Selection rules file (TOML); default: the rules shipped with screen.",
    exists=True, dir_okay=False)]
WorkersOption = Annotated[int | None, typer.Option(
    "--workers", min=1, help="Worker processes for reading headers (default: one per core).")]


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
        import dask

        dask.config.set({"logging.distributed": "error"})
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
) -> None:
    """Crawl archives and decide which series to screen, reading headers only (no pixels)."""
    from screen.index import index, summary, write_outputs
    from screen.select import load_rules

    try:
        loaded = load_rules(rules)
    except ValueError as exc:
        raise fail(str(exc)) from None
    with _file_progress() as progress:
        result = index(archives, rules=loaded, workers=workers, progress=progress)
    errors_path = errors or out.with_name("errors.parquet")
    write_outputs(result, out, errors_path, rules=loaded, roots=archives)
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
    backend: Annotated[str, typer.Option(
        "--backend", help="auto, tensorrt, torch or onnxruntime.")] = "auto",
    precision: Annotated[str, typer.Option("--precision", help="fp32, fp16 or int8.")] = "fp32",
    workers: Annotated[int | None, typer.Option(
        "--workers", min=1, help="CPU worker processes (default: one per core).")] = None,
    gpus: Annotated[int | None, typer.Option(
        "--gpus", min=0, help="GPUs to use (default: all NVML sees; 0 for none).")] = None,
    scheduler: Annotated[str | None, typer.Option(
        "--scheduler", help="Use a running Dask cluster, e.g. tcp://10.0.0.5:8786.")] = None,
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
        "--review-top", min=0, help="Also draw the N highest scores that were not flagged.")] = 0,
    dicom_out: Annotated[Path | None, typer.Option(
        "--dicom-out", help="Write a DICOM SR and SEG for each flagged series (for the PACS).",
        file_okay=False)] = None,
    pseudonymize: Annotated[bool, typer.Option(
        "--pseudonymize", help="Replace patient ID, accession and paths holding them by keyed "
        "pseudonyms in the worklist, inventory, errors and review pages.")] = False,
    pseudonymize_key: Annotated[Path | None, typer.Option(
        "--pseudonymize-key", help="Key file (created with a new random key if absent; "
        "keep it to re-identify).", dir_okay=False)] = None,
) -> None:
    """Index archives, screen every eligible series and write the ranked worklist."""
    from screen.pseudonym import create_key_file
    from screen.scan import ScanOptions, scan

    if pseudonymize != (pseudonymize_key is not None):
        raise fail("--pseudonymize and --pseudonymize-key go together")
    if pseudonymize_key is not None and not pseudonymize_key.exists():
        create_key_file(pseudonymize_key)
        err.print(f"created a new pseudonymisation key in {pseudonymize_key}; keep it safe",
                  highlight=False)
    if review_top and review_dir is None:
        raise fail("--review-top needs --review-dir")
    if worker_memory is not None and scheduler:
        raise fail("--worker-memory sizes local workers; give the workers of a --scheduler "
                   "cluster --memory-limit when you start them")
    memory_limit = 0 if worker_memory is None else _bytes("--worker-memory", worker_memory)
    options = ScanOptions(model=model, backend=backend, precision=precision, workers=workers,
                          gpus=gpus, scheduler=scheduler, worker_memory=memory_limit,
                          resume=resume, threshold=threshold,
                          rules=rules, review_dir=review_dir, review_top=review_top,
                          dicom_out=dicom_out, pseudonymize_key=pseudonymize_key)
    try:
        with _scan_progress() as progress:
            summary = scan(archives, out, inventory=inventory, errors=errors, options=options,
                           progress=progress)
    except (ValueError, OSError) as exc:
        raise fail(str(exc)) from None
    _print_summary({
        "files found": summary.files_found, "errors by stage": summary.errors_by_stage,
        "series": summary.series, "rejected by rule": summary.rejected_by_rule,
        "eligible": summary.eligible, "already scored (resumed)": summary.resumed,
        "scored": summary.scored, "failed (see error column)": summary.failed,
        "flagged": summary.flagged,
    }, {"worklist": summary.worklist, "inventory": summary.inventory, "errors": summary.errors},
        title="screen scan")


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
    truth: Annotated[Path, typer.Option("--truth", help="Truth CSV (series_instance_uid,label,"
                                        "lesion_x_mm,...).", exists=True, dir_okay=False)],
    threshold: Annotated[float | None, typer.Option(
        "--threshold", min=0.0, max=1.0,
        help="Operating threshold (default: the worklist's flagged column).")] = None,
    replicates: Annotated[int, typer.Option("--replicates", min=100,
                                            help="Bootstrap replicates.")] = 1000,
    seed: Annotated[int, typer.Option("--seed", help="Bootstrap seed.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
    plot: Annotated[Path | None, typer.Option("--plot", help="Write the ROC curve as PNG.")] = None,
) -> None:
    """AUROC, sensitivity and specificity with 95% CIs, localisation, by lesion size and place."""
    import json

    from screen.evaluate import evaluate, plot_roc, render_table

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
