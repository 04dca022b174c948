from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch", reason="torch is not installed")

from screen.backends import onnxruntime as ort_plugin
from screen.backends import torch as plugin


def test_torch_and_onnxruntime_agree_on_the_cpu(package):
    x = np.random.default_rng(0).uniform(-1, 1, (1, 1, 32, 64, 72)).astype(np.float32)
    for network in ("locate", "segment"):
        got = plugin.load(package, network, "fp32", "cpu").run(x)
        want = ort_plugin.load(package, network, "fp32", "cpu").run(x)
        np.testing.assert_allclose(got, want, atol=1e-4)


def test_refuses_precisions_it_does_not_offer(package):
    with pytest.raises(ValueError, match="has no int8"):
        plugin.load(package, "segment", "int8", "cpu")
    with pytest.raises(ValueError, match="fp16 on CUDA only"):
        plugin.load(package, "segment", "fp16", "cpu")
