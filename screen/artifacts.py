"""The artifact registry: where built engines live, and the keys that tell them apart.

A built artifact (an FP16 or INT8 ONNX, a TensorRT plan) is only valid for exactly what it was
made from, so its file name carries a digest of every ingredient: the source ONNX's hash, the
precision, the calibration set's hash, the ModelOpt version and arguments, and for a plan the
TensorRT version, the GPU and its compute capability and the optimisation profile. Change any
of them and the digest changes, so a stale artifact is never picked up by mistake.

Layout: ``<root>/<package name>/<network>/<precision>-<digest>.<onnx|plan>``, each file with a
``.json`` beside it describing the key, the package and the accuracy gate's verdict. The
metadata is written last, so an artifact without it was never registered and is ignored.

The root is ``--out``, else ``$SCREEN_ENGINE_CACHE``, else ``~/.cache/screen/engines``; never
the package folder, so nothing built ends up committed beside the model.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from screen.atomic import write_bytes_atomic

if TYPE_CHECKING:
    from screen.gpus import Gpu
    from screen.model.package import ModelPackage

logger = logging.getLogger(__name__)

# The precisions a backend may run a network in; the registry sits below the backends, so
# they take this list from here.
PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "int8")
CACHE_ENV = "SCREEN_ENGINE_CACHE"
KINDS: tuple[str, ...] = ("onnx", "plan")
_SHA256_HEX = frozenset("0123456789abcdef")

Shape = tuple[int, int, int, int, int]


def cache_root(out: Path | str | None = None) -> Path:
    """The cache folder: ``out`` when given, else ``$SCREEN_ENGINE_CACHE``, else the user's cache."""
    if out is not None:
        return Path(out).expanduser()
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    return Path.home() / ".cache" / "screen" / "engines"


def _is_sha256(text: str) -> bool:
    return len(text) == 64 and set(text) <= _SHA256_HEX


@dataclass(frozen=True, slots=True)
class EngineKey:
    """Everything that makes one built artifact differ from another."""

    onnx_sha256: str  # the source ONNX (the package's, or the FP16/INT8 ONNX a plan is built from)
    precision: str
    kind: str
    calib_sha256: str = ""  # INT8 only
    modelopt_version: str = ""
    modelopt_args: tuple[tuple[str, str], ...] = ()
    tensorrt_version: str = ""
    gpu_name: str = ""
    compute_capability: tuple[int, int] | None = None
    profile: tuple[Shape, Shape, Shape] | None = None  # min, opt, max input shapes of a plan

    def __post_init__(self) -> None:
        if not _is_sha256(self.onnx_sha256):
            raise ValueError(f"onnx_sha256 must be 64 lower-case hex digits, got {self.onnx_sha256!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.calib_sha256 and not _is_sha256(self.calib_sha256):
            raise ValueError(f"calib_sha256 must be 64 lower-case hex digits, got {self.calib_sha256!r}")
        if self.kind == "plan" and not (self.tensorrt_version and self.gpu_name and self.compute_capability):
            raise ValueError("a plan's key needs the TensorRT version, the GPU name and its compute capability")
        if self.kind == "plan" and self.profile is None:
            raise ValueError("a plan's key needs its optimisation profile (min, opt, max shapes)")

    @property
    def digest(self) -> str:
        """A short, stable name for this combination of ingredients."""
        text = json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:20]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EngineKey:
        cc = data.get("compute_capability")
        profile = data.get("profile")
        return cls(
            onnx_sha256=str(data["onnx_sha256"]), precision=str(data["precision"]),
            kind=str(data["kind"]), calib_sha256=str(data.get("calib_sha256", "")),
            modelopt_version=str(data.get("modelopt_version", "")),
            modelopt_args=tuple((str(k), str(v)) for k, v in data.get("modelopt_args", ())),
            tensorrt_version=str(data.get("tensorrt_version", "")),
            gpu_name=str(data.get("gpu_name", "")),
            compute_capability=tuple(cc) if cc else None,  # type: ignore[arg-type]
            profile=tuple(tuple(int(v) for v in s) for s in profile) if profile else None,  # type: ignore[arg-type]
        )


