"""The whole detector on phantoms it never saw: a lesion is found and placed, a normal
pancreas scores low, and the CPU backends agree."""

from __future__ import annotations

import numpy as np
import pytest

from screen.detect import Detector, analyse, detect, preprocess
from screen.metrics import localisation_hit
from screen.records import Location
from screen.synth.cases import phantom_volume
from screen.synth.phantom import Phase, render, sample_spec

SHAPE = (80, 256, 256)
SPACING = (3.0, 1.5, 1.5)
# Far from the training seeds (which count up from 1,000,000 per training seed).
FIRST_SEED = 40_000


def _clear_lesion_seed() -> int:
    """The first seed from FIRST_SEED whose lesion is plainly visible: contrast-enhanced,
    >= 15 mm, >= 40 HU darker than the gland, in the head."""
    for seed in range(FIRST_SEED, FIRST_SEED + 500):
        spec = sample_spec(np.random.default_rng(seed), lesion=True)
        lesion = spec.lesion
        if (spec.phase is not Phase.NON_CONTRAST and lesion.diameter_mm >= 15
                and lesion.delta_hu <= -40 and lesion.location is Location.HEAD):
            return seed
    raise RuntimeError("no clear lesion among 500 seeds")


@pytest.fixture(scope="module")
def positive():
    spec = sample_spec(np.random.default_rng(_clear_lesion_seed()), lesion=True)
    return render(spec, shape_kji=SHAPE, spacing_kji=SPACING)


@pytest.fixture(scope="module")
def negative():
    spec = sample_spec(np.random.default_rng(FIRST_SEED), lesion=False)
    return render(spec, shape_kji=SHAPE, spacing_kji=SPACING)


@pytest.fixture(scope="module")
def detector(package):
    return Detector.open(package, backend="onnxruntime")


def test_a_lesion_is_found_and_localised(positive, detector, package):
    volume = phantom_volume(positive)
    analysis = analyse(volume, detector)
    d = analysis.detection
    assert d.pancreas_found
    assert d.pancreas_volume_ml == pytest.approx(positive.pancreas_volume_ml, rel=0.5)
    assert d.score >= package.card.threshold
    assert d.lesion_center_lps is not None
    assert localisation_hit(d.lesion_center_lps, positive.lesion_center_lps, positive.lesion_diameter_mm)
    assert d.lesion_diameter_mm == pytest.approx(positive.lesion_diameter_mm, rel=0.5)
    assert abs(d.key_slice - positive.lesion_center_kji[0]) <= 3
    assert d.lesion_location is Location.HEAD
    assert set(analysis.seconds) == {"preprocess", "inference", "postprocess"}


@pytest.mark.xfail(
    strict=False,
    reason="pancreas-phantom-v1's threshold, set for 95 % sensitivity on validation phantoms, "
    "flags about seven in ten normal glands (held-out specificity 0.29 on 400 phantoms); a better model should pass",
)
def test_a_normal_pancreas_scores_low(negative, detector, package):
    d = detect(phantom_volume(negative), detector)
    assert d.pancreas_found
    assert d.score < package.card.threshold


def test_torch_and_onnxruntime_scores_agree_within_the_card_tolerance(positive, negative, package):
    tolerance = package.card.tolerance["score_abs"]
    torch_detector = Detector.open(package, backend="torch", device="cpu")
    ort_detector = Detector.open(package, backend="onnxruntime")
    for phantom in (positive, negative):
        volume = phantom_volume(phantom)
        a, b = detect(volume, torch_detector), detect(volume, ort_detector)
        assert abs(a.score - b.score) <= tolerance
        assert a.pancreas_found == b.pancreas_found


def test_detect_accepts_a_package_and_preprocess_serves_calibration(positive, package):
    volume = phantom_volume(positive)
    assert 0.0 <= detect(volume, package).score <= 1.0
    for network in package.card.networks.values():
        x = preprocess(volume, network)
        assert x.dtype == np.float32 and x.ndim == 5
        assert all(n % network.shape_multiple == 0 for n in x.shape[2:])
        assert -1.0 <= x.min() and x.max() <= 1.0


def test_detect_refuses_other_things(positive):
    with pytest.raises(TypeError, match="needs a Detector or a ModelPackage"):
        detect(phantom_volume(positive), "pancreas-phantom-v1")


def test_the_lesion_travels_in_the_analysis_as_the_region_it_was_measured_on(positive, detector):
    from screen.detect.masks import volume_masks
    from screen.detect.preprocess import to_volume_labels

    volume = phantom_volume(positive)
    analysis = analyse(volume, detector)
    d, grid = analysis.detection, analysis.segment_grid
    assert analysis.lesion is not None and analysis.lesion.shape[1] == 3
    # The Detection's centre is the region's own centre, carried to patient space.
    np.testing.assert_allclose(volume.to_lps(grid.to_volume(analysis.lesion.mean(axis=0))),
                               d.lesion_center_lps, atol=1e-9)
    # Review images and the SEG outline that region, and nothing else.
    on_grid = np.zeros(grid.shape, dtype=bool)
    on_grid[tuple(analysis.lesion.T)] = True
    masks = volume_masks(volume, analysis)
    np.testing.assert_array_equal(masks.lesion, to_volume_labels(on_grid, grid, volume.hu.shape))
    assert masks.lesion[d.key_slice].any()
