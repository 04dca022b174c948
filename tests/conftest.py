"""Shared test fixtures: where the real imaging data lives, and generated archives."""

from __future__ import annotations

from pathlib import Path

import pytest

from screen.model.package import DEFAULT_PACKAGE, ModelPackage, find_package

PROJECT = Path(__file__).resolve().parents[1]
SHARED_DATA = PROJECT.parent / "shared" / "data"
CORPUS = SHARED_DATA / "dicom-corpus"
REAL_CT = SHARED_DATA / "real-ct"


def need(path: Path) -> Path:
    """The path, or a skip that says which shared data is missing."""
    if not path.exists():
        pytest.skip(f"shared test data not found at ../shared/data/{path.relative_to(SHARED_DATA)}")
    return path


@pytest.fixture(scope="session")
def package() -> ModelPackage:
    """The shipped model package; tests that need trained weights skip without it."""
    try:
        return find_package(DEFAULT_PACKAGE)
    except ValueError as exc:
        pytest.skip(f"the shipped model package is not built (make model): {exc}")


@pytest.fixture(scope="session")
def corpus() -> Path:
    return need(CORPUS)


@pytest.fixture(scope="session")
def small_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated archive of a few cases with every kind of distractor, shared by the suite."""
    archive = pytest.importorskip("screen.synth.archive", reason="synthetic archive writer absent")
    out = tmp_path_factory.mktemp("synth") / "small"
    archive.write_archive(out, 4, seed=11, matrix=64)
    return out
