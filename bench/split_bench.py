"""The sweep with and without a GPU worker, side by side on this machine: a CPU stands in for
the GPU, so its worker holds the inference service and runs only networks.

    python -m bench.split_bench [--cases 8] [--matrix 256] [--rounds 2]

Both sweeps run on the same kind of cluster (a local SpecCluster, plain TCP, one thread per
worker): two CPU workers alone, then the same two beside a GPU-resource worker. Rounds
alternate the two, so that other load on the machine falls on both; medians are reported.
Beside the wall time, the CPU seconds (user + system) the cluster's workers spent in the
sweep, their start-up left out: on a machine shared with other work, what the split costs.
The service counts the bytes of network inputs and outputs that crossed to and from it; per
series is over the series whose networks ran. A CPU stand-in sends float32 by default (rows bit
for bit those of the unsplit sweep); each round also runs the split sweep with float16 transit,
what a GPU sends, and reports how far its scores move from the unsplit
ones.
Writes out/bench/split.json.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import shutil
import statistics
import time
from pathlib import Path

from bench.common import RESULTS, cached_archive, save
from screen.gpus import Gpu

STAND_IN = Gpu(0, "GPU-stand-in", "a CPU standing in for a GPU", 0.0, (0, 0))
CPU_WORKERS = 2


def _cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def sweep(archive: Path, out: Path, gpus: tuple[Gpu, ...],
          transit: str = "auto") -> dict[str, object]:
    import dask
    import pyarrow.parquet as pq
    from distributed import Client, Scheduler, SpecCluster

    from screen.cluster import LOCAL_CLUSTER_CONFIG, cluster_spec
    from screen.scan import ScanOptions, scan

    shutil.rmtree(out.parent, ignore_errors=True)
    scheduler = {"cls": Scheduler, "options": {"host": "127.0.0.1", "dashboard": False}}
    with dask.config.set(LOCAL_CLUSTER_CONFIG), \
            SpecCluster(workers=cluster_spec(CPU_WORKERS, gpus), scheduler=scheduler,
                        silence_logs=logging.WARNING) as cluster:
        with Client(cluster) as client:
            client.wait_for_workers(len(cluster.workers))
            names = {a: w["name"] for a, w in client.scheduler_info(n_workers=-1)["workers"].items()}
            before = client.run(_cpu_seconds)  # the workers' start-up is not the sweep's
            start = time.perf_counter()
            summary = scan([archive], out, options=ScanOptions(
                scheduler=cluster.scheduler_address, cpu_threads=1, resume=False,
                gpu_transit=transit))
            wall = time.perf_counter() - start
            cpu = {names[a]: round(t - before[a], 1) for a, t in client.run(_cpu_seconds).items()}
    numbers: dict[str, object] = {
        "series": summary.scored + summary.failed, "scored": summary.scored,
        "screen_seconds": round(summary.seconds["screen"], 2), "wall_seconds": round(wall, 2),
        "worker_cpu_seconds": round(sum(cpu.values()), 1),
        "cpu_seconds_by_worker": dict(sorted(cpu.items())),
        "scores": {r["series_key"]: r["score"]
                   for r in pq.read_table(out, columns=["series_key", "score"]).to_pylist()},
    }
    for service in summary.inference:
        crossed = service.bytes_in + service.bytes_out
        numbers["service"] = {
            "requests": service.requests, "batches": service.batches,
            "busy_seconds": service.busy_seconds,
            "mib_in": round(service.bytes_in / 2**20, 2),
            "mib_out": round(service.bytes_out / 2**20, 2),
            "mib_per_series": round(crossed / 2**20 / max(1, summary.scored), 2),
        }
    return numbers


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", type=int, default=8)
    parser.add_argument("--matrix", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    archive = cached_archive(f"scan-archive-{args.cases}-{args.matrix}", args.cases, seed=3,
                             matrix=args.matrix)
    runs: dict[str, list[dict[str, object]]] = {"unsplit": [], "split": [], "split_fp16": []}
    for _ in range(args.rounds):
        runs["unsplit"].append(sweep(archive, RESULTS / "split-off" / "worklist.parquet", ()))
        runs["split"].append(sweep(archive, RESULTS / "split-on" / "worklist.parquet",
                                   (STAND_IN,)))
        runs["split_fp16"].append(sweep(archive, RESULTS / "split-fp16" / "worklist.parquet",
                                        (STAND_IN,), transit="float16"))
    scores = {name: rs[0].pop("scores") for name, rs in runs.items()}
    for rs in runs.values():
        for r in rs:
            r.pop("scores", None)
    median = {name: statistics.median(r["screen_seconds"] for r in rs)
              for name, rs in runs.items()}
    cpu = {name: statistics.median(r["worker_cpu_seconds"] for r in rs)
           for name, rs in runs.items()}
    per_series = {name: statistics.median(r["service"]["mib_per_series"] for r in runs[name])
                  for name in ("split", "split_fp16")}

    def moved(name: str) -> float:
        pairs = [(scores["unsplit"][k], v) for k, v in scores[name].items()]
        return max((abs(a - b) for a, b in pairs if a is not None and b is not None
                    and not (math.isnan(a) or math.isnan(b))), default=0.0)

    save("split", {
        "cases": args.cases, "matrix": args.matrix, "cpu_workers": CPU_WORKERS,
        "runs": runs,
        "median_screen_seconds": median,
        "split_over_unsplit_time": round(median["split"] / median["unsplit"], 3),
        "split_fp16_over_unsplit_time": round(median["split_fp16"] / median["unsplit"], 3),
        "median_worker_cpu_seconds": cpu,
        "split_over_unsplit_cpu_seconds": round(cpu["split"] / cpu["unsplit"], 3),
        "mib_per_series_float32": per_series["split"],
        "mib_per_series_float16": per_series["split_fp16"],
        "scores_equal_float32": scores["split"] == scores["unsplit"],
        "largest_score_change_float16": moved("split_fp16"),
    })


if __name__ == "__main__":
    main()
