"""Every GPU measurement, in one run on a machine with an NVIDIA GPU.

    python -m bench.gpu_bench [--series 32] [--workers N] [--skip-panorama] [--skip-compile]

1. Outputs: the bundled detector's networks with torch on CUDA (fp32, fp16, bf16) against
   ONNX Runtime on the CPU on the same inputs (largest probability difference), and the
   scores of whole phantoms (largest score difference), within the card's tolerance.
2. The sweep: ``screen scan`` of 512x512x300 uncompressed series (one phantom written again
   under new UIDs) with the bundled model, CPU workers alone (ONNX Runtime, --gpus 0) and
   then with the GPU (torch fp16, one GPU worker holding the inference service beside the
   CPU workers): series per second, GPU busy % sampled by NVML every 0.1 s over the
   screening, what the service batched and the bytes that crossed to it per series. Beside
   them, the rate at which this machine reads the archive's files (from the page cache, as
   the sweeps do after the first): the sweep cannot go faster than that.
3. PANORAMA's two-stage recipe (the real plans, seeded random weights: timing does not
   depend on the weights), torch fp16 on CUDA: seconds per case, as the localiser on a whole
   512x512x300 series plus the detector on the plans' median crop (74 x 230 x 425 voxels at
   its own spacing), for 1 fold without mirroring and for all 5 folds with 8 mirrors; and
   the detector's patches with each of torch's CUDA options (fp32, fp16, InstanceNorm in
   fp16, bf16, channels-last-3D, torch.compile with CUDA graphs): seconds per patch and
   logits against ONNX Runtime on the CPU.

4. JPEG 2000, the costliest common transfer syntax: slices of that CT encoded lossless, decoded
   on the CPU (OpenJPEG, as pydicom's plugin runs it, one thread per core) and, where NVIDIA's
   nvImageCodec is installed, on the GPU in batches: slices per second each, and whether the
   GPU's are the same pixels. `screen` decodes on the CPU; this says whether a GPU decoder
   would pay on this machine.

Writes out/bench/gpu.json. Without a CUDA device it says so and exits 0.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from bench.common import RESULTS, save

SHAPE = (300, 512, 512)  # k, j, i
SPACING = (1.25, 0.78, 0.78)  # mm
MEDIAN_CROP = (74, 230, 425)  # the PANORAMA detector plans' median image, in its own voxels


def cuda_device() -> str | None:
    try:
        import torch
    except ImportError:
        return None
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


class Utilisation:
    """GPU 0's busy % sampled by NVML while the block runs."""

    def __init__(self, interval: float = 0.1) -> None:
        self.samples: list[int] = []
        self._interval, self._stop = interval, threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        while not self._stop.is_set():
            self.samples.append(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu)
            time.sleep(self._interval)
        pynvml.nvmlShutdown()

    def __enter__(self) -> Utilisation:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self) -> dict[str, float | None]:
        s = self.samples
        return {"gpu_busy_percent_mean": round(statistics.mean(s), 1) if s else None,
                "gpu_busy_percent_p90": float(np.percentile(s, 90)) if s else None,
                "samples": len(s)}


def phantoms(n: int, shape=(160, 256, 256), spacing=(2.5, 1.56, 1.56)) -> Iterator:
    from screen.records import Volume
    from screen.synth.phantom import render, sample_spec

    rng = np.random.default_rng(12)
    for _ in range(n):
        phantom = render(sample_spec(rng), shape_kji=shape, spacing_kji=spacing)
        yield Volume(phantom.hu, phantom.affine, tuple(f"1.2.3.{k}" for k in range(shape[0])))


def outputs(package) -> dict[str, object]:
    """Torch on CUDA against ONNX Runtime on the CPU: network outputs and phantoms' scores."""
    from screen.backends import clear_cache, load_runner
    from screen.backends.torch import CudaOptions, set_cuda_options
    from screen.detect.detector import Detector, analyse

    rng = np.random.default_rng(0)
    inputs = [rng.uniform(-1, 1, (1, 1, *s)).astype(np.float32)
              for s in ((96, 64, 88), (80, 72, 104))]
    cases = list(phantoms(6))
    reference = Detector.open(package, "onnxruntime", "fp32")
    want = [analyse(v, reference).detection.score for v in cases]
    numbers: dict[str, object] = {}
    for label, precision, options in (("fp32", "fp32", CudaOptions()),
                                      ("fp16", "fp16", CudaOptions()),
                                      ("bf16", "fp16", CudaOptions(autocast="bfloat16")),
                                      ("fp16_channels_last", "fp16",
                                       CudaOptions(channels_last=True))):
        clear_cache()
        set_cuda_options(options)
        detector = Detector.open(package, "torch", precision, "cuda:0")
        diff = 0.0
        for name in package.card.networks:
            cpu = load_runner(package, name, "onnxruntime")
            gpu = load_runner(package, name, "torch", precision, "cuda:0")
            diff = max(diff, max(float(np.abs(gpu.run(x) - cpu.run(x)).max()) for x in inputs))
        analyse(cases[0], detector)  # warm up: kernels, allocator, autotuning
        start = time.perf_counter()
        got = [analyse(v, detector).detection.score for v in cases]
        numbers[label] = {
            "max_probability_difference_vs_onnxruntime_cpu": diff,
            "max_score_difference_vs_onnxruntime_cpu": float(np.abs(np.subtract(got, want)).max()),
            "seconds_per_phantom": round((time.perf_counter() - start) / len(cases), 3),
        }
    set_cuda_options(CudaOptions())
    numbers["phantoms"] = {"count": len(cases), "shape": [160, 256, 256]}
    return numbers


