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


def test_cuda_options_are_checked_when_made():
    with pytest.raises(ValueError, match="autocast must be one of float16, bfloat16, got 'int8'"):
        plugin.CudaOptions(autocast="int8")
    with pytest.raises(TypeError, match="expected CudaOptions, got dict"):
        plugin.set_cuda_options({"compile": True})  # type: ignore[arg-type]


def test_instance_norms_kept_in_fp32_compute_what_they_computed():
    import torch

    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Conv3d(1, 4, 3, padding=1),
                                 torch.nn.InstanceNorm3d(4, affine=True),
                                 torch.nn.Sequential(torch.nn.LeakyReLU(),
                                                     torch.nn.InstanceNorm3d(4))).eval()
    x = torch.randn(2, 1, 8, 8, 8)
    with torch.inference_mode():
        want = module(x)
        wrapped = plugin._norms_in_fp32(module)
        got = wrapped(x)
    norms = [m for m in wrapped.modules() if isinstance(m, torch.nn.InstanceNorm3d)]
    assert len(norms) == 2 and all(type(m).__name__ == "InstanceNorm3d" for m in norms)
    assert sum(type(m).__name__ == "Fp32Norm" for m in wrapped.modules()) == 2
    assert torch.equal(got, want)


@pytest.mark.parametrize("options", [
    plugin.CudaOptions(), plugin.CudaOptions(autocast="bfloat16"),
    plugin.CudaOptions(channels_last=True), plugin.CudaOptions(norm_fp32=False),
], ids=["fp16", "bf16", "channels-last", "norms-in-fp16"])
def test_on_cuda_each_option_stays_within_fp16_tolerance_of_the_cpu(package, options):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device: torch's CUDA options run on a GPU only")
    plugin.set_cuda_options(options)
    try:
        x = np.random.default_rng(0).uniform(-1, 1, (2, 1, 32, 64, 72)).astype(np.float32)
        for network in ("locate", "segment"):
            want = ort_plugin.load(package, network, "fp32", "cpu").run(x)
            runner = plugin.load(package, network, "fp16", "cuda:0")
            np.testing.assert_allclose(runner.run(x), want, atol=2e-2 if "bf" in
                                       options.autocast else 5e-3)
            half = runner.run(x.astype(np.float16))  # an inference service's input, as it is
            np.testing.assert_allclose(half, want, atol=2e-2)
    finally:
        plugin.set_cuda_options(plugin.CudaOptions())
