"""What every benchmark shares: where results go, timing, peak memory of a child process, and
the synthetic archives they sweep."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

RESULTS = Path(os.environ.get("SCREEN_BENCH_OUT", "out/bench"))
T = TypeVar("T")


def timed(fn: Callable[[], T]) -> tuple[T, float]:
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def child_output(code: str, env: dict[str, str] | None = None) -> str:
    """What ``code`` printed, run in a fresh Python (so that its memory is its own), with
    ``env`` added to this process's environment."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, env={**os.environ, **(env or {})}).stdout.strip()


def machine() -> dict[str, object]:
    return {"cpus": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform()}


def save(name: str, numbers: dict[str, object]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **numbers}, indent=2))
    print(json.dumps(numbers, indent=2))
    return path


def cached_archive(name: str, cases: int, *, seed: int, matrix: int,
                   then: Callable[[Path], None] | None = None, **options: object) -> Path:
    """The archive folder of a synthetic archive written once under RESULTS and reused by
    later runs; ``then`` finishes it (given the archive folder) before it counts as done."""
    from screen.synth.archive import write_archive

    root = RESULTS / name
    if not (root / ".complete").exists():
        shutil.rmtree(root, ignore_errors=True)
        write_archive(root, cases, seed=seed, matrix=matrix, **options)
        if then is not None:
            then(root / "archive")
        (root / ".complete").write_text("")
    return root / "archive"
