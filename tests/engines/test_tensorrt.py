"""TensorRT: profile shapes from the card everywhere; building and running only where it exists."""

from __future__ import annotations

import pytest

from screen.backends import choose_backend, plugin
from screen.backends.tensorrt import tensorrt_version
from screen.engines.tensorrt_build import Profile, profile_for
from screen.gpus import find_gpus
from screen.training.recipe import LOCATE, SEGMENT


def test_profile_shapes_follow_the_card() -> None:
    segment = profile_for(SEGMENT)  # 1.5 mm; 48x96x96 mm at least, 144x192x240 at most
    assert segment.min == (1, 1, 32, 64, 64)
    assert segment.max == (1, 1, 96, 128, 160)
    assert all(s % SEGMENT.shape_multiple == 0 for s in segment.opt[2:])
    assert segment.covers(segment.opt) and not segment.covers((1, 1, 104, 64, 64))
    locate = profile_for(LOCATE)  # whole body at 4 mm: up to a CT field of view
    assert locate.min == (1, 1, 8, 8, 8) and locate.max == (1, 1, 200, 128, 128)


def test_profile_validates() -> None:
    with pytest.raises(ValueError, match="min <= opt <= max"):
        Profile((1, 1, 16, 16, 16), (1, 1, 8, 16, 16), (1, 1, 32, 32, 32))


def test_without_tensorrt_the_backend_says_why_and_auto_passes_it_over() -> None:
    version, why = tensorrt_version()
    if version is not None:
        pytest.skip(f"tensorrt {version} is installed here")
    ok, reason = plugin("tensorrt").is_available()
    assert not ok and reason == why and "tensorrt is not installed" in reason
    choice = choose_backend("auto")
    assert choice.name in ("torch", "onnxruntime")
    assert "passed over tensorrt: tensorrt is not installed" in choice.reason
    with pytest.raises(ValueError, match="backend 'tensorrt' is not available: tensorrt is not installed"):
        choose_backend("tensorrt")


def test_plan_builds_and_runs_on_this_gpu(tiny_package, tmp_path) -> None:
    version, why = tensorrt_version()
    if version is None:
        pytest.skip(f"TensorRT plan test needs TensorRT: {why}")
    gpus, why = find_gpus()
    if not gpus:
        pytest.skip(f"TensorRT plan test needs a GPU: {why}")
    import numpy as np

    from screen.backends import onnxruntime as ort_backend
    from screen.backends import tensorrt as trt_backend
    from screen.engines.build import build_engine

    tmp_path.mkdir(exist_ok=True)
    result = build_engine(tiny_package, "fp16", out=tmp_path, gate_cases=2)
    assert len(result.plans) == 2 * len({(g.name, g.compute_capability) for g in gpus})
    x = np.random.default_rng(0).uniform(-1, 1, (1, 1, 32, 64, 64)).astype(np.float32)
    import os
    os.environ["SCREEN_ENGINE_CACHE"] = str(tmp_path)
    try:
        runner = trt_backend.load(tiny_package, "segment", "fp16", f"cuda:{gpus[0].index}")
        ref = ort_backend.load(tiny_package, "segment").run(x)
        assert np.abs(runner.run(x) - ref).max() < 5e-3
    finally:
        del os.environ["SCREEN_ENGINE_CACHE"]
