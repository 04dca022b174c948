"""Kill and resume: the whole sweep SIGKILLed at random points, each time run again, until
it finishes; the worklist must be the one an uninterrupted sweep writes, with no duplicates.

    python -m bench.kill_resume_bench [--kills 20] [--cases 2] [--matrix 48] [--seed 0]

Each kill takes the sweep's whole process group (client, scheduler, nannies, workers) at a
random moment: half of them drawn uniformly over an uninterrupted sweep's wall time (most of
which, on a small archive, is starting the cluster and reading headers), half over the part of
it in which series are screened and outputs written (from its first part file to its end), so
that kills land in every phase. A sweep that finishes before its kill moment does not count as
a kill; it is checked, and the next try starts afresh. Numbers go to out/bench/kill_resume.json.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq

from bench.common import RESULTS, cached_archive, save

WORKERS = "2"


def archive(cases: int, matrix: int) -> Path:
    return cached_archive(f"kill-archive-{cases}-{matrix}", cases, seed=7, matrix=matrix)


def _sweep(folder: Path, out: Path, log: Path, *extra: str) -> subprocess.Popen:
    """The sweep in a session of its own (so that one signal reaches all its processes),
    its messages appended to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as sink:
        return subprocess.Popen(
            [sys.executable, "-m", "screen", "scan", str(folder), "--out", str(out),
             "--workers", WORKERS, "--gpus", "0", *extra],
            stdout=subprocess.DEVNULL, stderr=sink, start_new_session=True)


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-2000:]


def _rows_in_parts(out: Path) -> int:
    parts = sorted(out.with_name(out.name + ".parts").glob("part-*.parquet"))
    total = 0
    for part in parts:
        try:
            total += pq.read_metadata(part).num_rows
        except OSError:
            pass
    return total


def _worklist(out: Path) -> list[tuple]:
    return [(r["rank"], r["series_key"], r["status"], r["flagged"], r["score"], r["error"])
            for r in pq.read_table(out).to_pylist()]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--cases", type=int, default=3)
    parser.add_argument("--matrix", type=int, default=48)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    folder = archive(args.cases, args.matrix)
    work = RESULTS / "kill-resume"
    shutil.rmtree(work, ignore_errors=True)

    reference = work / "uninterrupted" / "worklist.parquet"
    start = time.perf_counter()
    log = work / "sweeps.log"
    run = _sweep(folder, reference, log, "--no-resume")
    first_part = None
    while run.poll() is None:
        if first_part is None and _rows_in_parts(reference):
            first_part = time.perf_counter() - start
        time.sleep(0.05)
    wall = time.perf_counter() - start
    if run.returncode != 0:
        raise SystemExit(f"the uninterrupted sweep failed: {_tail(log)}")
    first_part = first_part or wall * 0.8
    expected = _worklist(reference)

    out = work / "killed" / "worklist.parquet"
    rng = random.Random(args.seed)
    kills: list[dict[str, object]] = []
    finished_early: list[bool] = []  # for each: its worklist was the uninterrupted one
    while len(kills) < args.kills:
        moment = rng.uniform(0.5 if len(kills) % 2 else first_part, wall)
        before = _rows_in_parts(out)
        run = _sweep(folder, out, log)
        try:
            run.wait(timeout=moment)
        except subprocess.TimeoutExpired:
            pass
        else:  # done before its moment came: no kill; check it, start over and draw again
            finished_early.append(run.returncode == 0 and _worklist(out) == expected)
            shutil.rmtree(out.parent)
            continue
        os.killpg(run.pid, signal.SIGKILL)
        run.wait()
        kills.append({"after_seconds": round(moment, 2), "rows_in_parts_before": before,
                      "rows_in_parts_after": _rows_in_parts(out),
                      "worklist_written": out.exists()})
        print(f"kill {len(kills)} at {moment:.1f} s: {kills[-1]}", flush=True)

    run = _sweep(folder, out, log)
    if run.wait() != 0:
        raise SystemExit(f"the final resume failed: {_tail(log)}")
    got = _worklist(out)
    keys = [row[1] for row in got]
    same = got == expected
    save("kill_resume", {
        "archive": {"cases": args.cases, "matrix": args.matrix, "series": len(expected)},
        "uninterrupted_wall_seconds": round(wall, 1),
        "uninterrupted_first_rows_after_seconds": round(first_part, 1),
        "kills": len(kills),
        "sweeps_that_finished_before_their_kill": len(finished_early),
        "of_those_identical_to_uninterrupted": sum(finished_early),
        "resumes": len(kills),  # every kill was followed by a run on the same --out
        "kills_with_rows_already_in_parts": sum(1 for k in kills if k["rows_in_parts_before"]),
        "worklist_rows": len(got),
        "duplicate_rows": len(keys) - len(set(keys)),
        "identical_to_uninterrupted": same,
        "kill_log": kills,
    })
    if not same or not all(finished_early):
        raise SystemExit("the resumed worklist differs from the uninterrupted one")


if __name__ == "__main__":
    main()
