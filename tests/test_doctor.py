"""screen doctor on this machine: every question answered, and why not where something is absent."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from screen.backends.tensorrt import tensorrt_version
from screen.doctor import doctor_report, render_doctor
from screen.gpus import find_gpus


def test_doctor_reports_this_machine(tmp_path: Path) -> None:
    report = doctor_report(cache=tmp_path)
    gpus, why = find_gpus()
    assert report.gpus == gpus and report.gpu_reason == why
    assert report.tensorrt_available == (tensorrt_version()[0] is not None)
    assert "CPUExecutionProvider" in report.onnxruntime_providers
    assert report.modelopt.startswith("nvidia-modelopt")
    assert report.engines == () and report.cache == tmp_path
    assert {b.name for b in report.backends} == {"tensorrt", "torch", "onnxruntime"}
    requires = {b.name: b.requires for b in report.backends}
    assert "tensorrt>=10.12" in requires["tensorrt"] and "onnxruntime>=1.18 (onnxruntime-gpu for CUDA)" in requires["onnxruntime"]
    assert report.scan_backend in ("tensorrt", "torch", "onnxruntime")
    assert report.scan_reason

    console = Console(record=True, width=200)
    render_doctor(report, console)
    text = console.export_text()
    if not gpus:
        assert f"GPUs: none ({why})" in text
    if not report.tensorrt_available:
        assert "tensorrt is not installed" in text
    assert f"Engines: none built in {tmp_path}" in text
    assert "tensorrt>=10.12, torch with CUDA, nvidia-ml-py" in text
    assert f"scan --backend auto ({report.model}): {report.scan_backend} on" in text
