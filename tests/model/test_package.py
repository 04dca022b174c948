"""Loading model packages: the shipped one, name lookup, and errors that name the field."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from screen.model.card import CardError
from screen.model.package import ENGINES_ENV, ModelPackage, find_package


@pytest.fixture()
def copy(package: ModelPackage, tmp_path: Path) -> Path:
    target = tmp_path / "pkg"
    shutil.copytree(package.path, target)
    return target


def _edit(folder: Path, change) -> None:
    card = json.loads((folder / "model.json").read_text())
    change(card)
    (folder / "model.json").write_text(json.dumps(card))


def test_the_shipped_package_reads_and_says_what_it_is_for(package):
    card = package.card
    assert "NOT for diagnostic use" in card.intended_use
    assert card.segment.onnx == "model.onnx" and card.locate.crop == "body"
    assert 0.0 <= card.threshold <= 1.0
    assert len(package.sha256) == 64
    total = sum(f.stat().st_size for f in package.path.iterdir() if f.is_file())
    assert total < 10 * 2**20  # a few MB


def test_hash_changes_with_the_card(copy):
    before = ModelPackage.load(copy).sha256
    _edit(copy, lambda c: c.update(version="9.9.9"))
    assert ModelPackage.load(copy).sha256 != before


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: c.pop("threshold"), r"model\.json: field 'threshold' is missing"),
        (lambda c: c.update(threshold=1.5), r"field 'threshold' must be a probability"),
        (lambda c: c["networks"]["segment"].update(spacing_mm_kji=[1.5, 0, 1.5]),
         r"field 'networks\.segment\.spacing_mm_kji' must be positive"),
        (lambda c: c["networks"]["locate"].update(window_hu=[300, -100]),
         r"field 'networks\.locate\.window_hu' must be \[low, high\]"),
        (lambda c: c["networks"]["segment"].update(onnx="other.onnx"),
         r"field 'networks\.segment\.onnx' must be 'model\.onnx'"),
        (lambda c: c["calibration"].update(coef=[1.0]),
         r"field 'calibration\.coef' must be a list as long as"),
        (lambda c: c.update(format=7), r"field 'format' must be 1"),
        (lambda c: c["networks"]["segment"].update(window_relative_to="liver"),
         r"field 'networks\.segment\.window_relative_to' must be \"gland\" or null"),
        (lambda c: c["networks"]["locate"].update(window_relative_to="gland"),
         r"field 'networks\.locate' .*only a network that looks at the pancreas"),
    ],
)
def test_a_wrong_card_names_the_file_and_field(copy, change, message):
    _edit(copy, change)
    with pytest.raises(CardError, match=message):
        ModelPackage.load(copy)


def test_a_missing_network_file_is_named(copy):
    (copy / "locate.onnx").unlink()
    with pytest.raises(CardError, match=r"'networks\.locate\.onnx' names 'locate\.onnx', which is not in the package"):
        ModelPackage.load(copy)


def test_find_package_by_name_through_the_environment(copy, monkeypatch):
    monkeypatch.setenv(ENGINES_ENV, str(copy.parent))
    assert find_package("pkg").path == copy
    with pytest.raises(ValueError, match="no model package 'nope'"):
        find_package("nope")
    assert find_package(copy).sha256 == ModelPackage.load(copy).sha256


def test_not_a_folder(tmp_path):
    with pytest.raises(ValueError, match="not a model package folder"):
        ModelPackage.load(tmp_path / "missing")
    tmp_path.joinpath("empty").mkdir()
    with pytest.raises(CardError, match=r"no model card \(model\.json\)"):
        ModelPackage.load(tmp_path / "empty")


def test_a_card_calibrated_on_a_feature_the_detector_lacks_is_refused(copy):
    _edit(copy, lambda c: c["calibration"].update(features=["lesion_max", "lesion_log_mm3"]))
    with pytest.raises(CardError, match=r"calibration\.features.*lesion_max"):
        ModelPackage.load(copy)
