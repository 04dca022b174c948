"""TensorRT plans: strongly typed engines built from an (FP32, FP16 or INT8 Q/DQ) ONNX.

Strongly typed means TensorRT keeps every tensor in the type the ONNX gives it, so the
precision is decided once, by the ONNX that ModelOpt wrote and ONNX Runtime checked, and the
plan cannot quietly differ from it. The optimisation profile covers the input sizes the
card allows; a timing cache file beside the plans makes rebuilds fast. TensorRT is imported
only when a plan is built or loaded.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from screen.artifacts import Shape
from screen.atomic import write_bytes_atomic
from screen.gpus import Gpu
from screen.model.card import NetworkCard

logger = logging.getLogger(__name__)

TIMING_CACHE = "timing.cache"
# A whole-body network has no maximum extent in its card; CT fields of view stay within
# 512 mm, and 800 mm of z covers a chest-abdomen-pelvis scan.
BODY_MAX_MM: tuple[float, float, float] = (800.0, 512.0, 512.0)
WORKSPACE_BYTES = 2 << 30


@dataclass(frozen=True, slots=True)
class Profile:
    """Smallest, typical and largest input shape a plan accepts, (1, 1, K, J, I) each."""

    min: Shape
    opt: Shape
    max: Shape

    def __post_init__(self) -> None:
        for name, shape in (("min", self.min), ("opt", self.opt), ("max", self.max)):
            if len(shape) != 5 or shape[:2] != (1, 1) or any(s < 1 for s in shape):
                raise ValueError(f"profile {name} shape must be (1, 1, K, J, I) with positive sizes, got {shape}")
        if not all(a <= b <= c for a, b, c in zip(self.min, self.opt, self.max)):
            raise ValueError(f"profile shapes must satisfy min <= opt <= max, got {self.min}, {self.opt}, {self.max}")

    def as_tuple(self) -> tuple[Shape, Shape, Shape]:
        return self.min, self.opt, self.max

    def covers(self, shape: tuple[int, ...]) -> bool:
        return all(a <= s <= b for a, s, b in zip(self.min, shape, self.max))


def profile_for(network: NetworkCard) -> Profile:
    """The input shapes a network sees, from its card: the preprocessing grid is at least
    ``min_extent_mm`` and at most ``max_extent_mm`` (whole-body networks: a CT field of view)
    at the card's spacing, rounded up to the shape multiple."""
    m = network.shape_multiple
    low = network.smallest_input[2:]
    high = network.voxels(network.max_extent_mm if network.max_extent_mm is not None else BODY_MAX_MM)
    high = tuple(max(h, lo) for h, lo in zip(high, low))
    # Typical: halfway between, on the multiple; TensorRT tunes its kernels for this shape.
    opt = tuple(max(lo, min(hi, round((lo + hi) / 2 / m) * m)) for lo, hi in zip(low, high))
    return Profile((1, 1, *low), (1, 1, *opt), (1, 1, *high))  # type: ignore[arg-type]


def build_plan(onnx_path: Path, dest: Path, network: NetworkCard, gpu: Gpu, timing_cache: Path) -> bytes:
    """A serialized strongly typed plan for ``onnx_path`` on ``gpu``, written atomically to
    ``dest`` and returned; the timing cache is read first and written back after."""
    import tensorrt as trt

    trt_logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(trt_logger)
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    definition = builder.create_network(flags)
    parser = trt.OnnxParser(definition, trt_logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ValueError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    profile_shapes = profile_for(network)
    profile = builder.create_optimization_profile()
    profile.set_shape(network.input_name, profile_shapes.min, profile_shapes.opt, profile_shapes.max)
    config.add_optimization_profile(profile)
    cache = config.create_timing_cache(timing_cache.read_bytes() if timing_cache.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    logger.info("building a TensorRT plan for %s on %s (profile %s)", onnx_path.name, gpu.name, profile_shapes)
    serialized = builder.build_serialized_network(definition, config)
    if serialized is None:
        raise ValueError(f"TensorRT could not build a plan for {onnx_path} on {gpu.name}")
    data = bytes(serialized)
    write_bytes_atomic(timing_cache, bytes(memoryview(config.get_timing_cache().serialize())))
    write_bytes_atomic(dest, data)
    return data
