"""FP32 ONNX to FP16 (ModelOpt AutoCast) or INT8 with explicit Q/DQ (ModelOpt quantization).

Both keep the network's inputs and outputs float32, so every runtime feeds and reads it the
same way. Both run on the CPU (ONNX Runtime's CPU provider); nothing here needs a GPU. Each
result is loaded and run once in ONNX Runtime before it is handed back, so a file that does
not run is never registered.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

CALIBRATION_METHODS: tuple[str, ...] = ("max", "entropy")
# Nodes whose FP32 outputs exceed this stay FP32 (FP16 tops out at 65504; leave headroom).
FP16_DATA_MAX = 512.0


def modelopt_version() -> str:
    try:
        import modelopt
    except ImportError:
        return ""
    return str(modelopt.__version__)


@dataclass(frozen=True, slots=True)
class Conversion:
    """How a converted ONNX was made: the arguments that go into its cache key."""

    precision: str
    args: tuple[tuple[str, str], ...]

    def __post_init__(self) -> None:
        if self.precision not in ("fp16", "int8"):
            raise ValueError(f"conversion precision must be fp16 or int8, got {self.precision!r}")


def fp16_conversion() -> Conversion:
    return Conversion("fp16", (
        ("tool", "modelopt.onnx.autocast.convert_to_mixed_precision"),
        ("low_precision_type", "fp16"), ("keep_io_types", "True"),
        ("data_max", str(FP16_DATA_MAX)), ("providers", "cpu"),
    ))


def int8_conversion(method: str = "max") -> Conversion:
    if method not in CALIBRATION_METHODS:
        raise ValueError(f"calibration method must be one of {', '.join(CALIBRATION_METHODS)}, got {method!r}")
    return Conversion("int8", (
        ("tool", "modelopt.onnx.quantization.quantize"), ("quantize_mode", "int8"),
        ("calibration_method", method), ("calibration_eps", "cpu"),
        # What is not quantized stays FP32: the file is checked on the CPU, and TensorRT
        # builds it strongly typed, exactly as written.
        ("high_precision_dtype", "fp32"),
    ))


@contextmanager
def _scratch_copy(source: Path) -> Iterator[Path]:
    """A copy of ``source`` for ModelOpt, which may save changes (inferred shapes) into the
    model it is given: the package's own file must stay as shipped, or its hash changes."""
    with tempfile.TemporaryDirectory(prefix="screen-modelopt-") as tmp:
        copy = Path(tmp) / Path(source).name
        shutil.copyfile(source, copy)
        yield copy


def _need_modelopt() -> None:
    if not modelopt_version():
        raise ValueError("building FP16/INT8 engines needs NVIDIA ModelOpt (pip install 'nvidia-modelopt[onnx]')")


def to_fp16(source: Path, dest: Path, sample: np.ndarray, input_name: str) -> Conversion:
    """Write ``source`` as mixed FP16 to ``dest``. ``sample`` is one real network input: AutoCast
    runs it to keep in FP32 the nodes whose values would overflow FP16."""
    _need_modelopt()
    import onnx
    from modelopt.onnx.autocast import convert_to_mixed_precision

    conversion = fp16_conversion()
    with tempfile.TemporaryDirectory(prefix="screen-fp16-") as tmp:
        reference = Path(tmp) / "reference.npz"
        np.savez(reference, **{input_name: np.asarray(sample[:1], np.float32)})
        with _scratch_copy(source) as copy:
            model = convert_to_mixed_precision(
                onnx_path=str(copy), low_precision_type="fp16", keep_io_types=True,
                data_max=FP16_DATA_MAX, calibration_data=str(reference), providers=["cpu"],
            )
    onnx.save(model, str(dest))
    return conversion


def to_int8(source: Path, dest: Path, calibration: np.ndarray, input_name: str, method: str = "max") -> Conversion:
    """Write ``source`` with INT8 Q/DQ nodes to ``dest``, calibrated on ``calibration``
    (N, 1, K, J, I): real inputs, never random ones."""
    _need_modelopt()
    from modelopt.onnx.quantization import quantize

    conversion = int8_conversion(method)
    calibration = np.ascontiguousarray(calibration, dtype=np.float32)
    if calibration.ndim != 5 or calibration.shape[0] < 1:
        raise ValueError(f"INT8 calibration data must be (N, 1, K, J, I) with N >= 1, got {calibration.shape}")
    with _scratch_copy(source) as copy:
        quantize(
            str(copy), quantize_mode="int8", calibration_data={input_name: calibration},
            calibration_method=method, calibration_eps=["cpu"], output_path=str(dest),
            high_precision_dtype="fp32", log_level="WARNING",
        )
    if not dest.is_file():
        raise ValueError(f"ModelOpt wrote no INT8 model for {source}")
    return conversion


def run_onnx(path: Path, x: np.ndarray, input_name: str) -> np.ndarray:
    """One forward pass in ONNX Runtime on the CPU; ValueError naming the file when it fails."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        out = session.run(None, {input_name: np.ascontiguousarray(x, np.float32)})[0]
    except Exception as exc:  # ORT raises its own exception types; report any as a bad file
        raise ValueError(f"{path} does not run in ONNX Runtime: {exc}") from exc
    out = np.asarray(out, np.float32)
    if not np.all(np.isfinite(out)):
        raise ValueError(f"{path} gives non-finite outputs in ONNX Runtime")
    return out