_PHANTOM: dict[str, object] = {}  # the images every copy writes, inherited by forked writers


def write_archive(root: Path, series: int) -> Path:
    """``series`` copies of one 512x512x300 abdominal CT, uncompressed, each its own patient,
    written by one process per core."""
    import multiprocessing

    from screen.synth.phantom import render, sample_spec

    done = root / ".complete"
    if done.exists():
        return root / "archive"
    shutil.rmtree(root, ignore_errors=True)
    phantom = render(sample_spec(np.random.default_rng(7)), shape_kji=SHAPE, spacing_kji=SPACING)
    origin = np.asarray(phantom.origin_lps)
    _PHANTOM["images"] = list(phantom.hu)
    _PHANTOM["positions"] = [tuple(float(v) for v in origin + (0.0, 0.0, k * SPACING[0]))
                             for k in range(SHAPE[0])]
    _PHANTOM["root"] = root / "archive"
    fork = multiprocessing.get_context("fork")
    with fork.Pool(min(series, os.cpu_count() or 1)) as pool:
        pool.map(_write_copy, range(series))
    done.write_text("")
    return root / "archive"


def _write_copy(n: int) -> None:
    from screen.synth.dicom_writer import (
        AXIAL,
        CT_IMAGE_STORAGE,
        PixelEncoding,
        SeriesPlan,
        Study,
        uid,
        write_series,
    )

    study = Study(f"GPU{n:04d}", f"BENCH^{n}", "19600101", "O", f"ACC{n:06d}",
                  uid(7, "study", n), "20250101", "120000", "CT ABDOMEN", "")
    plan = SeriesPlan(
        kind="abdominal_ct", series_instance_uid=uid(7, "series", n), series_number=2,
        series_description="ABDOMEN PV 1.25 B30f", modality="CT", sop_class_uid=CT_IMAGE_STORAGE,
        image_type=("ORIGINAL", "PRIMARY", "AXIAL"), manufacturer="SIEMENS",
        model="SOMATOM Force", frame_of_reference_uid=uid(7, "frame", n), syntax="explicit",
        encoding=PixelEncoding(signed=True, intercept=0.0, bits_stored=16),
        folders=(f"GPU{n:04d}/CT",), naming="im", kernel="B30f", body_part="ABDOMEN",
        slice_thickness=SPACING[0])
    write_series(_PHANTOM["root"], study, plan, _PHANTOM["images"], _PHANTOM["positions"], AXIAL,
                 (SPACING[1], SPACING[2]), seed=7, rng=np.random.default_rng(n))


def read_rate(archive: Path, series: int, threads: int) -> dict[str, float]:
    files = [p for p in archive.rglob("*") if p.is_file()]

    def read(path: Path) -> int:
        return len(path.read_bytes())

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(read, files))  # into the page cache, as a first sweep leaves it
        start = time.perf_counter()
        size = sum(pool.map(read, files))
        seconds = time.perf_counter() - start
    return {"gib": round(size / 2**30, 2), "gib_per_second": round(size / 2**30 / seconds, 2),
            "series_per_second": round(series / seconds, 1), "threads": threads}


