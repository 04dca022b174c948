"""The `screen` command line: thin commands that call the library and turn its errors into
clear messages and exit codes. Progress and summaries go to stderr; nothing else prints.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn
from rich.progress import TimeElapsedColumn
from rich.table import Table

from screen import __version__

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Sweep an imaging archive for abdominal CTs and rank suspicious pancreata for review.",
)
err = Console(stderr=True)
log = logging.getLogger("screen")

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
    err.print(f"wrote {result}", highlight=False)


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
        self._bar.stop()


def _print_summary(numbers: dict[str, object], outputs: dict[str, Path]) -> None:
    table = Table(title="screen index", show_header=False, title_justify="left")
    for key, value in numbers.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}: {v}" for k, v in value.items()) or "none"
        table.add_row(key.replace("_", " "), str(value))
    for name, path in outputs.items():
        table.add_row(name, str(path))
    err.print(table)
