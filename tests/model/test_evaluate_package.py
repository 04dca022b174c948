"""The evaluation's own pieces: NIfTI (RAS) to an LPS Volume, and the summary of cases."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from screen.model.evaluate_package import CaseResult, nifti_volume, summarise

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
