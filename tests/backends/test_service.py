"""The inference service on its own, in this process: requests of many callers at once, each
answered with what its network gives it alone, and the bytes that crossed counted. (Across a
real cluster, as a sweep uses it: tests/scan/test_split_path.py.)"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from screen.backends import load_runner
from screen.backends.outputs import Above, Channels, PackedMask, run_keeping
from screen.backends.service import InferenceService, ServiceSpec, transit_dtype


def _inputs(n: int, shape: tuple[int, int, int]) -> list[np.ndarray]:
    rng = np.random.default_rng(4)
    return [rng.uniform(-1, 1, (1, 1, *shape)).astype(np.float32) for _ in range(n)]


async def _ask(service: InferenceService, package: str, requests: list[tuple[str, np.ndarray]]):
    outs = await asyncio.gather(*(service.run(package, n, x) for n, x in requests))
    return outs, await service.stats()


def test_many_callers_at_once_get_what_the_network_gives_each_alone(package) -> None:
    service = InferenceService(ServiceSpec(backend="onnxruntime", cpu_threads=1,
                                           cpu_concurrency=2))
    # Two networks, two shapes, interleaved, all waiting at once.
    requests = [("segment", x) for x in _inputs(3, (32, 32, 32))] + \
               [("locate", x) for x in _inputs(2, (32, 40, 48))]
    requests = requests[::2] + requests[1::2]
    outs, stats = asyncio.run(_ask(service, str(package.path), requests))

    for (network, x), out in zip(requests, outs):
        alone = load_runner(package, network, "onnxruntime", local=True).run(x)
        assert out.dtype == np.float32 and out.shape == (1, 3, *x.shape[2:])
        np.testing.assert_array_equal(out, alone)
    assert stats.requests == 5 and stats.samples == 5
    assert stats.batches == 5  # on a CPU each request runs as it came, exactly as alone
    assert stats.bytes_in == sum(x.nbytes for _, x in requests)
    assert stats.bytes_out == sum(o.nbytes for o in outs) == 3 * stats.bytes_in
    assert stats.device == "cpu" and stats.busy_seconds > 0


def test_a_caller_keeping_part_of_the_outputs_gets_only_that_and_as_from_a_local_runner(
        package) -> None:
    service = InferenceService(ServiceSpec(backend="onnxruntime", cpu_threads=1))
    x = _inputs(1, (32, 40, 48))[0]
    kept = (Above((1, 2), 0.5), Channels((2,)))
    mask, lesion = asyncio.run(service.run(str(package.path), "segment", x, kept))
    stats = asyncio.run(service.stats())

    local = run_keeping(load_runner(package, "segment", "onnxruntime", local=True), x, kept)
    assert isinstance(mask, PackedMask)
    np.testing.assert_array_equal(mask.unpack(), local[0])
    np.testing.assert_array_equal(lesion, local[1])
    # Bits for the mask, one float channel: a sixth of the three float32 maps sent whole.
    voxels = 32 * 40 * 48
    assert stats.bytes_out == voxels // 8 + 4 * voxels


def test_float16_transit_sends_kept_channels_as_float16_and_masks_from_full_precision(
        package) -> None:
    service = InferenceService(ServiceSpec(backend="onnxruntime", cpu_threads=1,
                                           transit="float16"))
    x = _inputs(1, (32, 32, 32))[0]
    kept = (Above((1, 2), 0.5), Channels((2,)))
    mask, lesion = asyncio.run(service.run(str(package.path), "segment", x.astype(np.float16),
                                           kept))
    out = load_runner(package, "segment", "onnxruntime", local=True).run(
        x.astype(np.float16).astype(np.float32))
    assert lesion.dtype == np.float16
    np.testing.assert_allclose(lesion.astype(np.float32), out[:, 2:3], atol=2.5e-4)
    np.testing.assert_array_equal(mask.unpack(), (out[:, 1] + out[:, 2]) > 0.5)


def test_a_failing_network_fails_its_callers_only(package) -> None:
    service = InferenceService(ServiceSpec(backend="onnxruntime", cpu_threads=1))
    good = _inputs(1, (32, 32, 32))[0]
    bad = np.zeros((1, 1, 30, 32, 32), np.float32)  # not a multiple of the network's 8

    async def both():
        return await asyncio.gather(service.run(str(package.path), "segment", bad),
                                    service.run(str(package.path), "segment", good),
                                    return_exceptions=True)

    failed, fine = asyncio.run(both())
    assert isinstance(failed, ValueError) and "multiples of 8" in str(failed)
    assert isinstance(fine, np.ndarray) and fine.shape == (1, 3, 32, 32, 32)


def test_a_gpu_sends_fp16_and_a_cpu_float32_unless_told() -> None:
    assert transit_dtype("auto", "cuda:0") == np.float16
    assert transit_dtype("auto", "cpu") == np.float32
    assert transit_dtype("float16", "cpu") == np.float16
    assert transit_dtype("float32", "cuda:1") == np.float32


def test_bad_settings_are_refused_when_made() -> None:
    with pytest.raises(ValueError, match="transit must be one of auto, float32, float16"):
        ServiceSpec(transit="int8")
    with pytest.raises(ValueError, match="max_batch must be at least 1, got 0"):
        ServiceSpec(max_batch=0)
    with pytest.raises(ValueError, match="precision must be one of"):
        ServiceSpec(precision="fp64")
    with pytest.raises(TypeError, match="needs a ServiceSpec, got dict"):
        InferenceService({"backend": "torch"})  # type: ignore[arg-type]


def test_on_a_gpu_same_shaped_requests_share_batches_and_stay_within_fp16_tolerance(package):
    torch = pytest.importorskip("torch", reason="torch is not installed")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device: batching across callers happens on a GPU only")
    service = InferenceService(ServiceSpec(backend="torch", precision="fp16", gpu_streams=1))
    requests = [("segment", x) for x in _inputs(6, (32, 32, 32))]
    first = asyncio.run(_ask(service, str(package.path), requests[:1]))  # loads the network
    outs, stats = asyncio.run(_ask(service, str(package.path), requests[1:]))
    assert first[1].batches == 1 and stats.batches < stats.requests == 6
    assert stats.largest_batch > 1 and outs[0].dtype == np.float16
    for (network, x), out in zip(requests[1:], outs):
        cpu = load_runner(package, network, "onnxruntime", local=True).run(x)
        np.testing.assert_allclose(out.astype(np.float32), cpu, atol=2e-3)
