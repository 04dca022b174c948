"""`screen doctor`: what this machine offers for screening, and what `scan` would use.

GPUs as NVML sees them, CUDA as torch sees it, TensorRT, ONNX Runtime and ModelOpt, the
engines in the cache and the GPU each was built for, every backend's availability, and the
backend and precision ``scan --backend auto`` would choose, with the reason. Each question
is answered on its own: one failing check never hides the others.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from screen.artifacts import Artifact, cache_root, list_built
from screen.gpus import Gpu, find_gpus

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BackendStatus:
    name: str
    available: bool
    reason: str
    requires: tuple[str, ...] = ()  # what the backend needs installed, from its DEPENDENCIES


@dataclass(frozen=True, slots=True)
class InstalledModel:
    """A model package found where ``--model NAME`` looks."""

    name: str
    version: str
    kind: str  # "bundled" (screen's own format) or "imported nnU-Net"
    detail: str  # folds, recipe, calibration
    path: Path


def installed_models() -> tuple[InstalledModel, ...]:
    """Every package in the folders that names are looked up in; broken ones say why."""
    from screen.model.package import ModelPackage, engines_dirs

    found = []
    for folder in engines_dirs():
        if not folder.is_dir():
            continue
        for path in sorted(p for p in folder.iterdir() if (p / "model.json").is_file()):
            try:
                card = ModelPackage.load(path).card
            except ValueError as exc:
                found.append(InstalledModel(path.name, "?", "broken", str(exc), path))
                continue
            if getattr(card, "kind", "") == "nnunet":
                recipe = "panorama (two stages)" if card.recipe is not None else "single model"
                detail = (f"{len(card.networks)} fold(s), {recipe}, "
                          f"{'calibrated' if card.calibrated else 'uncalibrated'}")
                found.append(InstalledModel(card.name, card.version, "imported nnU-Net", detail, path))
            else:
                found.append(InstalledModel(card.name, card.version, "bundled",
                                            f"networks {', '.join(card.networks)}", path))
    return tuple(found)


@dataclass(frozen=True, slots=True)
class DoctorReport:
    gpus: tuple[Gpu, ...]
    gpu_reason: str
    torch_cuda: str
    tensorrt: str
    tensorrt_available: bool
    onnxruntime: str
    onnxruntime_providers: tuple[str, ...]
    modelopt: str
    cache: Path
    engines: tuple[Artifact, ...]
    backends: tuple[BackendStatus, ...]
    model: str
    scan_backend: str | None  # None when no backend can run the model here
    scan_device: str | None
    scan_precision: str
    scan_reason: str
    models: tuple[InstalledModel, ...] = ()


def _torch_cuda() -> str:
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    if not torch.cuda.is_available():
        return f"torch {torch.__version__}: no CUDA device (CUDA build: {torch.version.cuda or 'none'})"
    names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
    return f"torch {torch.__version__}, CUDA {torch.version.cuda}: {names}"


def _onnxruntime() -> tuple[str, tuple[str, ...]]:
    try:
        import onnxruntime as ort
    except ImportError:
        return "onnxruntime is not installed", ()
    return f"onnxruntime {ort.__version__}", tuple(ort.get_available_providers())


def _requires(backend: str) -> tuple[str, ...]:
    """What a backend says it needs installed (its ``DEPENDENCIES``); none for one that cannot
    be imported, whose reason already says why."""
    from screen.backends import plugin

    try:
        module = plugin(backend)
    except ValueError:
        return ()
    return tuple(getattr(module, "DEPENDENCIES", {}).values())


def doctor_report(model: str = "pancreas-phantom-v1", precision: str = "fp32",
                  cache: Path | None = None) -> DoctorReport:
    """Everything ``screen doctor`` shows, gathered without loading any network."""
    from screen.backends import availability, choose_backend
    from screen.backends.tensorrt import tensorrt_version
    from screen.engines.quantize import modelopt_version
    from screen.model.package import find_package

    gpus, gpu_reason = find_gpus()
    trt_version, trt_reason = tensorrt_version()
    ort_text, providers = _onnxruntime()
    root = cache_root(cache)
    backends = tuple(BackendStatus(n, ok, why, _requires(n)) for n, (ok, why) in availability().items())
    try:
        package = find_package(model)
    except ValueError as exc:
        package, package_reason = None, str(exc)
    else:
        package_reason = ""
    try:
        choice = choose_backend("auto", package)
        backend, device, reason = choice.name, choice.device, choice.reason
    except ValueError as exc:
        backend, device, reason = None, None, str(exc)
    if package is None:
        reason = f"{reason} (model: {package_reason})"
    return DoctorReport(
        gpus=gpus, gpu_reason=gpu_reason, torch_cuda=_torch_cuda(),
        tensorrt=trt_reason, tensorrt_available=trt_version is not None,
        onnxruntime=ort_text, onnxruntime_providers=providers,
        modelopt=f"nvidia-modelopt {modelopt_version()}" if modelopt_version() else "nvidia-modelopt is not installed",
        cache=root, engines=list_built(root), backends=backends, model=str(model),
        scan_backend=backend, scan_device=device, scan_precision=precision, scan_reason=reason,
        models=installed_models(),
    )


def render_doctor(report: DoctorReport, console=None) -> None:
    """Show the report as rich tables on ``console`` (stdout by default)."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    gpus = Table(title="GPUs (NVML)", title_justify="left")
    for column in ("index", "name", "memory GiB", "compute capability", "UUID"):
        gpus.add_column(column)
    for g in report.gpus:
        gpus.add_row(str(g.index), g.name, f"{g.memory_gib:.1f}", "%d.%d" % g.compute_capability, g.uuid)
    if report.gpus:
        console.print(gpus)
    else:
        console.print(f"[bold]GPUs[/bold]: none ({report.gpu_reason})")

    software = Table(title="Software", title_justify="left", show_header=False)
    software.add_row("CUDA (torch)", report.torch_cuda)
    software.add_row("TensorRT", report.tensorrt)
    software.add_row("ONNX Runtime", f"{report.onnxruntime}; providers: {', '.join(report.onnxruntime_providers) or 'none'}")
    software.add_row("ModelOpt", report.modelopt)
    console.print(software)

    backends = Table(title="Backends", title_justify="left")
    for column in ("backend", "available", "why", "requires"):
        backends.add_column(column)
    for b in report.backends:
        backends.add_row(b.name, "yes" if b.available else "no", b.reason, ", ".join(b.requires))
    console.print(backends)

    engines = Table(title=f"Engines in {report.cache}", title_justify="left")
    for column in ("package", "network", "precision", "kind", "built for", "gate", "file"):
        engines.add_column(column)
    for a in report.engines:
        built_for = (
            f"{a.key.gpu_name} (sm {a.key.compute_capability[0]}.{a.key.compute_capability[1]}), TensorRT {a.key.tensorrt_version}"
            if a.key.kind == "plan" and a.key.compute_capability else "any (ONNX)"
        )
        verdict = "forced" if a.forced else ("passed" if a.gate else "-")
        engines.add_row(a.package, a.network, a.key.precision, a.key.kind, built_for, verdict, a.path.name)
    if report.engines:
        console.print(engines)
    else:
        console.print(f"[bold]Engines[/bold]: none built in {report.cache}")

    models = Table(title="Models (--model NAME)", title_justify="left")
    for column in ("name", "version", "kind", "detail", "folder"):
        models.add_column(column)
    for m in report.models:
        models.add_row(m.name, m.version, m.kind, m.detail, str(m.path))
    console.print(models)

    if report.scan_backend is None:
        console.print(f"[bold]scan --backend auto[/bold] ({report.model}): no backend can run here: {report.scan_reason}")
    else:
        console.print(
            f"[bold]scan --backend auto[/bold] ({report.model}): {report.scan_backend} on "
            f"{report.scan_device}, {report.scan_precision}; {report.scan_reason}"
        )
