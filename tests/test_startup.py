"""What `screen index` of an empty folder and `screen --help` load: nothing of Dask, pandas,
the networks' runtimes or image libraries, whose imports were most of their start-up time.
Timing itself is left to the benchmarks (bench/index_bench.py --only startup)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# Heavy or optional libraries neither command needs; pydicom waits for a first file to read.
HEAVY = ("dask", "distributed", "pandas", "torch", "onnxruntime", "scipy", "PIL", "pydicom")
# What indexing an empty folder need not load either: the pseudonymiser and the worklist's
# schema it brings, and the process pool's helper process (its module loads as it starts).
NOT_FOR_AN_EMPTY_FOLDER = ("screen.pseudonym", "screen.worklist_row",
                           "multiprocessing.resource_tracker")
# Help needs no table library, and none of the index.
NOT_FOR_HELP = ("numpy", "pyarrow", "screen.index", "screen.tables")

PROBE = """
import sys
from screen.cli import app
try:
    app(sys.argv[1:])
except SystemExit as exc:
    if exc.code:
        raise
print("loaded:", *sorted(m for m in {heavy!r} if m in sys.modules))
"""


def loaded_by(*args: str, also: tuple[str, ...] = ()) -> list[str]:
    """The heavy modules (and ``also``) a fresh Python has loaded after running ``screen ARGS``."""
    watched = HEAVY + ("rich.progress",) + also
    run = subprocess.run([sys.executable, "-c", PROBE.format(heavy=watched), *args],
                         capture_output=True, text=True, check=True)
    return run.stdout.splitlines()[-1].split()[1:]  # the last line, after the command's own


def test_indexing_an_empty_folder_loads_no_heavy_library(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    # rich.progress draws the progress bar, which indexing shows even for an empty folder.
    assert [m for m in loaded_by("index", str(tmp_path / "empty"), "--out",
                                 str(tmp_path / "inventory.parquet"),
                                 also=NOT_FOR_AN_EMPTY_FOLDER) if m != "rich.progress"] == []
    assert (tmp_path / "inventory.parquet").exists()
    assert (tmp_path / "errors.parquet").exists()


@pytest.mark.parametrize("args", [("--help",), ("index", "--help"), ("scan", "--help")])
def test_help_loads_no_heavy_library(args: tuple[str, ...]) -> None:
    assert loaded_by(*args, also=NOT_FOR_HELP) == []


# `screen CMD` builds only CMD; the whole group, as Typer builds it, must answer the same.
WHOLE = """
import sys
import typer.main
from screen.cli import app
typer.main.get_command(app).main(sys.argv[1:], prog_name="screen")
"""
NAMED = """
import sys
from screen.cli import app
app(sys.argv[1:], prog_name="screen")
"""


def answer(code: str, args: tuple[str, ...]) -> tuple[int, str, str]:
    run = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                         env={**os.environ, "COLUMNS": "100"})
    return run.returncode, run.stdout, run.stderr


@pytest.mark.parametrize("args", [
    ("index", "--help"),
    ("-v", "index", "/no/such/archive"),
    ("scan", ".", "--backend", "nope"),
    ("import-model", "nnunet", "--help"),
])
def test_building_only_the_named_command_answers_as_the_whole_group(args: tuple[str, ...]
                                                                    ) -> None:
    named = answer(NAMED, args)
    assert named == answer(WHOLE, args)
    assert named[1] or named[2]  # it said something: help, or the error of a bad argument
