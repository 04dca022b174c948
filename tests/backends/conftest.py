from __future__ import annotations

import pytest

from screen.model.package import DEFAULT_PACKAGE, ModelPackage, find_package


@pytest.fixture(scope="session")
def package() -> ModelPackage:
    """The shipped model package; tests that need trained weights skip without it."""
    try:
        return find_package(DEFAULT_PACKAGE)
    except ValueError as exc:
        pytest.skip(f"the shipped model package is not built (make model): {exc}")
