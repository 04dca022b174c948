"""Imported nnU-Net models: the PANORAMA detector's network on one patch, and per-case
projections from measured patch counts; peak memory of a full-size series through the
PANORAMA recipe.

    python -m bench.nnunet_bench [--skip-rss] [--threads N] [--profile]

The detector is the real plans' network (PlainConvUNet, 32..320 features, patch 48 x 128 x 288)
with seeded random weights in nnU-Net's on-disk format (timing does not depend on the weights).
One patch goes through ONNX Runtime and torch (screen's backends) and through nnUNetPredictor
on an input of exactly one patch, so each does one network evaluation plus its own overhead;
and through ONNX Runtime with its CPU memory arena off, for what the arena saves in time.
They take turns, one call each per round (``--repeats`` rounds), so that on a machine
shared with other work each ratio compares calls made under the same load; wall and CPU
seconds are both kept.
With ``--profile``, one more ONNX Runtime call runs with its profiler on: the share of each
operator type in the network's kernel time, and the convolutions' arithmetic (GFLOP, from the
profiled shapes) against the seconds they took, which says how far from the CPU's peak they run
and so how much any rewrite of the rest of the graph could still gain.
Per-case projections multiply the fastest single-patch time of each by the patch count of the
plans' median image (74 x 230 x 425 voxels, the crop the detector was trained on): all 5 folds
with 8 mirrors, and 1 fold without mirroring.

Peak RSS: a 512 x 512 x 300 series (0.7 x 0.7 x 1.5 mm) through the panorama recipe, in a fresh
process, with the real plans but narrow networks (4..16 features), because the arrays, not the
weights, set the memory: resampled image, logits, probabilities on the series grid. A thread
samples the resident memory every 20 ms and keeps the recipe's frames at its highest, to say
where the peak comes.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bench.common import save

MEDIAN_CROP = (74, 230, 425)


def _patch_count(image, patch, step=0.5) -> int:
    from screen.nnunet.sliding import steps

    return int(np.prod([len(s) for s in steps(image, patch, step)]))


def _interleaved(fns: dict[str, Callable[[], object]], rounds: int) -> dict[str, list[tuple[float, float]]]:
    """(wall, CPU) seconds of each function, one call of each per round, side by side: on a
    machine shared with other work, only calls made in the same round share its load."""
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            wall, cpu = time.perf_counter(), time.process_time()
            fn()
            times[name].append((time.perf_counter() - wall, time.process_time() - cpu))
    return times


def _conv_gflop(args: dict) -> float:
    """Multiply-adds x 2 of one profiled Conv: every output value sums over weight[1:]."""
    inputs = [next(iter(t.values())) for t in args.get("input_type_shape", [])]
    outputs = [next(iter(t.values())) for t in args.get("output_type_shape", [])]
    if len(inputs) < 2 or not outputs or len(inputs[1]) != len(outputs[0]):  # no weight shape: not counted
        return 0.0
    return 2.0 * float(np.prod(outputs[0])) * float(np.prod(inputs[1][1:])) / 1e9


def onnxruntime_profile(path: Path, input_name: str, x: np.ndarray, threads: int) -> dict[str, object]:
    """One profiled call (after a warm-up call) of the ONNX network as screen's runner sets it up
    (``threads`` intra-op threads, one inter-op): kernel seconds per operator type, and the
    Conv nodes' GFLOP per second of their own kernel time and per CPU second of the call
    (ConvTranspose is left out: its profiled shapes omit the prepacked weight)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.enable_profiling = True
    folder = Path(tempfile.mkdtemp(prefix="nnunet-ort-profile-"))
    options.profile_file_prefix = str(folder / "ort")
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    session.run(None, {input_name: x})
    wall, cpu = time.perf_counter(), time.process_time()
    session.run(None, {input_name: x})
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    events = json.loads(Path(session.end_profiling()).read_text())
    shutil.rmtree(folder, ignore_errors=True)
    last = max(e["ts"] for e in events if e.get("cat") == "Session" and e.get("name") == "model_run")
    seconds: dict[str, float] = {}
    gflop = 0.0
    for event in events:
        if event.get("cat") != "Node" or not event["name"].endswith("_kernel_time") or event["ts"] < last:
            continue
        op = event["args"].get("op_name", "?")
        seconds[op] = seconds.get(op, 0.0) + event["dur"] / 1e6
        if op == "Conv":
            gflop += _conv_gflop(event["args"])
    total = sum(seconds.values())
    by_time = sorted(seconds.items(), key=lambda kv: -kv[1])
    return {
        "call_wall_s": round(wall, 2), "call_cpu_s": round(cpu, 2),
        "kernel_s_by_op": {op: round(s, 2) for op, s in by_time},
        "kernel_share_by_op": {op: round(s / total, 3) for op, s in by_time},
        "conv_gflop": round(gflop, 1),
        "conv_gflop_per_conv_kernel_s": round(gflop / seconds["Conv"], 1) if "Conv" in seconds else None,
        # Over every CPU second of the call (other operators, spinning threads): a lower bound.
        "conv_gflop_per_cpu_s_of_call": round(gflop / cpu, 1) if cpu > 0 else None,
    }