@dataclass(frozen=True, slots=True)
class Artifact:
    """A registered artifact in the cache and what made it."""

    path: Path
    key: EngineKey
    package: str
    package_sha256: str
    network: str
    built_at: str
    forced: bool = False  # registered although the accuracy gate refused it
    gate: Mapping[str, Any] = field(default_factory=dict)
    source: str = ""  # the file it was built from

    @property
    def metadata_path(self) -> Path:
        return self.path.with_name(self.path.name + ".json")

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path), "key": self.key.to_dict(), "package": self.package,
            "package_sha256": self.package_sha256, "network": self.network,
            "built_at": self.built_at, "forced": self.forced, "gate": dict(self.gate),
            "source": self.source,
        }


def artifact_path(root: Path, package: str, network: str, key: EngineKey) -> Path:
    return Path(root) / package / network / f"{key.precision}-{key.digest}.{key.kind}"


def register(
    root: Path, data: bytes, key: EngineKey, package: ModelPackage, network: str, *,
    forced: bool = False, gate: Mapping[str, Any] | None = None, source: str = "",
) -> Artifact:
    """Put a built artifact in the cache under its key; its metadata goes last."""
    path = artifact_path(root, package.card.name, network, key)
    write_bytes_atomic(path, data)
    artifact = Artifact(
        path=path, key=key, package=package.card.name, package_sha256=package.sha256,
        network=network, built_at=datetime.now(UTC).isoformat(timespec="seconds"),
        forced=forced, gate=dict(gate or {}), source=source,
    )
    write_bytes_atomic(artifact.metadata_path, (json.dumps(artifact.to_dict(), indent=2) + "\n").encode())
    logger.info("registered %s", path)
    return artifact


def _read_artifact(meta: Path) -> Artifact | None:
    try:
        data = json.loads(meta.read_text(encoding="utf-8"))
        artifact = Artifact(
            path=meta.with_name(meta.name[: -len(".json")]), key=EngineKey.from_dict(data["key"]),
            package=str(data["package"]), package_sha256=str(data["package_sha256"]),
            network=str(data["network"]), built_at=str(data["built_at"]),
            forced=bool(data.get("forced", False)), gate=dict(data.get("gate") or {}),
            source=str(data.get("source", "")),
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        logger.warning("ignoring unreadable engine metadata %s: %s", meta, exc)
        return None
    return artifact if artifact.path.is_file() else None


def list_built(root: Path | str | None = None) -> tuple[Artifact, ...]:
    """Every registered artifact under the cache root, oldest first."""
    base = cache_root(root)
    if not base.is_dir():
        return ()
    found = [a for meta in base.glob("*/*/*.json") if (a := _read_artifact(meta)) is not None]
    return tuple(sorted(found, key=lambda a: (a.built_at, str(a.path))))


def find_artifacts(
    package: ModelPackage, network: str, precision: str, kind: str = "onnx", *,
    root: Path | str | None = None, gpu: Gpu | None = None, tensorrt_version: str | None = None,
) -> tuple[Artifact, ...]:
    """Registered artifacts built from this package's ``network`` at ``precision``, newest
    first. Plans must also match ``gpu`` (name and compute capability) and, when given, the
    TensorRT version."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    package.network(network)
    matches = []
    for artifact in list_built(root):
        key = artifact.key
        if (artifact.package_sha256, artifact.network, key.precision, key.kind) != (
            package.sha256, network, precision, kind
        ):
            continue
        if kind == "plan":
            if gpu is None or (key.gpu_name, key.compute_capability) != (gpu.name, gpu.compute_capability):
                continue
            if tensorrt_version is not None and key.tensorrt_version != tensorrt_version:
                continue
        matches.append(artifact)
    return tuple(reversed(matches))


def find_built(
    package: ModelPackage, network: str, precision: str, kind: str = "onnx", *,
    root: Path | str | None = None, gpu: Gpu | None = None, tensorrt_version: str | None = None,
) -> Path | None:
    """The newest registered artifact for this package's network and precision, or None.

    This is what a runtime backend asks for: ONNX Runtime for an FP16/INT8 ONNX, TensorRT
    for a plan built on this GPU.
    """
    found = find_artifacts(package, network, precision, kind, root=root, gpu=gpu,
                           tensorrt_version=tensorrt_version)
    return found[0].path if found else None
