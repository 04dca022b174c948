"""The bundled kind of model's recipe as data in its card: the shipped card's default, the same
recipe written out explicitly giving the same analysis, and recipes the detector cannot run
refused with the field named."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from screen.detect import Detector, analyse
from screen.model.card import CardError, RecipeStep
from screen.model.package import ModelPackage
from screen.synth.cases import phantom_volume
from screen.synth.phantom import render, sample_spec

DEFAULT = [{"action": "locate", "network": "locate"}, {"action": "crop", "network": "segment"},
           {"action": "segment", "network": "segment"}]


def _copy_with(package: ModelPackage, tmp_path: Path, recipe: object) -> Path:
    target = tmp_path / "pkg"
    shutil.copytree(package.path, target)
    card = json.loads((target / "model.json").read_text())
    card["recipe"] = recipe
    (target / "model.json").write_text(json.dumps(card))
    return target


def test_the_shipped_card_locates_crops_and_segments_without_saying_so(package):
    card = package.card
    assert card.recipe == tuple(RecipeStep(**step) for step in DEFAULT)
    assert card.locate is card.networks["locate"] and card.segment is card.networks["segment"]
    # The shipped model.json names no recipe and is written back without one.
    assert "recipe" not in json.loads((package.path / "model.json").read_text())
    assert "recipe" not in card.to_dict()


def test_the_default_recipe_written_out_gives_the_same_analysis(package, tmp_path):
    explicit = ModelPackage.load(_copy_with(package, tmp_path, DEFAULT))
    assert explicit.card.recipe == package.card.recipe
    spec = sample_spec(np.random.default_rng(40_001), lesion=True)
    volume = phantom_volume(render(spec, shape_kji=(60, 192, 192), spacing_kji=(3.0, 1.5, 1.5)))
    ours = analyse(volume, Detector.open(package, backend="onnxruntime"))
    theirs = analyse(volume, Detector.open(explicit, backend="onnxruntime"))
    assert ours.detection.pancreas_found  # every step ran
    assert ours.detection == theirs.detection and ours.features == theirs.features
    assert ours.gland_hu == theirs.gland_hu
    np.testing.assert_array_equal(ours.lesion_probability, theirs.lesion_probability)
    np.testing.assert_array_equal(ours.pancreas_mask, theirs.pancreas_mask)


@pytest.mark.parametrize(
    ("recipe", "message"),
    [
        ([DEFAULT[0], DEFAULT[2]], r"field 'recipe' recipe must run locate -> crop -> segment, got locate -> segment"),
        ([DEFAULT[0], DEFAULT[1], {"action": "segment", "network": "refine"}],
         r"field 'recipe' .*names network 'refine', which the card does not have"),
        ([{"action": "locate", "network": "segment"}, DEFAULT[1], DEFAULT[2]],
         r"field 'recipe' recipe step 'locate' needs a network with crop 'body'; 'segment' has 'pancreas'"),
        ([DEFAULT[0], {"action": "look", "network": "segment"}, DEFAULT[2]],
         r"field 'recipe' recipe step must be one of locate, crop, segment, got 'look'"),
        ([DEFAULT[0], {"network": "segment"}, DEFAULT[2]], r"field 'recipe\[1\]\.action' is missing"),
        ("locate, crop, segment", r"field 'recipe' must be a list of steps"),
    ],
)
def test_a_recipe_the_detector_cannot_run_is_refused(package, tmp_path, recipe, message):
    folder = _copy_with(package, tmp_path, recipe)
    with pytest.raises(CardError, match=message):
        ModelPackage.load(folder)
