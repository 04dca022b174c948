from __future__ import annotations

import numpy as np
import pytest

from screen.backends import onnxruntime as plugin

pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")


def test_runs_at_two_shapes_and_gives_probabilities(package):
    runner = plugin.load(package, "segment", "fp32", "cpu")
    assert (runner.name, runner.precision, runner.device) == ("onnxruntime", "fp32", "cpu")
    for shape in ((1, 1, 32, 64, 64), (1, 1, 48, 72, 96)):
        x = np.random.default_rng(0).uniform(-1, 1, shape).astype(np.float32)
        out = runner.run(x)
        assert out.shape == (1, 3, *shape[2:])
        np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-4)


def test_refuses_what_it_cannot_run(package, tmp_path, monkeypatch):
    from screen.artifacts import CACHE_ENV

    monkeypatch.setenv(CACHE_ENV, str(tmp_path))  # an empty engine cache: nothing converted
    runner = plugin.load(package, "segment", "fp32", "cpu")
    with pytest.raises(ValueError, match=r"multiples of 8, got \(30, 64, 64\)"):
        runner.run(np.zeros((1, 1, 30, 64, 64), np.float32))
    with pytest.raises(ValueError, match="needs a converted model"):
        plugin.load(package, "segment", "int8", "cpu")
    with pytest.raises(ValueError, match="runs on 'cpu' or 'cuda"):
        plugin.load(package, "segment", "fp32", "tpu")