def jpeg2000(slices: list[np.ndarray], threads: int, batch: int = 32) -> dict[str, object]:
    """Lossless JPEG 2000 slices decoded on the CPU and, with nvImageCodec, on the GPU."""
    import openjpeg

    streams = [openjpeg.encode(np.ascontiguousarray(s)) for s in slices]
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(openjpeg.decode, streams[:threads]))  # warm
        start = time.perf_counter()
        cpu = list(pool.map(openjpeg.decode, streams))
        cpu_seconds = time.perf_counter() - start
    numbers: dict[str, object] = {
        "slices": len(streams), "mib_compressed": round(sum(map(len, streams)) / 2**20, 1),
        "cpu_slices_per_second": round(len(streams) / cpu_seconds, 1), "cpu_threads": threads,
        "cpu_exact": all(np.array_equal(a, b) for a, b in zip(cpu, slices))}
    try:
        from nvidia import nvimgcodec
    except ImportError:
        numbers["gpu"] = "nvImageCodec is not installed (pip install nvidia-nvimgcodec-cu12)"
        return numbers
    try:
        decoder = nvimgcodec.Decoder()
        decoder.decode(streams[:batch])  # warm: its first call sets up the codec
        start = time.perf_counter()
        gpu = []
        for first in range(0, len(streams), batch):
            gpu += [np.asarray(image.cpu()) for image in decoder.decode(streams[first:first + batch])]
        gpu_seconds = time.perf_counter() - start
    except Exception as exc:  # noqa: BLE001 - a codec that cannot run here is the finding
        numbers["gpu"] = f"nvImageCodec failed: {exc}"
        return numbers
    numbers.update({
        "gpu_slices_per_second": round(len(streams) / gpu_seconds, 1), "gpu_batch": batch,
        "gpu_exact": all(np.array_equal(a.reshape(b.shape), b) for a, b in zip(gpu, slices)),
        "gpu_over_cpu": round(cpu_seconds / gpu_seconds, 2)})
    return numbers


def sweep(archive: Path, name: str, options) -> dict[str, object]:
    from screen.scan import scan

    out = RESULTS / name / "worklist.parquet"
    shutil.rmtree(out.parent, ignore_errors=True)
    with Utilisation() as busy:
        summary = scan([archive], out, options=options)
    screened = summary.scored + summary.failed
    numbers: dict[str, object] = {
        "backend": options.backend, "precision": options.precision,
        "cpu_workers": options.workers, "gpus": options.gpus, "series": screened,
        "scored": summary.scored,
        "series_per_second": round(screened / summary.seconds["screen"], 2),
        "phase_seconds": {k: round(v, 2) for k, v in summary.seconds.items()},
        # Sampled over the whole scan, start-up and index included (the screening's share is
        # phase_seconds.screen of the total).
        **busy.summary(),
    }
    for service in summary.inference:
        numbers["inference_service"] = {
            "requests": service.requests, "batches": service.batches,
            "largest_batch": service.largest_batch, "busy_seconds": service.busy_seconds,
            "mib_per_series": round((service.bytes_in + service.bytes_out) / 2**20
                                    / max(1, summary.scored), 2)}
    return numbers


def patch_options(package, compile_too: bool) -> dict[str, object]:
    """The PANORAMA detector's fold 0 on batches of 2 patches with each of torch's CUDA
    options: seconds per patch, and the largest logit difference from ONNX Runtime on the CPU
    (InstanceNorm in fp16 or fp32 is where fp16 may hurt)."""
    from screen.backends import clear_cache, load_runner
    from screen.backends.torch import CudaOptions, set_cuda_options

    x = np.random.default_rng(2).normal(size=(2, 1, *package.card.patch_size)).astype(np.float32)
    cpu = load_runner(package, "fold_0", "onnxruntime").run(x)
    variants = {"fp32": ("fp32", CudaOptions()), "fp16": ("fp16", CudaOptions()),
                "fp16_norms_in_fp16": ("fp16", CudaOptions(norm_fp32=False)),
                "bf16": ("fp16", CudaOptions(autocast="bfloat16")),
                "fp16_channels_last": ("fp16", CudaOptions(channels_last=True))}
    if compile_too:
        variants["fp16_compiled_cuda_graphs"] = ("fp16", CudaOptions(compile=True))
    numbers: dict[str, object] = {"patch": list(package.card.patch_size), "batch": 2}
    for label, (precision, options) in variants.items():
        clear_cache()
        set_cuda_options(options)
        try:
            runner = load_runner(package, "fold_0", "torch", precision, "cuda:0")
            got = runner.run(x)  # warm up (and compile)
            start = time.perf_counter()
            for _ in range(5):
                runner.run(x)
            numbers[label] = {
                "seconds_per_patch": round((time.perf_counter() - start) / 10, 4),
                "max_logit_difference_vs_onnxruntime_cpu": float(np.abs(got - cpu).max())}
        except Exception as exc:  # noqa: BLE001 - one option failing must not lose the rest
            numbers[label] = {"failed": f"{type(exc).__name__}: {exc}"}
    set_cuda_options(CudaOptions())
    clear_cache()
    return numbers


