"""A TensorRT backend never builds: it finds a registered plan, or refuses with the command that builds one."""

from __future__ import annotations

from pathlib import Path

import pytest

from screen import artifacts
from screen.artifacts import EngineKey
from screen.atomic import file_sha256
from screen.backends.tensorrt import find_plan
from screen.gpus import Gpu

H100 = Gpu(0, "GPU-1", "NVIDIA H100", 80.0, (9, 0))
PROFILE = ((1, 1, 8, 8, 8), (1, 1, 16, 16, 16), (1, 1, 32, 32, 32))


def _register(root: Path, package, kind: str, onnx_sha256: str, data: bytes) -> artifacts.Artifact:
    key = EngineKey(onnx_sha256=onnx_sha256, precision="fp16", kind=kind, **(
        {"tensorrt_version": "10.12.0", "gpu_name": H100.name, "compute_capability": H100.compute_capability,
         "profile": PROFILE} if kind == "plan" else {}))
    return artifacts.register(root, data, key, package, "segment")


def test_a_missing_onnx_or_plan_is_refused_with_the_build_command(tmp_path: Path, tiny_package) -> None:
    with pytest.raises(ValueError, match=r"no fp16 ONNX of .*/segment: run `screen build-engine --fp16`"):
        find_plan(tiny_package, "segment", "fp16", H100, "10.12.0", root=tmp_path)
    onnx = _register(tmp_path, tiny_package, "onnx", "a" * 64, b"converted onnx")
    with pytest.raises(ValueError, match=r"no TensorRT 10.12.0 fp16 plan of .*/segment for NVIDIA H100: "
                                         r"run `screen build-engine --fp16` on this machine"):
        find_plan(tiny_package, "segment", "fp16", H100, "10.12.0", root=tmp_path)
    with pytest.raises(ValueError, match=r"int8 .*run `screen build-engine --int8 --calib ARCHIVE`"):
        find_plan(tiny_package, "segment", "int8", H100, "10.12.0", root=tmp_path)
    with pytest.raises(ValueError, match=r"fp32 plan .*scan with --precision fp16"):
        find_plan(tiny_package, "segment", "fp32", H100, "10.12.0", root=tmp_path)

    plan = _register(tmp_path, tiny_package, "plan", file_sha256(onnx.path), b"plan bytes")
    assert find_plan(tiny_package, "segment", "fp16", H100, "10.12.0", root=tmp_path) == plan
    with pytest.raises(ValueError, match="no TensorRT 10.13.0 fp16 plan"):
        find_plan(tiny_package, "segment", "fp16", H100, "10.13.0", root=tmp_path)


def test_a_plan_of_another_onnx_is_stale(tmp_path: Path, tiny_package) -> None:
    _register(tmp_path, tiny_package, "onnx", "a" * 64, b"converted onnx")
    _register(tmp_path, tiny_package, "plan", "b" * 64, b"plan of an older onnx")
    with pytest.raises(ValueError, match=r"built from another ONNX than the current one: "
                                         r"run `screen build-engine --fp16`"):
        find_plan(tiny_package, "segment", "fp16", H100, "10.12.0", root=tmp_path)


def test_a_plan_runs_on_cuda_only(tiny_package) -> None:
    from screen.backends import tensorrt as trt_backend

    with pytest.raises(ValueError, match="tensorrt runs on 'cuda\\[:N\\]', not 'cpu'"):
        trt_backend.load(tiny_package, "segment", "fp16", "cpu")
