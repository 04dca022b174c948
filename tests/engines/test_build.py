"""build_engine end to end on a tiny exported package, the INT8 refusal, calibration sets
and the accuracy gate."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from screen.engines import build_engine, calibration, find_built, gate, list_built
from screen.engines.gate import GateRefused, GateReport, judge


def test_int8_without_calibration_is_refused(tiny_package, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="--int8 needs calibration data"):
        build_engine(tiny_package, "int8", calib=None, out=tmp_path)


def test_unknown_precision_and_cache_inside_package_are_refused(tiny_package) -> None:
    with pytest.raises(ValueError, match="precision must be fp16 or int8"):
        build_engine(tiny_package, "fp32")
    with pytest.raises(ValueError, match="must not lie inside the model package"):
        build_engine(tiny_package, "fp16", out=tiny_package.path / "cache")


def test_fp16_build_registers_gated_engines_and_reuses_them(tiny_package, tmp_path: Path) -> None:
    result = build_engine(tiny_package, "fp16", out=tmp_path, gate_cases=2)
    assert result.gate is not None and result.gate.n_cases == 2 and result.gate.n_positive == 1
    assert result.gate.passed and not result.forced
    assert set(result.output_delta) == {"locate", "segment"}
    assert max(result.output_delta.values()) < 5e-3
    assert "no TensorRT plans" in result.tensorrt
    for artifact in result.onnx:
        assert find_built(tiny_package, artifact.network, "fp16", root=tmp_path) == artifact.path
        meta = json.loads(artifact.metadata_path.read_text())
        assert meta["gate"]["passed"] is True and meta["forced"] is False
    again = build_engine(tiny_package, "fp16", out=tmp_path)
    assert again.reused and {a.path for a in again.onnx} == {a.path for a in result.onnx}


def test_calibration_set_from_an_archive_is_reproducible(tiny_package, small_archive: Path, tmp_path: Path) -> None:
    first = calibration.calibration_from_archive(small_archive / "archive", tiny_package, tmp_path / "a", n=3)
    second = calibration.calibration_from_archive(small_archive / "archive", tiny_package, tmp_path / "b", n=3)
    assert first.sha256 == second.sha256
    assert first.path is not None and second.path is not None
    assert first.path.name == second.path.name == f"calib-{first.sha256[:16]}.npz"
    assert set(first.inputs) == {"locate", "segment"}
    assert all(a.shape[0] == len(first.series) for a in first.inputs.values())
    reloaded = calibration.load_calibration(first.path)
    assert reloaded.sha256 == first.sha256 and reloaded.series == first.series


def test_int8_build_from_a_saved_calibration_set(tiny_package, small_archive: Path, tmp_path: Path) -> None:
    calib = calibration.calibration_from_archive(small_archive / "archive", tiny_package, tmp_path, n=2)
    result = build_engine(tiny_package, "int8", calib=calib.path, out=tmp_path / "cache", gate_cases=2, force=True)
    assert {a.key.calib_sha256 for a in result.onnx} == {calib.sha256}
    assert all(a.key.precision == "int8" and a.path.is_file() for a in result.onnx)
    assert len(list_built(tmp_path / "cache")) == 2


def test_stratified_draw_spans_labels_and_thickness() -> None:
    cands = [calibration.Candidate(f"{lab}{t}{i}", lab, t, None)
             for lab in (True, False) for t in (1.0, 2.5, 5.0) for i in range(3)]
    chosen = calibration.stratified(cands, 6, seed=1)
    assert len({c.stratum for c in chosen}) == 6
    assert calibration.stratified(cands, 6, seed=1) == chosen
    with pytest.raises(ValueError, match="must be >= 1"):
        calibration.stratified(cands, 0)


def _corrupt(source: Path, dest: Path) -> None:
    """Swap the head's pancreas and lesion channels: every probability lands in the wrong class."""
    model = onnx.load(str(source))
    head = [n for n in model.graph.node if n.op_type == "Conv"][-1]
    inits = {i.name: i for i in model.graph.initializer}
    for name in head.input[1:]:
        array = numpy_helper.to_array(inits[name]).copy()
        array[[1, 2]] = array[[2, 1]]
        inits[name].CopyFrom(numpy_helper.from_array(array, name))
    onnx.save(model, str(dest))


def test_gate_refuses_a_broken_engine_unless_forced(package, tmp_path: Path) -> None:
    from screen.backends import onnxruntime as ort_backend
    from screen.detect.detector import Detector

    card = package.card
    held_out = card.accuracy.get("held_out_phantoms", {}).get("auroc", {}).get("estimate", 0.0)
    if held_out < 0.7:
        # A model that cannot rank cases has no AUROC to lose; the gate's refusal itself is
        # tested on generated scores below.
        pytest.skip(f"the shipped model does not discriminate (held-out AUROC {held_out}), so "
                    "breaking it cannot lower its AUROC")
    broken = tmp_path / "broken.onnx"
    _corrupt(package.onnx_path("segment"), broken)
    reference = Detector(card, {n: ort_backend.load(package, n) for n in card.networks})
    candidate = Detector(card, {
        "locate": ort_backend.load(package, "locate"),
        "segment": ort_backend.load(package, "segment", "int8", model_path=broken),
    })
    report = gate.compare(reference, candidate, gate.phantom_cases(6), "int8")
    with pytest.raises(GateRefused, match="accuracy gate refused the int8 engine: AUROC dropped by"):
        judge(report)
    assert judge(report, force=True) is report


def test_judge_uses_the_allowed_drop() -> None:
    rng = np.random.default_rng(3)
    labels = rng.random(40) < 0.5
    scores = labels + rng.normal(0, 0.6, 40)
    from screen.metrics import auroc

    fields = dict(precision="int8", n_cases=40, n_positive=int(labels.sum()), max_score_delta=0.1,
                  dice_agreement=None, dice_truth_fp32=None, dice_truth_candidate=None,
                  localisation_delta_mm=None, lesion_disagreements=0)
    good = GateReport(auroc_fp32=auroc(labels, scores), auroc_candidate=auroc(labels, scores + 1e-6), **fields)
    assert judge(good) is good
    shuffled = rng.permutation(scores)
    bad = GateReport(auroc_fp32=auroc(labels, scores), auroc_candidate=auroc(labels, shuffled), **fields)
    assert bad.auroc_drop > 0.02
    with pytest.raises(GateRefused, match=r"more than 0.020 allowed"):
        judge(bad)
