"""Runtime backends: small plugins that run a package's networks, registered by import path.

Each plugin module has ``NAME``, ``is_available() -> (bool, reason)`` and
``load(package, network, precision, device) -> Runner``; it may also have
``auto_device(package) -> (device or None, reason)``, which says whether automatic choice
should pick it on this machine and on which device (without it, an available plugin is
picked for the CPU). Nothing heavy is imported until a plugin is asked for, so listing
backends (``screen doctor``) stays cheap. Another backend plugs in with :func:`register`.

Automatic choice takes the first of :data:`AUTO_ORDER` that is available and has a device:
a TensorRT plan for this GPU, then torch on CUDA, then ONNX Runtime on the CPU.

A process told to :func:`serve_from` an inference service (a CPU worker of a sweep with GPU
workers) gets :class:`screen.backends.service.RemoteRunner` from :func:`load_runner`: its
networks then run on the service's GPU, and nothing above this layer changes.
"""

from __future__ import annotations

import importlib
import logging
import threading
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING

from screen.backends.base import PRECISIONS, Runner

if TYPE_CHECKING:
    from screen.backends.service import ServiceHandle
    from screen.model.package import ModelPackage

logger = logging.getLogger(__name__)

_PLUGINS: dict[str, str] = {
    "tensorrt": "screen.backends.tensorrt",
    "torch": "screen.backends.torch",
    "onnxruntime": "screen.backends.onnxruntime",
}
AUTO_ORDER: tuple[str, ...] = ("tensorrt", "torch", "onnxruntime")

_runners: dict[tuple[str, str, str, str, str], Runner] = {}
_cpu_threads: int | None = None  # None: each library's own default (all cores)
_service: ServiceHandle | None = None  # where this process's networks run; None: here
_lock = threading.Lock()

__all__ = [
    "AUTO_ORDER", "PRECISIONS", "BackendChoice", "Runner", "availability", "choose_backend",
    "cpu_threads", "load_runner", "names", "plugin", "register", "serve_from",
    "set_cpu_threads",
]


@dataclass(frozen=True, slots=True)
class BackendChoice:
    name: str
    device: str
    reason: str


def set_cpu_threads(threads: int | None) -> None:
    """How many CPU threads each runner of this process may use: a sweep with several worker
    processes on one machine gives each its share of the cores instead of letting every one
    of them take all cores and fight over them."""
    global _cpu_threads
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    _cpu_threads = threads


def cpu_threads() -> int | None:
    return _cpu_threads


def serve_from(service: ServiceHandle | None) -> None:
    """Run this process's networks on ``service`` (None: here, as by default)."""
    global _service
    _service = service
    clear_cache()


def register(name: str, module_path: str) -> None:
    """Make ``module_path`` the plugin called ``name`` (replacing one of that name)."""
    if not name or not module_path:
        raise ValueError(f"a backend needs a name and a module path, got {name!r}, {module_path!r}")
    _PLUGINS[name] = module_path


def names() -> tuple[str, ...]:
    return tuple(_PLUGINS)


def plugin(name: str) -> ModuleType:
    """The plugin module called ``name``; ValueError naming the known ones when unknown."""
    try:
        path = _PLUGINS[name]
    except KeyError:
        raise ValueError(f"unknown backend {name!r}; known: {', '.join(_PLUGINS)}") from None
    try:
        module = importlib.import_module(path)
    except ImportError as exc:
        raise ValueError(f"backend {name!r} ({path}) cannot be imported: {exc}") from exc
    for attribute in ("NAME", "is_available", "load"):
        if not hasattr(module, attribute):
            raise ValueError(f"backend {name!r} ({path}) lacks {attribute!r}")
    return module


def availability() -> dict[str, tuple[bool, str]]:
    """Every registered backend: whether it can run here, and why not when it cannot."""
    report: dict[str, tuple[bool, str]] = {}
    for name in _PLUGINS:
        try:
            report[name] = plugin(name).is_available()
        except ValueError as exc:
            report[name] = (False, str(exc))
    return report


def _auto_device(module: ModuleType, package: ModelPackage | None) -> tuple[str | None, str]:
    if hasattr(module, "auto_device"):
        return module.auto_device(package)
    return "cpu", "available"


def choose_backend(
    requested: str = "auto", package: ModelPackage | None = None, device: str | None = None
) -> BackendChoice:
    """Which backend and device to run on, and why.

    ``requested`` is ``auto`` or a backend name; a named backend that cannot run here is a
    ValueError saying why, and ``auto`` lists why each candidate was passed over.
    """
    if requested != "auto":
        module = plugin(requested)
        ok, reason = module.is_available()
        if not ok:
            raise ValueError(f"backend {requested!r} is not available: {reason}")
        if device is None:
            found, why = _auto_device(module, package)
            device = found or "cpu"
            reason = why if found else f"{why}; running on cpu"
        return BackendChoice(requested, device, f"requested; {reason}")
    passed_over = []
    for name in AUTO_ORDER:
        if name not in _PLUGINS:
            continue
        try:
            module = plugin(name)
        except ValueError as exc:
            passed_over.append(f"{name}: {exc}")
            continue
        ok, reason = module.is_available()
        if not ok:
            passed_over.append(f"{name}: {reason}")
            continue
        found, why = _auto_device(module, package)
        if found is None:
            passed_over.append(f"{name}: {why}")
            continue
        if device is not None and device.split(":")[0] != found.split(":")[0]:
            passed_over.append(f"{name}: would run on {found}, not {device}")
            continue
        note = f"; passed over {'; '.join(passed_over)}" if passed_over else ""
        return BackendChoice(name, device or found, f"auto: {why}{note}")
    raise ValueError("no backend can run here: " + "; ".join(passed_over))


def load_runner(
    package: ModelPackage, network: str, backend: str = "auto", precision: str = "fp32",
    device: str | None = None, *, local: bool = False,
) -> Runner:
    """A runner for one network, loaded once per process and reused (keyed by package hash,
    network, backend, precision and device). Where this process serves from an inference
    service (see :func:`serve_from`), the runner sends the network's inputs there, unless
    ``local`` (the service itself loads its runners so)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    card = package.network(network)  # fails early, naming the networks the package has
    service = None if local else _service
    if service is not None:  # backend and precision are the service's: the sweep's own
        from screen.backends.service import RemoteRunner

        key = (package.sha256, network, "service", service.address, service.key)
        with _lock:
            runner = _runners.get(key)
            if runner is None:
                runner = _runners[key] = RemoteRunner(service, str(package.path), network,
                                                      card.shape_multiple)
        return runner
    choice = choose_backend(backend, package, device)
    key = (package.sha256, network, choice.name, precision, choice.device)
    with _lock:
        runner = _runners.get(key)
        if runner is None:
            logger.info(
                "loading %s/%s on %s (%s, %s): %s",
                package.card.name, network, choice.name, precision, choice.device, choice.reason,
            )
            runner = plugin(choice.name).load(package, network, precision, choice.device)
            _runners[key] = runner
    return runner


def clear_cache() -> None:
    """Forget loaded runners (tests, or a worker switching models)."""
    with _lock:
        _runners.clear()