def panorama(skip: bool, compile_too: bool = True) -> dict[str, object]:
    if skip:
        return {"not_measured": "--skip-panorama"}
    try:
        from tests.nnunet.folders import DETECTOR_MODEL, PANCREAS_MODEL, write_folder
        from tests.nnunet.test_panorama import _bias_class
    except ImportError as exc:
        return {"not_measured": f"the test helpers that write nnU-Net folders: {exc}"}
    if not DETECTOR_MODEL.is_dir() or not PANCREAS_MODEL.is_dir():
        return {"not_measured": f"the PANORAMA plans are absent ({DETECTOR_MODEL.parent.parent})"}
    from screen.model.package import ModelPackage
    from screen.nnunet.importer import ImportOptions, import_nnunet
    from screen.nnunet.predictor import NnunetModel, predict_array, predict_volume

    root = Path(tempfile.mkdtemp(prefix="gpu-bench-panorama-"))
    folds = (0, 1, 2, 3, 4)
    detector = write_folder(root / "det", DETECTOR_MODEL, folds=folds, mirror_axes=(0, 1, 2))
    localiser = write_folder(root / "loc", PANCREAS_MODEL, folds=folds, mirror_axes=(0, 1, 2))
    for fold in folds:  # the localiser finds a pancreas everywhere: the crop is then as big
        _bias_class(localiser, fold, 1, 3.0)
    numbers: dict[str, object] = {}
    hu = next(phantoms(1, SHAPE, SPACING)).hu
    for label, chosen, mirroring in (("1_fold_no_mirroring", ("0",), False),
                                     ("5_folds_8_mirrors", None, True)):
        out = root / label
        import_nnunet(detector, out, ImportOptions(folds=chosen, mirroring=mirroring),
                      localiser=localiser,
                      localiser_options=ImportOptions(name="localiser", folds=chosen,
                                                      mirroring=mirroring))
        model = NnunetModel.open(ModelPackage.load(out), "torch", "fp16", "cuda:0")
        crop = np.random.default_rng(1).normal(40, 40, MEDIAN_CROP).astype(np.float32)
        predict_array(model, crop[:, :128, :128], model.card.spacing)  # warm up
        start = time.perf_counter()
        predict_volume(model.localiser, hu, SPACING)
        localise = time.perf_counter() - start
        start = time.perf_counter()
        predict_array(model, crop, model.card.spacing)
        detect = time.perf_counter() - start
        numbers[label] = {"seconds_per_case": round(localise + detect, 2),
                          "localiser_seconds": round(localise, 2),
                          "detector_seconds": round(detect, 2)}
        if chosen is not None:
            numbers["detector_patch"] = patch_options(ModelPackage.load(out), compile_too)
    numbers["series"] = list(SHAPE)
    numbers["median_crop"] = list(MEDIAN_CROP)
    shutil.rmtree(root, ignore_errors=True)
    return numbers


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--series", type=int, default=32)
    parser.add_argument("--workers", type=int, default=None,
                        help="CPU workers (default: one per core but one for the GPU worker)")
    parser.add_argument("--skip-panorama", action="store_true")
    parser.add_argument("--skip-compile", action="store_true",
                        help="leave torch.compile (minutes per network) out of the patch timing")
    args = parser.parse_args()
    gpu = cuda_device()
    if gpu is None:
        print("gpu bench: it needs an NVIDIA GPU with a CUDA build of torch; none here, "
              "so nothing was measured")
        return
    from screen.model.package import find_package
    from screen.scan import ScanOptions
    from screen.synth.phantom import render, sample_spec

    package = find_package("pancreas-phantom-v1")
    import torch

    numbers: dict[str, object] = {"gpu": gpu, "torch": torch.__version__}
    numbers["outputs"] = outputs(package)
    cores = os.cpu_count() or 2
    workers = args.workers or max(1, cores - 1)
    archive = write_archive(RESULTS / f"gpu-archive-{args.series}", args.series)
    numbers["archive"] = {"series": args.series, "shape": list(SHAPE), "syntax": "explicit"}
    numbers["read_rate"] = read_rate(archive, args.series, threads=cores)
    numbers["scan_cpu_only"] = sweep(archive, "gpu-scan-cpu", ScanOptions(
        backend="onnxruntime", workers=cores, gpus=0, resume=False))
    numbers["scan_with_gpu"] = sweep(archive, "gpu-scan", ScanOptions(
        backend="torch", precision="fp16", workers=workers, gpus=1, resume=False))
    bound = numbers["read_rate"]["series_per_second"]
    numbers["scan_with_gpu"]["goal_series_per_second"] = min(20.0, bound)
    numbers["scan_with_gpu"]["goal_bound_by"] = "storage read rate" if bound < 20 else "20/s"
    numbers["panorama"] = panorama(args.skip_panorama, not args.skip_compile)
    slices = list(render(sample_spec(np.random.default_rng(7)), shape_kji=(64, *SHAPE[1:]),
                         spacing_kji=SPACING).hu.astype(np.int16))
    numbers["jpeg2000"] = jpeg2000(slices, threads=cores)
    save("gpu", numbers)


if __name__ == "__main__":
    main()
