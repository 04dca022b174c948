"""How local workers are started: a real cluster on loopback."""

from __future__ import annotations

import os

import pytest

from screen.cluster import connect


def _malloc_setting() -> str | None:
    return os.environ.get("MALLOC_TRIM_THRESHOLD_")


def test_local_workers_keep_the_default_allocator(monkeypatch: pytest.MonkeyPatch) -> None:
    # A nanny's MALLOC_TRIM_THRESHOLD_ made every decoded slice fresh pages from the kernel.
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    with connect(scheduler=None, cpu_workers=1, gpus=()) as client:
        assert list(client.run(_malloc_setting).values()) == [None]
    assert _malloc_setting() is None  # nor is this process's environment changed for later
