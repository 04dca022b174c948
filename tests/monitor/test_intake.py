"""The aorta's HU, measured at scan time, tells the contrast phases apart."""

from __future__ import annotations

import dataclasses

import numpy as np

from screen.monitor.intake import aorta_hu, contrast_phase
from screen.synth.phantom import Phase, render, sample_spec


def test_the_aortic_hu_separates_the_contrast_phases_of_phantoms() -> None:
    measured: dict[Phase, list[float]] = {phase: [] for phase in Phase}
    right = 0
    for seed in range(4):
        spec = sample_spec(np.random.default_rng(seed))
        for phase in Phase:
            phantom = render(dataclasses.replace(spec, phase=phase), shape_kji=(9, 96, 96),
                             spacing_kji=(2.5, 4.0, 4.0))
            value = aorta_hu(phantom.hu, phantom.spacing_kji, list(range(2, 7)))
            assert value is not None
            measured[phase].append(value)
            right += contrast_phase(value) == phase.value
    medians = {phase: float(np.median(v)) for phase, v in measured.items()}
    assert medians[Phase.NON_CONTRAST] < 100 < medians[Phase.PORTAL_VENOUS] < 230 < medians[Phase.ARTERIAL]
    # A bowel loop with oral contrast in front of the spine can pass for the aorta.
    assert right >= 10, measured


def test_no_spine_no_measurement() -> None:
    water = np.zeros((3, 40, 40), np.float32)
    assert aorta_hu(water, (2.5, 4.0, 4.0), [0, 1, 2]) is None
    assert contrast_phase(None) is None