def patch_timing(threads: int, repeats: int, profile: bool = False) -> dict[str, object]:
    import torch

    from screen.backends import choose_backend, load_runner, set_cpu_threads
    from screen.model.package import ModelPackage
    from screen.nnunet.importer import ImportOptions, import_nnunet
    from tests.nnunet.folders import DETECTOR_MODEL, write_folder

    torch.set_num_threads(threads)
    set_cpu_threads(threads)
    root = Path(tempfile.mkdtemp(prefix="nnunet-bench-"))
    folder = write_folder(root, DETECTOR_MODEL, folds=(0,), mirror_axes=(0, 1, 2))
    import_nnunet(folder, root / "pkg", ImportOptions(folds=("0",)))
    package = ModelPackage.load(root / "pkg")
    patch = package.card.patch_size
    x = np.random.default_rng(0).normal(size=(1, 1, *patch)).astype(np.float32)
    auto = choose_backend("auto", package).name
    numbers: dict[str, object] = {"patch": list(patch), "threads": threads, "rounds": repeats,
                                  "screen_auto_backend_on_this_machine": auto}
    fns: dict[str, Callable[[], object]] = {}
    outputs: dict[str, np.ndarray] = {}
    for backend in ("onnxruntime", "torch"):
        runner = load_runner(package, "fold_0", backend)
        outputs[backend] = runner.run(x)  # warm up
        fns[backend] = lambda runner=runner: runner.run(x)
    # ONNX Runtime's CPU memory arena (on in screen) keeps a run's buffers for the next run,
    # holding them between runs too; off, each run maps and faults its buffers in anew.
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.enable_cpu_mem_arena = False
    no_arena = ort.InferenceSession(str(package.onnx_path("fold_0")), options,
                                    providers=["CPUExecutionProvider"])
    feed = {package.network("fold_0").input_name: x}
    no_arena.run(None, feed)
    fns["onnxruntime_arena_off"] = lambda: no_arena.run(None, feed)
    try:
        from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
        from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

        from screen.nnunet.folder import read_folder
        from screen.nnunet.network import build_network, read_checkpoint

        plans = json.loads((folder / "plans.json").read_text())
        manager = PlansManager(plans)
        info = read_folder(folder)
        network = build_network(info.architecture, len(info.labels))
        weights = read_checkpoint(folder / "fold_0" / "checkpoint_final.pth").weights
        predictor = nnUNetPredictor(use_mirroring=False, device=torch.device("cpu"), allow_tqdm=False)
        predictor.manual_initialization(network, manager, manager.get_configuration("3d_fullres"),
                                        [weights], dict(info.dataset), info.trainer, None)
        data = torch.from_numpy(x[0])
        outputs["nnunet_predictor"] = predictor.predict_logits_from_preprocessed_data(data).float().numpy()
        fns["nnunet_predictor"] = lambda: predictor.predict_logits_from_preprocessed_data(data)
    except ImportError as exc:
        numbers["nnunet_predictor_patch_s"] = f"not measured: {exc}"
    for name in ("onnxruntime", "torch"):  # the same logits, to nnU-Net's float16 accumulation
        if "nnunet_predictor" in outputs:
            numbers[f"{name}_max_abs_logit_difference"] = round(
                float(np.abs(outputs[name][0] - outputs["nnunet_predictor"]).max()), 4)
    times = _interleaved(fns, repeats)
    for kind, at in (("wall", 0), ("cpu", 1)):  # per round (the same load), median over rounds
        numbers[f"onnxruntime_arena_off_over_on_{kind}"] = round(float(np.median(
            [a[at] / b[at] for a, b in zip(times["onnxruntime_arena_off"], times["onnxruntime"])])), 2)
    numbers["rounds_wall_cpu_s"] = {k: [[round(w, 2), round(c, 2)] for w, c in v] for k, v in times.items()}
    for name, pairs in times.items():
        numbers[f"{name}_patch_s"] = round(min(w for w, _ in pairs), 2)
        numbers[f"{name}_patch_cpu_s"] = round(min(c for _, c in pairs), 2)
    if profile:
        numbers["onnxruntime_profile"] = onnxruntime_profile(
            package.onnx_path("fold_0"), package.network("fold_0").input_name, x, threads)
    count = _patch_count(MEDIAN_CROP, patch)
    numbers["median_crop"] = list(MEDIAN_CROP)
    numbers["patches_per_case"] = count
    if "nnunet_predictor" not in times:
        return numbers
    reference = times["nnunet_predictor"]
    for name in ("onnxruntime", "torch"):
        # Ratios per round (the same load), then the median over rounds.
        numbers[f"{name}_over_nnunet_predictor_wall"] = round(float(np.median(
            [a[0] / b[0] for a, b in zip(times[name], reference)])), 2)
        numbers[f"{name}_over_nnunet_predictor_cpu"] = round(float(np.median(
            [a[1] / b[1] for a, b in zip(times[name], reference)])), 2)
    # Per case: the network evaluations dominate (the rest is resampling, a few seconds).
    for label, evaluations in (("5_folds_8_mirrors", 5 * 8 * count), ("1_fold_no_mirroring", count)):
        for name in fns:
            numbers[f"{name}_{label}_s_per_case"] = round(numbers[f"{name}_patch_s"] * evaluations, 1)
    return numbers


