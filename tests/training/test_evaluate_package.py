"""The evaluation's own pieces: NIfTI (RAS) to an LPS Volume, and the summary of cases."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from screen.synth.cases import ScanSettings, draw_case, lesion_conspicuity
from screen.training.evaluate_package import CaseResult, nifti_volume, summarise

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "real-ct" / "totalsegmentator"


def test_nifti_ras_becomes_lps_with_canonical_axes():
    nib = pytest.importorskip("nibabel", reason="nibabel reads the NIfTI test data")
    path = DATA / "example_ct_pancreas_v1.nii.gz"
    if not path.is_file():
        pytest.skip(f"real CT test data not at hand: {path}")
    volume = nifti_volume(path)
    # Axes run towards patient left, posterior and superior: a positive diagonal.
    assert np.all(np.diag(volume.affine)[:3] > 0)
    image = nib.load(str(path))
    mask = np.asarray(image.dataobj) > 0.5
    ras = image.affine @ np.r_[np.argwhere(mask).mean(axis=0), 1.0]
    lps = volume.to_lps(np.argwhere(volume.hu > 0.5).mean(axis=0))
    np.testing.assert_allclose(lps, [-ras[0], -ras[1], ras[2]], atol=1e-6)
    assert int((volume.hu > 0.5).sum()) == 818


def _case(seed, positive, score, diameter=None, location=None, hit=None):
    return CaseResult(seed, positive, score, diameter, location, hit, True, location, 0.1)


def test_summary_counts_strata_and_rates():
    cases = [
        _case(1, True, 0.9, 8.0, "head", True),
        _case(2, True, 0.8, 15.0, "body", True),
        _case(3, True, 0.2, 25.0, "tail", False),
        _case(4, False, 0.1),
        _case(5, False, 0.3),
    ]
    summary = summarise(cases, threshold=0.5)
    assert summary["cases"] == 5 and summary["positives"] == 3
    assert summary["auroc"]["estimate"] == pytest.approx(5 / 6)
    assert summary["at_threshold"]["tp"] == 2 and summary["at_threshold"]["tn"] == 2
    assert summary["localisation"]["estimate"] == pytest.approx(2 / 3)
    assert summary["by_size"]["<10 mm"]["localisation"]["n"] == 1
    assert summary["by_location"]["tail"]["sensitivity"]["estimate"] == 0.0


def test_summary_reports_each_contrast_phase_apart():
    cases = [
        CaseResult(1, True, 0.9, 15.0, "head", True, True, "head", 0.1, "portal_venous"),
        CaseResult(2, False, 0.2, None, None, None, True, None, 0.1, "portal_venous"),
        CaseResult(3, True, 0.3, 12.0, "tail", True, True, "tail", 0.1, "non_contrast"),
        CaseResult(4, False, 0.6, None, None, None, True, None, 0.1, "non_contrast"),
        CaseResult(5, False, 0.1, None, None, None, True, None, 0.1, "non_contrast"),
    ]
    phases = summarise(cases, threshold=0.5)["by_phase"]
    assert set(phases) == {"non_contrast", "portal_venous"}
    unenhanced = phases["non_contrast"]
    assert (unenhanced["cases"], unenhanced["positives"]) == (3, 1)
    assert unenhanced["auroc"]["estimate"] == pytest.approx(0.5)  # 0.3 beats 0.1, not 0.6
    assert unenhanced["sensitivity"]["estimate"] == 0.0
    assert unenhanced["specificity"]["estimate"] == pytest.approx(0.5)
    assert phases["portal_venous"]["auroc"]["estimate"] == 1.0


def test_training_validation_and_held_out_seeds_never_share_a_phantom():
    from screen.synth.cases import held_out_seeds, training_seeds, validation_seeds

    sets = {
        "training 0": training_seeds(0, 499_999), "validation 0": validation_seeds(0, 499_999),
        "training 898": training_seeds(898, 499_999), "validation 898": validation_seeds(898, 499_999),
        "held-out 8": held_out_seeds(8, 999), "held-out 10": held_out_seeds(10, 999),
        "held-out 99999": held_out_seeds(99_999, 999),
    }
    runs = sorted((seeds[0], seeds[-1]) for seeds in sets.values())
    assert all(seeds == list(range(seeds[0], seeds[-1] + 1)) for seeds in sets.values())
    assert all(last < first for (_, last), (first, _) in zip(runs, runs[1:])), runs
    with pytest.raises(ValueError, match="0 to 999 phantoms"):
        held_out_seeds(8, 1000)
    with pytest.raises(ValueError, match="0 to 499999 phantoms"):
        training_seeds(0, 500_000)
    with pytest.raises(ValueError, match="seed lies in 0 to 898"):
        validation_seeds(899, 1)


def test_the_engine_gates_seeds_are_the_registrys_and_no_set_may_train_on_them():
    from screen.synth.cases import (
        GATE_TRAINING_SET,
        gate_seeds,
        held_out_seeds,
        training_seeds,
        validation_seeds,
    )

    gate = gate_seeds()
    allowed = [s for s in range(GATE_TRAINING_SET - 1, GATE_TRAINING_SET + 2) if s != GATE_TRAINING_SET]
    others = [*(training_seeds(s, 499_999) for s in allowed), *(validation_seeds(s, 499_999) for s in allowed),
              held_out_seeds(0, 999), held_out_seeds(99_999, 999)]
    assert all(seeds[-1] < gate.start or seeds[0] >= gate.stop for seeds in others)
    for draw in (training_seeds, validation_seeds):
        with pytest.raises(ValueError, match="training set 89 is reserved: its seeds are the engine gate's"):
            draw(GATE_TRAINING_SET, 1)


def test_summary_sets_apart_the_lesions_no_observer_could_see():
    cases = [
        CaseResult(1, True, 0.9, 20.0, "head", True, True, "head", 0.1, "arterial", 12.0),
        CaseResult(2, True, 0.7, 30.0, "body", True, True, "body", 0.1, "arterial", None),  # no room: visible
        CaseResult(3, True, 0.1, 6.0, "tail", False, True, None, 0.1, "non_contrast", 1.2),
        CaseResult(4, False, 0.5, None, None, None, True, None, 0.1, "arterial"),
        CaseResult(5, False, 0.2, None, None, None, True, None, 0.1, "arterial"),
    ]
    visible, hidden = summarise(cases, threshold=0.4)["by_conspicuity"].values()
    assert visible["positives"] == 2 and hidden["positives"] == 1
    assert visible["auroc_against_all_negatives"]["estimate"] == 1.0
    assert hidden["auroc_against_all_negatives"]["estimate"] == 0.0
    assert hidden["sensitivity"]["estimate"] == 0.0 and hidden["diameter_mm_median"] == 6.0


def test_conspicuity_tells_a_plain_lesion_from_one_like_the_gland():
    settings = ScanSettings(slice_mm=(2.5,), pixel_mm=(2.0, 2.0), matrix=192, z_cover_mm=(200.0, 200.0),
                            lesion_fraction=1.0)
    _, phantom = draw_case(3, settings)
    assert phantom.lesion_diameter_mm is not None
    lesion, gland = phantom.labels == 2, phantom.labels == 1

    def shifted(hu_shift: float) -> float:
        hu = phantom.hu.copy()
        hu[lesion] += hu_shift
        return lesion_conspicuity(replace(phantom, hu=hu))

    as_gland = float(phantom.hu[gland].mean() - phantom.hu[lesion].mean())  # lifts it to the gland
    assert shifted(-100.0) > 3.0
    assert abs(shifted(as_gland)) < 3.0
    _, normal = draw_case(3, replace(settings, lesion_fraction=0.0))
    assert lesion_conspicuity(normal) is None


@pytest.mark.parametrize(("words", "why"), [
    (["--seed", "8", "--seed", "10", "--seed", "8"], "--seed 8 is given more than once"),
    (["--cases", "1000"], "holds 0 to 999 phantoms"),
])
def test_the_command_refuses_held_out_sets_it_cannot_draw_as_asked(words, why, capsys):
    from screen.training.evaluate_package import main

    with pytest.raises(SystemExit) as stop:
        main(["pancreas-phantom-v1", *words])
    assert stop.value.code == 2
    assert why in capsys.readouterr().err
