"""Peak memory as the benchmarks and the sweep summary report it."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from screen.memory import peak_rss_mib


def _in_a_fresh_process(code: str) -> list[float]:
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return [float(v) for v in run.stdout.split()]


def test_peak_memory_grows_with_what_the_process_touches():
    before, after = _in_a_fresh_process(
        "import numpy as np; from screen.memory import peak_rss_mib; before = peak_rss_mib(); "
        "block = np.ones(64 * 2**20 // 8); print(before, peak_rss_mib())")  # 64 MiB, written
    assert 60 <= after - before <= 80


def test_a_child_process_reports_its_own_peak_not_its_parents():
    parent = np.ones(512 * 2**20 // 8)  # the parent holds 512 MiB while the child starts
    [child] = _in_a_fresh_process("from screen.memory import peak_rss_mib; print(peak_rss_mib())")
    assert peak_rss_mib() > 512
    assert child < 256, f"the child reported {child:.0f} MiB, as if it held its parent's memory"
    del parent
