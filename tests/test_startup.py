"""What `screen index` loads before it has a file to read: nothing of Dask or pydicom, whose
imports were most of its start-up time. Timing itself is left to the benchmarks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PROBE = """
import sys
from screen.cli import app
try:
    app(["index", sys.argv[1], "--out", sys.argv[2]])
except SystemExit as exc:
    if exc.code:
        raise
print(" ".join(m for m in ("dask", "distributed", "pydicom") if m in sys.modules))
"""


def test_indexing_an_empty_folder_loads_neither_dask_nor_pydicom(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    run = subprocess.run([sys.executable, "-c", PROBE, str(tmp_path / "empty"),
                          str(tmp_path / "inventory.parquet")],
                         capture_output=True, text=True, check=True)
    assert run.stdout.strip() == ""
    assert (tmp_path / "inventory.parquet").exists()
