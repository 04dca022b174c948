"""From probability maps to a Detection through real grids and a flipped affine.

The networks are replaced by a fixed rule on the input intensity (a known "segmentation"),
so what is checked is everything around them: grids, resampling, components, the LPS
centre, diameter, key slice, head/body/tail and the calibrated score.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from screen.detect import Detector, analyse
from screen.detect.detector import _findings
from screen.detect.preprocess import body_grid, box_grid, resample
from screen.metrics import localisation_hit
from screen.model.card import Calibration, ModelCard, NetworkCard, Postprocess
from screen.records import Location, Volume

WINDOW = (-160.0, 240.0)
LOCATE = NetworkCard(name="locate", onnx="locate.onnx", torch="locate.pt", widths=(4, 8),
                     spacing_kji=(4.0, 4.0, 4.0), window_hu=WINDOW, shape_multiple=8, crop="body")
SEGMENT = NetworkCard(name="segment", onnx="model.onnx", torch="model.pt", widths=(4, 8),
                      spacing_kji=(1.5, 1.5, 1.5), window_hu=WINDOW, shape_multiple=8,
                      crop="pancreas", margin_mm=10.0, min_extent_mm=(24.0, 48.0, 48.0))
CARD = ModelCard(
    name="rule", version="0", intended_use="tests", limitations=(), classes=("background", "pancreas", "lesion"),
    networks={"locate": LOCATE, "segment": SEGMENT},
    calibration=Calibration(("lesion_logit", "lesion_log_mm3"), (1.0, 0.5), -3.0), threshold=0.5,
    postprocess=Postprocess(location_fractions=(0.3, 0.7)),
)


def _hu(x: np.ndarray) -> np.ndarray:
    lo, hi = WINDOW
    return (x + 1.0) / 2.0 * (hi - lo) + lo


class RuleRunner:
    """Pancreas where the input is 80-140 HU, lesion where it is 0-50 HU, else background."""

    name, precision, device = "rule", "fp32", "cpu"

    def run(self, x: np.ndarray) -> np.ndarray:
        hu = _hu(x[:, 0])
        pancreas = (hu > 80) & (hu < 140)
        lesion = (hu > 0) & (hu < 50)
        out = np.stack([~(pancreas | lesion), pancreas, lesion], axis=1).astype(np.float32)
        return out


# A gland along i (patient left-right) and a lesion ball in its right third.
SHAPE = (40, 80, 120)
SPACING = (2.0, 1.0, 1.0)
LESION_KJI = (20.0, 40.0, 30.0)
LESION_DIAMETER = 14.0


def _volume(flip_i: bool) -> Volume:
    k, j, i = np.indices(SHAPE).astype(np.float64)
    hu = np.full(SHAPE, 200.0, np.float32)
    gland = ((k - 20) * 2.0) ** 2 / 14**2 + (j - 40) ** 2 / 14**2 <= 1.0
    gland &= (i >= 10) & (i <= 110)
    hu[gland] = 110.0
    ball = ((k - LESION_KJI[0]) * 2.0) ** 2 + (j - LESION_KJI[1]) ** 2 + (i - LESION_KJI[2]) ** 2 <= (LESION_DIAMETER / 2) ** 2
    hu[ball] = 25.0
    affine = np.diag([1.0, 1.0, 2.0, 1.0])
    affine[:3, 3] = (-60.0, 20.0, -150.0)
    if flip_i:
        # Stored with i towards patient right: mirror the array and the row direction, so the
        # same anatomy sits at the same patient coordinates.
        hu = hu[:, :, ::-1].copy()
        affine[0, 0] = -1.0
        affine[0, 3] = -60.0 + (SHAPE[2] - 1)
    return Volume(hu=hu, affine=affine, slice_uids=tuple(str(n) for n in range(SHAPE[0])))


@pytest.mark.parametrize("flip_i", [False, True])
def test_the_lesion_lands_where_it_is_in_patient_space(flip_i):
    detector = Detector(CARD, {"locate": RuleRunner(), "segment": RuleRunner()})
    volume = _volume(flip_i)
    truth_lps = _volume(False).to_lps(np.asarray(LESION_KJI))
    if flip_i:
        np.testing.assert_allclose(volume.to_lps(np.array([20.0, 40.0, SHAPE[2] - 1 - 30.0])), truth_lps)
    d = analyse(volume, detector).detection
    assert d.pancreas_found
    gland_ml = np.pi * 14 * 14 * 101 / 1000  # a cylinder 28 mm across and 101 mm long
    assert d.pancreas_volume_ml == pytest.approx(gland_ml, rel=0.15)
    assert np.linalg.norm(np.asarray(d.lesion_center_lps) - truth_lps) < 1.5
    assert localisation_hit(d.lesion_center_lps, truth_lps, LESION_DIAMETER)
    assert d.lesion_diameter_mm == pytest.approx(LESION_DIAMETER, abs=2.0)
    assert d.key_slice == 20
    # i = 30 of a gland running from 10 to 110, on the patient's right: the head.
    assert d.lesion_location is Location.HEAD
    assert d.score > 0.5


def test_no_lesion_gives_no_finding_and_a_low_score():
    detector = Detector(CARD, {"locate": RuleRunner(), "segment": RuleRunner()})
    volume = _volume(False)
    hu = volume.hu.copy()
    hu[hu == 25.0] = 110.0
    clean = Volume(hu=hu, affine=volume.affine, slice_uids=volume.slice_uids)
    d = analyse(clean, detector).detection
    assert d.pancreas_found and d.lesion_center_lps is None and d.lesion_location is None
    assert d.score < 0.1


def test_a_detector_needs_a_runner_per_network():
    with pytest.raises(ValueError, match=r"no runner for network\(s\) \['segment'\]"):
        Detector(CARD, {"locate": RuleRunner()})


RELATIVE = (-100.0, 100.0)  # HU about the gland's own


class RelativeRuleRunner:
    """For a window about the gland's HU: pancreas within 30 HU of it, lesion 50-100 HU
    darker. Keeps every input it is given."""

    name, precision, device = "rule", "fp32", "cpu"

    def __init__(self) -> None:
        self.inputs: list[np.ndarray] = []

    def run(self, x: np.ndarray) -> np.ndarray:
        self.inputs.append(x)
        delta = (x[:, 0] + 1.0) / 2.0 * (RELATIVE[1] - RELATIVE[0]) + RELATIVE[0]
        pancreas = np.abs(delta) < 30
        lesion = (delta < -50) & (delta > -100)
        return np.stack([~(pancreas | lesion), pancreas, lesion], axis=1).astype(np.float32)


def test_a_window_about_the_gland_is_placed_again_from_the_parenchyma_the_segmenter_found():
    segment = replace(SEGMENT, window_hu=RELATIVE, window_relative_to="gland")
    card = replace(CARD, networks={"locate": LOCATE, "segment": segment})
    volume = _volume(False)
    runner = RelativeRuleRunner()
    analysis = analyse(volume, Detector(card, {"locate": RuleRunner(), "segment": runner}))

    assert len(runner.inputs) == 2  # a first look, then the second
    # The parenchyma's 110 HU: neither the lesion (25 HU) nor the surroundings (200 HU).
    assert analysis.gland_hu == pytest.approx(110.0, abs=1.0)
    fine_hu = resample(volume.hu, analysis.segment_grid)
    np.testing.assert_allclose(runner.inputs[1], segment.normalise(fine_hu, analysis.gland_hu)[None, None],
                               atol=1e-6)
    d = analysis.detection
    truth_lps = volume.to_lps(np.asarray(LESION_KJI))
    assert d.pancreas_found and localisation_hit(d.lesion_center_lps, truth_lps, LESION_DIAMETER)


def test_the_score_weighs_a_lesion_sized_cube_of_probability_not_one_voxel():
    volume = _volume(False)
    fine = box_grid(volume, np.array([10.0, 26.0, 10.0]), np.array([30.0, 54.0, 110.0]), SEGMENT)
    coarse = body_grid(volume, LOCATE)

    def features(lesion: tuple[slice, slice, slice]) -> dict[str, float]:
        prob = np.zeros((3, *fine.shape), np.float32)
        prob[0] = 1.0
        middle = tuple(slice(n // 4, 3 * n // 4) for n in fine.shape)
        prob[(1, *middle)], prob[(0, *middle)] = 1.0, 0.0  # a gland in the middle of the box
        prob[(2, *lesion)], prob[(1, *lesion)] = 0.99, 0.01
        gland = (prob[1] + prob[2]) > CARD.postprocess.pancreas_probability
        return _findings(volume, CARD, coarse, fine, gland, prob[2]).features

    k, j, i = (n // 2 for n in fine.shape)
    lone = features((slice(k, k + 1), slice(j, j + 1), slice(i, i + 1)))
    cube = features((slice(k - 1, k + 2), slice(j - 1, j + 2), slice(i - 1, i + 2)))
    assert lone["lesion_logit"] == pytest.approx(cube["lesion_logit"]) == pytest.approx(math.log(99))
    assert lone["lesion_cube_logit"] == pytest.approx(math.log(0.99 / 27 / (1 - 0.99 / 27)), rel=1e-4)
    assert cube["lesion_cube_logit"] == pytest.approx(math.log(99), rel=1e-4)
