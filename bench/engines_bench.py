"""ONNX Runtime latency per volume on the CPU for FP32, FP16 and INT8 of the segmenter.

    python -m bench.engines_bench

Uses the shipped package when present, else the same architecture with random weights
(latency depends on the architecture and input size, not on the weights).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import save


def main() -> None:
    import torch

    from screen.engines import quantize
    from screen.engines.tensorrt_build import profile_for
    from screen.model.export import export_onnx
    from screen.model.network import UNet3D
    from screen.training.recipe import SEGMENT

    card = SEGMENT
    shape = profile_for(card).opt
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, shape).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            from screen.model.package import find_package

            source, weights = find_package().onnx_path("segment"), "shipped"
        except ValueError:
            torch.manual_seed(0)
            source, weights = Path(tmp) / "fp32.onnx", "random"
            export_onnx(UNet3D(card.widths).eval(), source)
        calib = np.concatenate([rng.uniform(-1, 1, (1, 1, 32, 64, 64)).astype(np.float32) for _ in range(4)])
        files = {"fp32": source, "fp16": Path(tmp) / "fp16.onnx", "int8": Path(tmp) / "int8.onnx"}
        quantize.to_fp16(source, files["fp16"], x, card.input_name)
        quantize.to_int8(source, files["int8"], calib, card.input_name)
        ref = quantize.run_onnx(source, x, card.input_name)
        numbers: dict[str, object] = {"input_shape": list(shape), "weights": weights}
        import onnxruntime as ort

        for precision, path in files.items():
            session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            session.run(None, {card.input_name: x})  # first run allocates; not timed
            times = []
            for _ in range(3):
                start = time.perf_counter()
                out = session.run(None, {card.input_name: x})[0]
                times.append(time.perf_counter() - start)
            numbers[f"{precision}_s_per_volume"] = round(statistics.median(times), 3)
            numbers[f"{precision}_max_abs_delta"] = float(np.abs(out - ref).max())
    save("engines", numbers)


if __name__ == "__main__":
    main()
