"""`screen build-engine`: the package's FP32 ONNX networks to FP16 or INT8, checked, gated,
cached, and turned into TensorRT plans where TensorRT and a GPU exist.

    package ONNX ─ModelOpt (CPU)─▶ FP16 / INT8 ONNX ─ONNX Runtime─▶ runs, outputs near FP32
      ─accuracy gate (AUROC, Dice, localisation vs FP32)─▶ registered in the engine cache
      ─TensorRT (per GPU model)─▶ strongly typed plan, registered beside it
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from screen import artifacts as cache
from screen.atomic import file_sha256
from screen.backends.tensorrt import deserialize, tensorrt_version
from screen.engines import calibration, gate, quantize, tensorrt_build
from screen.model.package import DEFAULT_PACKAGE, ModelPackage, find_package

logger = logging.getLogger(__name__)

BUILD_PRECISIONS: tuple[str, ...] = ("fp16", "int8")


@dataclass(frozen=True, slots=True)
class BuildResult:
    """What a build produced and what it measured."""

    package: str
    precision: str
    onnx: tuple[cache.Artifact, ...]
    plans: tuple[cache.Artifact, ...] = ()
    gate: gate.GateReport | None = None
    calibration: Path | None = None
    reused: bool = False  # every ONNX was already in the cache under the same key
    forced: bool = False
    output_delta: Mapping[str, float] = field(default_factory=dict)  # max |p - p_fp32| per network
    tensorrt: str = ""  # what happened about TensorRT plans, in words


def _check_out(root: Path, package: ModelPackage) -> None:
    root, home = root.resolve(), package.path.resolve()
    if root == home or home in root.parents:
        raise ValueError(f"the engine cache {root} must not lie inside the model package {home}")


def _calibration_set(calib: Path | None, package: ModelPackage, root: Path) -> calibration.CalibrationSet | None:
    if calib is None:
        return None
    calib = Path(calib)
    if calib.is_file():
        return calibration.load_calibration(calib)
    if calib.is_dir():
        return calibration.calibration_from_archive(calib, package, root / "calibration")
    raise ValueError(f"--calib {calib}: neither an archive folder nor a calibration .npz")


def _reference_inputs(calib: calibration.CalibrationSet | None, package: ModelPackage) -> dict[str, np.ndarray]:
    """One real input per network: from the calibration set, else from a held-out phantom."""
    if calib is not None:
        return {name: calib.for_network(name)[:1] for name in package.card.networks}
    case = next(gate.phantom_cases(2))
    return calibration.network_inputs([case.volume], package)


def build_engine(
    model: str | Path | ModelPackage = DEFAULT_PACKAGE,
    precision: str = "fp16",
    calib: Path | None = None,
    validate: Path | None = None,
    out: Path | None = None,
    force: bool = False,
    *,
    method: str = "max",
    gate_cases: int = gate.DEFAULT_CASES,
) -> BuildResult:
    """Build ``precision`` engines for every network of ``model``; see the module docstring.

    ``calib`` is an archive (indexed, drawn stratified, preprocessed as inference does) or a
    calibration ``.npz`` saved by an earlier build; INT8 refuses to build without one.
    ``validate`` is a labelled archive for the accuracy gate (default: held-out phantoms).
    ``force`` registers an engine the gate refused, and records that it was forced.
    """
    if precision not in BUILD_PRECISIONS:
        raise ValueError(f"build-engine precision must be fp16 or int8, got {precision!r}")
    if precision == "int8" and calib is None:
        raise ValueError(
            "--int8 needs calibration data: --calib ARCHIVE (real series, labelled if possible) "
            "or --calib FILE.npz from an earlier build; ModelOpt would otherwise calibrate on random inputs"
        )
    package = model if isinstance(model, ModelPackage) else find_package(model)
    root = cache.cache_root(out)
    _check_out(root, package)
    calib_set = _calibration_set(calib, package, root) if precision == "int8" or calib else None

    keys: dict[str, cache.EngineKey] = {}
    conversions: dict[str, quantize.Conversion] = {}
    for name in package.card.networks:
        conversion = quantize.fp16_conversion() if precision == "fp16" else quantize.int8_conversion(method)
        conversions[name] = conversion
        keys[name] = cache.EngineKey(
            onnx_sha256=file_sha256(package.onnx_path(name)), precision=precision, kind="onnx",
            calib_sha256=calib_set.sha256 if (calib_set and precision == "int8") else "",
            modelopt_version=quantize.modelopt_version(), modelopt_args=conversion.args,
        )
    existing = {
        name: cache.artifact_path(root, package.card.name, name, key) for name, key in keys.items()
    }
    if all(p.is_file() and p.with_name(p.name + ".json").is_file() for p in existing.values()):
        built = tuple(
            a for a in cache.list_built(root) if a.path in set(existing.values())
        )
        logger.info("%s %s engines already built: %s", package.card.name, precision, [str(p) for p in existing.values()])
        plans, note = _plans(built, package, root)
        return BuildResult(package.card.name, precision, built, plans, reused=True,
                           calibration=calib_set.path if calib_set else None,
                           forced=any(a.forced for a in built), tensorrt=note)

    samples = _reference_inputs(calib_set, package)
    with tempfile.TemporaryDirectory(prefix="screen-build-") as tmp:
        converted: dict[str, Path] = {}
        deltas: dict[str, float] = {}
        for name, network in package.card.networks.items():
            source = package.onnx_path(name)
            dest = Path(tmp) / f"{name}.{precision}.onnx"
            if precision == "fp16":
                quantize.to_fp16(source, dest, samples[name], network.input_name)
            elif calib_set is not None:  # always so for int8: checked above
                quantize.to_int8(source, dest, calib_set.for_network(name), network.input_name, method)
            reference = quantize.run_onnx(source, samples[name], network.input_name)
            candidate = quantize.run_onnx(dest, samples[name], network.input_name)
            deltas[name] = float(np.max(np.abs(reference - candidate)))
            logger.info("%s %s: largest probability change on a real input %.4f", name, precision, deltas[name])
            converted[name] = dest

        report = gate.judge(_gate(package, converted, precision, validate, gate_cases), force)
        forced = not report.passed
        artifacts = tuple(
            cache.register(
                root, converted[name].read_bytes(), keys[name], package, name, forced=forced,
                gate=report.to_dict(), source=str(package.onnx_path(name)),
            )
            for name in package.card.networks
        )
    plans, note = _plans(artifacts, package, root)
    return BuildResult(
        package.card.name, precision, artifacts, plans, report,
        calib_set.path if calib_set else None, False, forced, deltas, note,
    )


def _gate(package: ModelPackage, converted: Mapping[str, Path], precision: str,
          validate: Path | None, n_cases: int) -> gate.GateReport:
    from screen.backends import onnxruntime as ort_backend
    from screen.detect.detector import Detector

    card = package.card
    reference = Detector(card, {n: ort_backend.load(package, n, "fp32", "cpu") for n in card.networks})
    candidate = Detector(card, {
        n: ort_backend.load(package, n, precision, "cpu", model_path=converted[n]) for n in card.networks
    })
    cases = gate.archive_cases(validate, n_cases) if validate is not None else gate.phantom_cases(n_cases)
    report = gate.compare(reference, candidate, cases, precision)
    logger.info("accuracy gate: %s", report.summary())
    return report


def _plans(artifacts: tuple[cache.Artifact, ...], package: ModelPackage, root: Path) -> tuple[tuple[cache.Artifact, ...], str]:
    """TensorRT plans for each distinct GPU model here, or why none were built."""
    from screen.gpus import find_gpus

    version, why = tensorrt_version()
    if version is None:
        return (), f"no TensorRT plans: {why}"
    gpus, why = find_gpus()
    if not gpus:
        return (), f"no TensorRT plans: {why}"
    plans = []
    kinds = {(g.name, g.compute_capability): g for g in gpus}
    for gpu in kinds.values():
        for artifact in artifacts:
            plans.append(build_plan_for(artifact, package, gpu, root, version))
    return tuple(plans), f"TensorRT {version}: {len(plans)} plan(s) for {', '.join(g.name for g in kinds.values())}"


def plan_key(onnx_file: Path, precision: str, network_name: str, package: ModelPackage, gpu, version: str) -> cache.EngineKey:
    profile = tensorrt_build.profile_for(package.network(network_name))
    return cache.EngineKey(
        onnx_sha256=file_sha256(onnx_file), precision=precision, kind="plan",
        tensorrt_version=version, gpu_name=gpu.name, compute_capability=gpu.compute_capability,
        profile=profile.as_tuple(),
    )


def ensure_plan(onnx_file: Path, precision: str, network: str, package: ModelPackage, gpu,
                root: Path, version: str, *, forced: bool = False,
                gate_report: Mapping[str, object] | None = None) -> cache.Artifact:
    """The registered plan built from ``onnx_file`` on ``gpu``: reused when present and it still
    deserializes here, else built (again, after a driver update say)."""
    key = plan_key(onnx_file, precision, network, package, gpu, version)
    path = cache.artifact_path(root, package.card.name, network, key)
    for found in cache.list_built(root):
        if found.path == path:
            try:
                deserialize(found.path)
            except ValueError as exc:
                logger.warning("%s; building it again", exc)
                break
            return found
    data = tensorrt_build.build_plan(
        onnx_file, path, package.network(network), gpu, Path(root) / tensorrt_build.TIMING_CACHE,
    )
    return cache.register(root, data, key, package, network, forced=forced,
                          gate=gate_report, source=str(onnx_file))


def build_plan_for(artifact: cache.Artifact, package: ModelPackage, gpu, root: Path, version: str) -> cache.Artifact:
    return ensure_plan(artifact.path, artifact.key.precision, artifact.network, package, gpu, root,
                       version, forced=artifact.forced, gate_report=artifact.gate)
