"""The GPU checks, as one short script for a machine with an NVIDIA GPU.

    python -m bench.gpu_bench [--cases 24] [--matrix 256]

1. torch on CUDA against ONNX Runtime on the CPU: the same volumes, scores within the card's
   tolerance (fp32), and fp16's score differences;
2. latency per volume of the detector with torch CUDA fp32 and fp16 (and TensorRT when a plan
   was built with `screen build-engine`), preprocessing excluded and included;
3. `screen scan` end to end on a generated archive with the torch CUDA backend and one GPU
   worker beside the CPU workers: series per second, and GPU utilisation sampled by NVML.

Writes out/bench/gpu.json. Without a CUDA device it says so and exits 0.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import threading
import time

import numpy as np

from bench.common import RESULTS, save


def _utilisation_sampler(stop: threading.Event, samples: list[int]) -> None:
    import pynvml

    pynvml.nvmlInit()
    handle = pynvml.nvmlDeviceGetHandleByIndex(0)
    while not stop.is_set():
        samples.append(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu)
        time.sleep(0.2)
    pynvml.nvmlShutdown()


def _volumes(n: int, matrix: int):
    from screen.records import Volume
    from screen.synth.phantom import render, sample_spec

    rng = np.random.default_rng(12)
    spacing = 400.0 / matrix
    for _ in range(n):
        phantom = render(sample_spec(rng), shape_kji=(160, matrix, matrix),
                         spacing_kji=(2.5, spacing, spacing))
        yield Volume(phantom.hu, phantom.affine, tuple(f"1.2.3.{k}" for k in range(160))), phantom


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", type=int, default=24)
    parser.add_argument("--matrix", type=int, default=256)
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        print("gpu bench: no CUDA device here; nothing to measure")
        return
    from screen.detect.detector import Detector, analyse
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
    volumes = [v for v, _ in _volumes(6, args.matrix)]
    numbers: dict[str, object] = {"gpu": torch.cuda.get_device_name(0)}
    scores: dict[str, list[float]] = {}
    for name, detector in detectors.items():
        analyse(volumes[0], detector)  # warm up: kernels, allocator, autotuning
        times, inference = [], []
        for volume in volumes:
            start = time.perf_counter()
            analysis = analyse(volume, detector)
            times.append(time.perf_counter() - start)
            inference.append(analysis.seconds.get("inference", 0.0))
            scores.setdefault(name, []).append(analysis.detection.score)
        numbers[name] = {"seconds_per_volume": round(statistics.median(times), 3),
                         "inference_seconds": round(statistics.median(inference), 3)}
    base = np.asarray(scores["onnxruntime-cpu-fp32"])
    numbers["max_score_difference_vs_cpu"] = {
        name: float(np.abs(np.asarray(s) - base).max()) for name, s in scores.items()}

    from screen.scan import ScanOptions, scan
    from screen.synth.archive import write_archive

    root = RESULTS / f"gpu-archive-{args.cases}-{args.matrix}"
    if not (root / ".complete").exists():
        shutil.rmtree(root, ignore_errors=True)
        write_archive(root, args.cases, seed=5, matrix=args.matrix)
        (root / ".complete").write_text("")
    out = RESULTS / "gpu-scan" / "worklist.parquet"
    shutil.rmtree(out.parent, ignore_errors=True)
    stop, samples = threading.Event(), []
    sampler = threading.Thread(target=_utilisation_sampler, args=(stop, samples), daemon=True)
    sampler.start()
    start = time.perf_counter()
    summary = scan([root / "archive"], out, options=ScanOptions(
        backend="torch", precision="fp16", workers=max(1, (os.cpu_count() or 2) - 2), gpus=1,
        resume=False))
    wall = time.perf_counter() - start
    stop.set()
    sampler.join()
    screened = summary.scored + summary.failed
    numbers["scan"] = {
        "series": screened, "wall_seconds": round(wall, 1),
        "series_per_second": round(screened / summary.seconds["screen"], 2),
        "series_per_second_including_index": round(screened / wall, 2),
        "phase_seconds": {k: round(v, 2) for k, v in summary.seconds.items()},
        "gpu_utilisation_percent_mean": round(statistics.mean(samples), 1) if samples else None,
        "gpu_utilisation_percent_p90": (float(np.percentile(samples, 90)) if samples else None),
    }
    save("gpu", numbers)


if __name__ == "__main__":
    main()
