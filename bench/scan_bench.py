"""End-to-end sweep speed: series per hour with 1 and 2 CPU workers, where the time goes,
and peak memory of the client and of each worker.

    python -m bench.scan_bench [--cases 8] [--matrix 128]

Uses a generated archive (cached under out/bench/scan-archive-*). Each run starts its own
local cluster and starts from nothing (--no-resume).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from bench.common import RESULTS, cached_archive, save
from screen.scan import ScanOptions, scan


def archive(cases: int, matrix: int) -> Path:
    return cached_archive(f"scan-archive-{cases}-{matrix}", cases, seed=3, matrix=matrix)


def run(root: Path, workers: int, threads: int | None = None) -> dict[str, object]:
    out = RESULTS / f"scan-{workers}w" / "worklist.parquet"
    shutil.rmtree(out.parent, ignore_errors=True)
    summary = scan([root], out, options=ScanOptions(workers=workers, gpus=0, resume=False,
                                                    cpu_threads=threads))
    import pyarrow.parquet as pq

    rows = pq.read_table(out).to_pylist()
    load = sum(r["load_seconds"] or 0.0 for r in rows)
    detect = sum(r["detect_seconds"] or 0.0 for r in rows)
    total = sum(summary.seconds.values())
    # Worker seconds are spent in parallel: share of worker time within the screening phase.
    return {
        "workers": workers,
        "inference_threads_per_worker": threads or "an even share of the cores",
        "series_screened": summary.scored + summary.failed,
        "wall_seconds": round(total, 1),
        "series_per_hour": round(3600 * (summary.scored + summary.failed) / total),
        "phase_seconds": {k: round(v, 2) for k, v in summary.seconds.items()},
        "worker_seconds_decoding": round(load, 1),
        "worker_seconds_inference_and_postprocess": round(detect, 1),
        "client_peak_rss_mib": round(summary.client_peak_rss_mib),
        "worker_peak_rss_mib": {k: round(v) for k, v in summary.worker_peak_rss_mib.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", type=int, default=8)
    parser.add_argument("--matrix", type=int, default=128)
    args = parser.parse_args()
    root = archive(args.cases, args.matrix)
    # By default a lone worker's inference uses every core; pinned to one thread per worker,
    # the same runs show how the sweep scales with cores.
    one, two = run(root, 1), run(root, 2)
    one_core, two_cores = run(root, 1, threads=1), run(root, 2, threads=1)
    save("scan", {
        "cases": args.cases, "matrix": args.matrix,
        "one_worker": one, "two_workers": two,
        "speedup_1_to_2_workers": round(one["wall_seconds"] / two["wall_seconds"], 2),
        "one_worker_one_thread": one_core, "two_workers_one_thread_each": two_cores,
        "speedup_1_to_2_workers_one_thread_each": round(
            one_core["wall_seconds"] / two_cores["wall_seconds"], 2),
    })


if __name__ == "__main__":
    main()