_RSS_CHILD = r'''
import json, resource, sys, threading, time, traceback
from pathlib import Path
import numpy as np
from screen.model.package import ModelPackage
from screen.nnunet import recipe
from screen.nnunet.predictor import NnunetModel
from screen.records import Volume
package = ModelPackage.load(Path(sys.argv[1]))
model = NnunetModel.open(package, "onnxruntime")
shape = (300, 512, 512)
rng = np.random.default_rng(0)
hu = np.full(shape, -1000.0, np.float32)
k, j, i = np.ogrid[:shape[0], :shape[1], :shape[2]]
hu[np.broadcast_to(((j - 256) / 200.0) ** 2 + ((i - 256) / 230.0) ** 2 < 1, shape)] = 40.0
hu += rng.standard_normal(shape, dtype=np.float32) * np.float32(10)  # no float64 copy
affine = np.diag([0.7, 0.7, 1.5, 1.0])
volume = Volume(hu=hu, affine=affine, slice_uids=tuple(str(n) for n in range(shape[0])))
main, done, peak = threading.get_ident(), threading.Event(), [0, ""]

def watch():
    # Where the peak comes: the recipe's own frames when resident memory was highest so far.
    while not done.wait(0.02):
        rss = int(Path("/proc/self/statm").read_text().split()[1]) * resource.getpagesize()
        if rss > peak[0]:
            frames = traceback.extract_stack(sys._current_frames()[main])
            peak[:] = rss, " < ".join(f"{Path(f.filename).stem}:{f.lineno} {f.name}"
                                      for f in reversed(frames) if "/screen/" in f.filename)

watcher = threading.Thread(target=watch, daemon=True)
watcher.start()
start = time.perf_counter()
outcome = recipe.run(model, volume)
seconds = time.perf_counter() - start
done.set()
watcher.join()
# Whether the detector ran: with random weights the localiser may find no pancreas at all.
print(json.dumps({"seconds": seconds, "peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                  "detected": "detect" in outcome.seconds, "peak_at": peak[1],
                  "stage_seconds": dict(outcome.seconds)}))
'''


def recipe_rss() -> dict[str, object]:
    from screen.nnunet.importer import ImportOptions, import_nnunet
    from tests.nnunet.folders import DETECTOR_MODEL, PANCREAS_MODEL, write_folder

    root = Path(tempfile.mkdtemp(prefix="nnunet-rss-"))
    detector = write_folder(root / "det", DETECTOR_MODEL, features=(4, 8, 8, 16, 16, 16), mirror_axes=None)
    localiser = write_folder(root / "loc", PANCREAS_MODEL, features=(4, 8, 8, 16, 16), mirror_axes=None)
    import_nnunet(detector, root / "pkg", ImportOptions(mirroring=False), localiser=localiser,
                  localiser_options=ImportOptions(name="localiser", mirroring=False))
    out = json.loads(subprocess.run([sys.executable, "-c", _RSS_CHILD, str(root / "pkg")],
                                    capture_output=True, text=True, check=True).stdout)
    return {"series": [512, 512, 300], "recipe_seconds": round(out["seconds"], 1),
            "stage_seconds": {k: round(v, 1) for k, v in out["stage_seconds"].items()},
            "detector_ran": out["detected"], "peak_rss_gib": round(out["peak"] / 2 ** 30, 2),
            "goal_gib": 8, "peak_sampled_at": out["peak_at"]}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.nnunet_bench")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--skip-rss", action="store_true")
    parser.add_argument("--skip-patch", action="store_true")
    parser.add_argument("--profile", action="store_true",
                        help="also profile one ONNX Runtime call per operator")
    args = parser.parse_args()
    numbers: dict[str, object] = {}
    if not args.skip_patch:
        numbers["patch"] = patch_timing(args.threads, args.repeats, args.profile)
    if not args.skip_rss:
        numbers["panorama_recipe_memory"] = recipe_rss()
    save("nnunet", numbers)


if __name__ == "__main__":
    main()
