"""`make bench`: every benchmark in turn; each writes out/bench/<name>.json and prints it.

    python -m bench.run [name ...]      # default: all of them
"""

from __future__ import annotations

import importlib
import sys

BENCHMARKS = {
    "index": "bench.index_bench",
    "load": "bench.load_bench",
    "detector": "bench.detector_bench",
    "engines": "bench.engines_bench",
    "scan": "bench.scan_bench",
    "split": "bench.split_bench",  # a GPU-resource worker on the CPU beside none, in one run
    "review": "bench.review_bench",  # a series page's size and open time; monitor's speed
    "gpu": "bench.gpu_bench",  # says so and measures nothing without a CUDA device
    "kill-resume": "bench.kill_resume_bench",  # 20 SIGKILLs of the whole sweep, resumed
    "dicomweb": "bench.dicomweb_bench",  # says so and measures nothing without Orthanc
    "nnunet": "bench.nnunet_bench",  # imported nnU-Net models: one patch, per case, memory
}


def main(names: list[str]) -> None:
    for name in names or list(BENCHMARKS):
        module = BENCHMARKS[name]
        try:
            bench = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            print(f"{name}: skipped ({exc})")
            continue
        print(f"== {name} ==", flush=True)
        sys.argv = [module]
        bench.main()


if __name__ == "__main__":
    main(sys.argv[1:])
