"""Built engines: FP16 / INT8 ONNX made with NVIDIA ModelOpt, TensorRT plans, and their cache."""

from screen.artifacts import Artifact, EngineKey, cache_root, find_built, list_built
from screen.engines.build import BUILD_PRECISIONS, BuildResult, build_engine
from screen.engines.gate import MAX_AUROC_DROP, GateRefused, GateReport

__all__ = [
    "BUILD_PRECISIONS", "MAX_AUROC_DROP", "Artifact", "BuildResult", "EngineKey", "GateRefused",
    "GateReport", "build_engine", "cache_root", "find_built", "list_built",
]
