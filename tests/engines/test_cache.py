"""Cache keys: one per combination of ingredients, stable, and found again by the runtime."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from screen import artifacts as cache
from screen.artifacts import EngineKey
from screen.atomic import file_sha256
from screen.gpus import Gpu

SHA_A = "a" * 64
SHA_B = "b" * 64
PROFILE = ((1, 1, 8, 8, 8), (1, 1, 16, 16, 16), (1, 1, 32, 32, 32))


def plan_key(**changes) -> EngineKey:
    base = EngineKey(
        onnx_sha256=SHA_A, precision="int8", kind="plan", calib_sha256=SHA_B,
        modelopt_version="0.47.0", modelopt_args=(("calibration_method", "max"),),
        tensorrt_version="10.12.0", gpu_name="NVIDIA H100", compute_capability=(9, 0),
        profile=PROFILE,
    )
    return dataclasses.replace(base, **changes)


def test_digest_is_stable_and_names_the_file() -> None:
    assert plan_key().digest == plan_key().digest
    assert len(plan_key().digest) == 20
    path = cache.artifact_path(Path("/c"), "pkg", "segment", plan_key())
    assert path == Path("/c/pkg/segment") / f"int8-{plan_key().digest}.plan"
    assert EngineKey.from_dict(plan_key().to_dict()) == plan_key()


@pytest.mark.parametrize("change", [
    {"onnx_sha256": "c" * 64}, {"precision": "fp16"}, {"calib_sha256": "d" * 64},
    {"modelopt_version": "0.48.0"}, {"modelopt_args": (("calibration_method", "entropy"),)},
    {"tensorrt_version": "11.0.0"}, {"gpu_name": "NVIDIA H200"}, {"compute_capability": (8, 9)},
    {"profile": ((1, 1, 8, 8, 8), (1, 1, 16, 16, 16), (1, 1, 64, 32, 32))},
])
def test_every_ingredient_changes_the_digest(change: dict) -> None:
    assert plan_key(**change).digest != plan_key().digest


def test_kind_changes_the_digest() -> None:
    onnx = EngineKey(onnx_sha256=SHA_A, precision="fp16", kind="onnx")
    assert onnx.digest != dataclasses.replace(onnx, kind="plan", tensorrt_version="10", gpu_name="g",
                                              compute_capability=(9, 0), profile=PROFILE).digest


@pytest.mark.parametrize("change, message", [
    ({"onnx_sha256": "xyz"}, "onnx_sha256 must be 64"),
    ({"precision": "int4"}, "precision must be one of"),
    ({"kind": "engine"}, "kind must be one of"),
    ({"gpu_name": ""}, "a plan's key needs the TensorRT version"),
    ({"profile": None}, "optimisation profile"),
])
def test_bad_keys_are_refused(change: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        plan_key(**change)


def test_cache_root_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(cache.CACHE_ENV, raising=False)
    assert cache.cache_root() == Path.home() / ".cache" / "screen" / "engines"
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path / "env"))
    assert cache.cache_root() == tmp_path / "env"
    assert cache.cache_root(tmp_path / "out") == tmp_path / "out"


def test_registered_artifacts_are_found_by_package_precision_and_gpu(tmp_path: Path, tiny_package) -> None:
    sha = file_sha256(tiny_package.onnx_path("segment"))
    onnx_key = EngineKey(onnx_sha256=sha, precision="fp16", kind="onnx")
    assert cache.find_built(tiny_package, "segment", "fp16", root=tmp_path) is None
    art = cache.register(tmp_path, b"onnx bytes", onnx_key, tiny_package, "segment", gate={"passed": True})
    assert art.path.read_bytes() == b"onnx bytes"
    assert cache.find_built(tiny_package, "segment", "fp16", root=tmp_path) == art.path
    assert cache.find_built(tiny_package, "segment", "int8", root=tmp_path) is None
    assert cache.find_built(tiny_package, "locate", "fp16", root=tmp_path) is None

    h100 = Gpu(0, "GPU-1", "NVIDIA H100", 80.0, (9, 0))
    other = Gpu(0, "GPU-2", "NVIDIA L4", 24.0, (8, 9))
    key = plan_key(onnx_sha256=sha, precision="fp16", calib_sha256="")
    plan = cache.register(tmp_path, b"plan", key, tiny_package, "segment")
    assert cache.find_built(tiny_package, "segment", "fp16", "plan", root=tmp_path, gpu=h100) == plan.path
    assert cache.find_built(tiny_package, "segment", "fp16", "plan", root=tmp_path, gpu=other) is None
    assert cache.find_built(tiny_package, "segment", "fp16", "plan", root=tmp_path, gpu=h100,
                            tensorrt_version="11.0") is None
    assert {a.key.kind for a in cache.list_built(tmp_path)} == {"onnx", "plan"}


def test_an_artifact_without_metadata_is_not_registered(tmp_path: Path, tiny_package) -> None:
    sha = file_sha256(tiny_package.onnx_path("segment"))
    key = EngineKey(onnx_sha256=sha, precision="fp16", kind="onnx")
    art = cache.register(tmp_path, b"x", key, tiny_package, "segment")
    art.metadata_path.unlink()
    assert cache.list_built(tmp_path) == ()
