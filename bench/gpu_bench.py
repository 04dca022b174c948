"""The GPU checks, as one short script for a machine with an NVIDIA GPU.

    python -m bench.gpu_bench [--cases 24] [--matrix 256]

1. torch on CUDA against ONNX Runtime on the CPU: the same volumes, scores within the card's
   tolerance (fp32), and fp16's score differences;
2. latency per volume of the detector with torch CUDA fp32 and fp16 (and TensorRT when a plan
   was built with `screen build-engine`), preprocessing included, inference alone beside it;
3. `screen scan` end to end on a generated archive, twice on the same machine: CPU workers
   alone (ONNX Runtime), then the torch CUDA backend in fp16 with one GPU worker beside the
   CPU workers: series per second, and GPU utilisation sampled by NVML.

Writes out/bench/gpu.json. Without a CUDA device it says so and exits 0.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from bench.common import RESULTS, cached_archive, save
from screen.detect.detector import Detector
from screen.records import Volume
from screen.scan import ScanOptions


def _utilisation_sampler(stop: threading.Event, samples: list[int]) -> None:
    import pynvml

    pynvml.nvmlInit()
    handle = pynvml.nvmlDeviceGetHandleByIndex(0)
    while not stop.is_set():
        samples.append(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu)
        time.sleep(0.2)
    pynvml.nvmlShutdown()


def volumes(n: int, matrix: int) -> Iterator[Volume]:
    from screen.synth.phantom import render, sample_spec

    rng = np.random.default_rng(12)
    spacing = 400.0 / matrix
    for _ in range(n):
        phantom = render(sample_spec(rng), shape_kji=(160, matrix, matrix),
                         spacing_kji=(2.5, spacing, spacing))
        yield Volume(phantom.hu, phantom.affine, tuple(f"1.2.3.{k}" for k in range(160)))


def latency(detectors: dict[str, Detector], cases: list[Volume]) -> dict[str, object]:
    """Median seconds per volume for each detector, and each one's largest score difference
    from the first (the reference)."""
    from screen.detect.detector import analyse

    numbers: dict[str, object] = {}
    scores: dict[str, np.ndarray] = {}
    for name, detector in detectors.items():
        analyse(cases[0], detector)  # warm up: kernels, allocator, autotuning
        times, inference, s = [], [], []
        for volume in cases:
            start = time.perf_counter()
            analysis = analyse(volume, detector)
            times.append(time.perf_counter() - start)
            inference.append(analysis.seconds.get("inference", 0.0))
            s.append(analysis.detection.score)
        numbers[name] = {"seconds_per_volume": round(statistics.median(times), 3),
                         "inference_seconds": round(statistics.median(inference), 3)}
        scores[name] = np.asarray(s)
    reference = next(iter(scores.values()))
    numbers["max_score_difference_vs_" + next(iter(scores))] = {
        name: float(np.abs(s - reference).max()) for name, s in scores.items()}
    return numbers


def sweep(archive: Path, out: Path, options: ScanOptions, gpu: bool) -> dict[str, object]:
    """One `screen scan` of ``archive``, timed, with the GPU's utilisation when ``gpu``."""
    from screen.scan import scan

    shutil.rmtree(out.parent, ignore_errors=True)
    stop, samples = threading.Event(), []
    sampler = threading.Thread(target=_utilisation_sampler, args=(stop, samples), daemon=True)
    if gpu:
        sampler.start()
    start = time.perf_counter()
    summary = scan([archive], out, options=options)
    wall = time.perf_counter() - start
    stop.set()
    if gpu:
        sampler.join()
    screened = summary.scored + summary.failed
    return {
        "backend": options.backend, "precision": options.precision, "cpu_workers": options.workers,
        "gpus": options.gpus, "series": screened, "scored": summary.scored,
        "wall_seconds": round(wall, 1),
        "series_per_second": round(screened / summary.seconds["screen"], 2),
        "series_per_second_including_index": round(screened / wall, 2),
        "phase_seconds": {k: round(v, 2) for k, v in summary.seconds.items()},
        "gpu_utilisation_percent_mean": round(statistics.mean(samples), 1) if samples else None,
        "gpu_utilisation_percent_p90": float(np.percentile(samples, 90)) if samples else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", type=int, default=24)
    parser.add_argument("--matrix", type=int, default=256)
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        print("gpu bench: no CUDA device here; nothing to measure")
        return
    from screen.model.package import find_package

    package = find_package("pancreas-phantom-v1")
    detectors = {
        "onnxruntime-cpu-fp32": Detector.open(package, "onnxruntime", "fp32"),
        "torch-cuda-fp32": Detector.open(package, "torch", "fp32", "cuda:0"),
        "torch-cuda-fp16": Detector.open(package, "torch", "fp16", "cuda:0"),
    }
    try:
        detectors["tensorrt-fp16"] = Detector.open(package, "tensorrt", "fp16", "cuda:0")
    except (ValueError, ImportError) as exc:
        print(f"tensorrt: not measured ({exc})")
    numbers: dict[str, object] = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__}
    numbers["latency"] = latency(detectors, list(volumes(6, args.matrix)))
    del detectors

    archive = cached_archive(f"gpu-archive-{args.cases}-{args.matrix}", args.cases, seed=5,
                             matrix=args.matrix)
    workers = max(1, (os.cpu_count() or 2) - 2)
    numbers["scan_cpu_only"] = sweep(archive, RESULTS / "gpu-scan-cpu" / "worklist.parquet",
                                     ScanOptions(backend="onnxruntime", workers=workers, gpus=0,
                                                 resume=False), gpu=False)
    numbers["scan_with_gpu"] = sweep(archive, RESULTS / "gpu-scan" / "worklist.parquet",
                                     ScanOptions(backend="torch", precision="fp16", workers=workers,
                                                 gpus=1, resume=False), gpu=True)
    save("gpu", numbers)


if __name__ == "__main__":
    main()
