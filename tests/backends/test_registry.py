"""The backend registry: lazy plugins, availability with reasons, the automatic choice."""

from __future__ import annotations

import sys

import pytest

from screen import backends


def test_listing_backends_imports_nothing_heavy():
    # Importing the registry must not pull in torch or onnxruntime; a plugin loads on demand.
    code = "import sys, screen.backends; print('torch' in sys.modules, 'onnxruntime' in sys.modules)"
    import subprocess

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_availability_gives_a_reason_for_each_backend():
    report = backends.availability()
    assert set(report) >= {"onnxruntime", "torch", "tensorrt"}
    for ok, reason in report.values():
        assert isinstance(ok, bool) and reason
    assert report["onnxruntime"][0]


def test_auto_picks_onnxruntime_on_a_machine_without_a_gpu():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device; auto would pick it")
    choice = backends.choose_backend("auto")
    assert (choice.name, choice.device) == ("onnxruntime", "cpu")
    assert "torch: no CUDA device" in choice.reason


def test_unknown_and_unimportable_backends_are_named():
    with pytest.raises(ValueError, match="unknown backend 'nope'; known: "):
        backends.choose_backend("nope")
    backends.register("broken", "screen.backends.does_not_exist")
    try:
        assert backends.availability()["broken"][0] is False
        with pytest.raises(ValueError, match=r"backend 'broken' \(screen.backends.does_not_exist\) cannot be imported"):
            backends.plugin("broken")
    finally:
        backends._PLUGINS.pop("broken")


def test_a_plugin_registered_by_import_path_is_used(package):
    # Any module with NAME, is_available and load is a backend: here, the torch plugin
    # registered under another name.
    backends.register("mine", "screen.backends.torch")
    try:
        runner = backends.load_runner(package, "segment", backend="mine", device="cpu")
        assert runner.name == "torch"
    finally:
        backends._PLUGINS.pop("mine")


def test_runners_are_loaded_once_per_process(package):
    first = backends.load_runner(package, "segment", backend="onnxruntime")
    again = backends.load_runner(package, "segment", backend="onnxruntime")
    assert first is again
    with pytest.raises(ValueError, match="precision must be one of"):
        backends.load_runner(package, "segment", precision="int4")
    with pytest.raises(ValueError, match="has no network 'nope'"):
        backends.load_runner(package, "nope")
