"""What `screen index` of an empty folder and `screen --help` load: nothing of Dask, pandas,
the networks' runtimes or image libraries, whose imports were most of their start-up time.
Timing itself is left to the benchmarks (bench/index_bench.py --only startup)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

# Heavy or optional libraries neither command needs; pydicom waits for a first file to read.
HEAVY = ("dask", "distributed", "pandas", "torch", "onnxruntime", "scipy", "PIL", "pydicom")

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


def loaded_by(*args: str) -> list[str]:
    """The heavy modules a fresh Python has loaded after running ``screen ARGS``."""
    run = subprocess.run([sys.executable, "-c", PROBE.format(heavy=HEAVY + ("rich.progress",)),
                          *args], capture_output=True, text=True, check=True)
    return run.stdout.splitlines()[-1].split()[1:]  # the last line, after the command's own


def test_indexing_an_empty_folder_loads_no_heavy_library(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    # rich.progress draws the progress bar, which indexing shows even for an empty folder.
    assert [m for m in loaded_by("index", str(tmp_path / "empty"), "--out",
                                 str(tmp_path / "inventory.parquet")) if m != "rich.progress"] == []
    assert (tmp_path / "inventory.parquet").exists()
    assert (tmp_path / "errors.parquet").exists()


@pytest.mark.parametrize("args", [("--help",), ("index", "--help"), ("scan", "--help")])
def test_help_loads_no_heavy_library(args: tuple[str, ...]) -> None:
    assert loaded_by(*args) == []
