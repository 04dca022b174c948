"""FP16 and INT8 ONNX from a real exported network run in ONNX Runtime, close to FP32."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from screen.engines import quantize


def random_input(shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (1, 1, *shape)).astype(np.float32)


# Probabilities; FP16 keeps ~3 significant digits, INT8 with max calibration much fewer.
FP16_TOLERANCE = 5e-3
INT8_TOLERANCE = 0.15


@pytest.fixture(scope="module")
def segment(tiny_package) -> tuple[Path, str]:
    return tiny_package.onnx_path("segment"), tiny_package.network("segment").input_name


def test_fp16_runs_and_stays_close(segment, tmp_path: Path) -> None:
    source, name = segment
    x = random_input((16, 32, 32))
    conversion = quantize.to_fp16(source, tmp_path / "fp16.onnx", x, name)
    assert conversion.precision == "fp16"
    model = onnx.load(str(tmp_path / "fp16.onnx"))
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # I/O stay fp32
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer)
    ref = quantize.run_onnx(source, random_input((24, 32, 40), 1), name)
    out = quantize.run_onnx(tmp_path / "fp16.onnx", random_input((24, 32, 40), 1), name)
    assert out.shape == ref.shape
    assert np.abs(out - ref).max() < FP16_TOLERANCE


def test_int8_has_qdq_runs_and_stays_close(segment, tmp_path: Path) -> None:
    source, name = segment
    calibration = np.concatenate([random_input((16, 32, 32), s) for s in range(4)])
    quantize.to_int8(source, tmp_path / "int8.onnx", calibration, name)
    ops = {n.op_type for n in onnx.load(str(tmp_path / "int8.onnx")).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    x = random_input((16, 32, 32), 9)
    ref = quantize.run_onnx(source, x, name)
    out = quantize.run_onnx(tmp_path / "int8.onnx", x, name)
    assert np.abs(out - ref).max() < INT8_TOLERANCE
    assert np.abs(out - ref).mean() < INT8_TOLERANCE / 5


def test_bad_method_and_shapes_are_refused(segment, tmp_path: Path) -> None:
    source, name = segment
    with pytest.raises(ValueError, match="calibration method must be one of"):
        quantize.int8_conversion("percentile")
    with pytest.raises(ValueError, match=r"must be \(N, 1, K, J, I\)"):
        quantize.to_int8(source, tmp_path / "x.onnx", np.zeros((1, 16, 16, 16), np.float32), name)


def test_a_file_that_does_not_run_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="broken.onnx does not run in ONNX Runtime"):
        quantize.run_onnx(bad, random_input((8, 8, 8)), "image")


def test_conversions_leave_the_package_model_untouched(segment, tmp_path: Path) -> None:
    # ModelOpt may save into the model it is given; the package's file (and so its hash)
    # must stay exactly as shipped.
    source, name = segment
    before = source.read_bytes()
    quantize.to_fp16(source, tmp_path / "fp16.onnx", random_input((16, 32, 32)), name)
    quantize.to_int8(source, tmp_path / "int8.onnx",
                     np.concatenate([random_input((16, 32, 32), s) for s in range(2)]), name)
    assert source.read_bytes() == before
