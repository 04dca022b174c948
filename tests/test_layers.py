"""The layers contract: no import runs back up, and the stages beside the sweep stay apart.

Every module of ``screen`` belongs to one layer, bottom up; a module may import its own layer
and those below it, never one above. Some layers hold groups that stand side by side (the
sweep, training, worklist evaluation and engine building; the worklist, review pages and DICOM
output): each uses what lies below, none uses another. Every import counts, lazy ones inside functions and type-only ones too: a
lazy import hides a dependency, it does not remove it. A new module must be placed in a layer
here, so the contract cannot grow holes silently.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[1] / "screen"

# Bottom up. Each layer is a tuple of groups; a group is a tuple of module prefixes. Groups of
# one layer may not import each other.
LAYERS: tuple[tuple[str, tuple[tuple[str, ...], ...]], ...] = (
    ("records and geometry", (("screen", "screen.records", "screen.geometry", "screen.atomic",
                               "screen.memory", "screen.metrics", "screen.gpus",
                               "screen.file_names", "screen.paths", "screen.outputs",
                               "screen.worklist_row"),)),
    ("I/O: crawl, headers, selection, volumes, tables, truth, synthetic archives", (
        ("screen.crawl", "screen.header_scan", "screen.headers", "screen.series", "screen.select",
         "screen.rules", "screen.index", "screen.header_reading", "screen.instance_columns",
         "screen.inventory", "screen.pseudonym", "screen.volume", "screen.tables",
         "screen.truth", "screen.synth", "screen.dicomweb"),)),
    ("package format: model card, package, network", (
        ("screen.model", "screen.nnunet", "screen.nnunet.folder", "screen.nnunet.card",
         "screen.nnunet.network", "screen.nnunet.importer"),)),
    ("artifact registry", (("screen.artifacts",),)),
    ("backends", (("screen.backends",),)),
    ("detection", (("screen.detect", "screen.nnunet.preprocess", "screen.nnunet.sliding",
                     "screen.nnunet.predictor", "screen.nnunet.findings",
                     "screen.nnunet.recipe"),)),
    ("what a sweep writes per series, each on its own", (
        ("screen.worklist", "screen.monitor.intake"), ("screen.review",),
        ("screen.dicom_out", "screen.dicomweb.store"),
    )),
    ("sweep, and beside it training, evaluation and engine building", (
        ("screen.scan", "screen.tasks", "screen.cluster", "screen.predict"),
        ("screen.training",),
        ("screen.evaluate", "screen.evaluate_decisions", "screen.monitor"),
        ("screen.engines",),
    )),
    ("a site's own calibration, over a sweep and its evaluation",
     (("screen.nnunet.calibrate",),)),
    ("commands", (("screen.cli", "screen.__main__", "screen.doctor"),)),
)

# Imports that break the contract today, each with why and what removes it. Empty: keep it so.
KNOWN_EXCEPTIONS: dict[tuple[str, str], str] = {}


def _place(module: str) -> tuple[int, int] | None:
    """(layer, group) of the longest prefix that names ``module``, or None."""
    best: tuple[int, int, int] | None = None
    for layer, (_, groups) in enumerate(LAYERS):
        for group, prefixes in enumerate(groups):
            for prefix in prefixes:
                if (module == prefix or module.startswith(prefix + ".")) and (
                        best is None or len(prefix) > best[2]):
                    best = (layer, group, len(prefix))
    return None if best is None else best[:2]


def _module_name(path: Path) -> str:
    parts = path.relative_to(SOURCE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every ``screen`` module ``path`` imports, at any depth (``from a import b`` names
    ``a.b`` when that is a module, else ``a``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "screen")
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and (
                node.module.split(".")[0] == "screen"):
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                as_path = SOURCE.parent.joinpath(*sub.split("."))
                found.add(sub if as_path.with_suffix(".py").is_file() or as_path.is_dir() else node.module)
    return found


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(SOURCE.rglob("*.py"))}


def test_every_module_has_a_layer() -> None:
    unplaced = [m for m in _modules() if _place(m) is None]
    assert not unplaced, f"place these modules in a layer of tests/test_layers.py: {unplaced}"


def test_no_import_runs_up_or_sideways() -> None:
    violations = []
    for module, path in _modules().items():
        here = _place(module)
        for target in sorted(_imports(path)):
            there = _place(target)
            if here is None or there is None or (module, target) in KNOWN_EXCEPTIONS:
                continue
            up = there[0] > here[0]
            sideways = there[0] == here[0] and there[1] != here[1]
            if up or sideways:
                violations.append(f"{module} ({LAYERS[here[0]][0]}) imports {target} "
                                  f"({LAYERS[there[0]][0]}){' beside it' if sideways else ''}")
    assert not violations, "\n".join(violations)


def test_known_exceptions_are_still_needed() -> None:
    modules = _modules()
    stale = [pair for pair in KNOWN_EXCEPTIONS
             if pair[0] not in modules or pair[1] not in _imports(modules[pair[0]])]
    assert not stale, f"these exceptions no longer occur; remove them: {stale}"


@pytest.mark.parametrize("module, target", [
    ("screen.backends.tensorrt", "screen.engines.build"),  # a backend that builds
    ("screen.model.package", "screen.detect.detector"),  # the package format on detection
    ("screen.dicom_out.seg", "screen.review.masks"),  # one output reaching into another
    ("screen.engines.gate", "screen.training.phantoms"),  # engine building beside training
])
def test_the_contract_catches_what_it_forbids(module: str, target: str) -> None:
    here, there = _place(module), _place(target)
    assert here is not None and there is not None
    assert there[0] > here[0] or (there[0] == here[0] and there[1] != here[1])
