"""Synthetic phantoms: anatomy where it should be, truth that matches the voxels."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from screen.records import Location
from screen.synth.phantom import (
    ORGAN_LABELS,
    Phase,
    location_of,
    render,
    render_region,
    sample_spec,
)

SHAPE = (96, 128, 128)
SPACING = (2.5, 3.0, 3.0)
CODE = {name: code for code, name in ORGAN_LABELS.items()}


def _phantom(seed: int, lesion: bool | None = True, shape=SHAPE, spacing=SPACING):
    spec = sample_spec(np.random.default_rng(seed), lesion=lesion)
    return render(spec, shape_kji=shape, spacing_kji=spacing)


def test_arrays_have_the_volume_convention():
    p = _phantom(0)
    assert p.hu.shape == p.labels.shape == p.organs.shape == SHAPE
    assert p.hu.dtype == np.float32 and p.labels.dtype == np.uint8 and p.organs.dtype == np.uint8
    assert set(np.unique(p.labels)) <= {0, 1, 2}
    assert p.spacing_kji == SPACING
    # The affine maps voxel centres to the same LPS point the truth uses.
    k, j, i = p.lesion_center_kji
    lps = p.affine @ np.array([i, j, k, 1.0])
    np.testing.assert_allclose(lps[:3], p.lesion_center_lps, atol=1e-9)
    np.testing.assert_allclose(p.lesion_center_lps, p.spec.lesion.center_mm, atol=1e-9)
    # i runs to the patient's left: the liver (right side) sits at low i, the spleen at high i.
    liver_i = np.nonzero(p.organs == CODE["liver"])[2].mean()
    spleen_i = np.nonzero(p.organs == CODE["spleen"])[2].mean()
    assert liver_i < SHAPE[2] / 2 < spleen_i
    # j runs to posterior: the spine lies behind the aorta.
    aorta_j = np.nonzero(p.organs == CODE["artery"])[1].mean()
    canal_j = np.nonzero(p.organs == CODE["spinal_canal"])[1].mean()
    assert aorta_j < canal_j


@pytest.mark.parametrize("seed", range(6))
def test_pancreas_sits_mid_abdomen_and_holds_the_lesion(seed):
    p = _phantom(seed)
    z = p.origin_lps[2] + np.arange(SHAPE[0]) * SPACING[0]
    slices = np.flatnonzero(p.labels.any(axis=(1, 2)))
    assert slices.size >= 8
    # Below the liver dome, above the iliac crest, around the renal hila.
    assert p.spec.iliac_crest_z_mm < z[slices].min() and z[slices].max() < p.spec.liver_dome_z_mm
    assert -70 < z[slices].mean() < 40
    # The lesion: label 2, centred on the gland, inside the pancreas labels, the right size.
    centre = tuple(round(c) for c in p.lesion_center_kji)
    assert p.labels[centre] == 2
    lesion = p.labels == 2
    assert np.all(p.labels[lesion] > 0)
    assert 5.0 <= p.lesion_diameter_mm <= 40.0
    assert p.lesion_location in set(Location)
    assert location_of(p.spec.pancreas, p.lesion_center_lps[0]) == p.lesion_location


@pytest.mark.parametrize("seed", [1, 4, 7])
def test_lesion_diameter_matches_the_voxels(seed):
    spacing = (1.25, 1.25, 1.25)
    spec = sample_spec(np.random.default_rng(seed), lesion=True)
    # A fine grid centred in z on the lesion, wide enough in-plane to hold it.
    p = render(spec, shape_kji=(48, 240, 240), spacing_kji=spacing,
               z_center_mm=spec.lesion.center_mm[2])
    volume_mm3 = np.count_nonzero(p.labels == 2) * np.prod(spacing)
    equivalent = 2.0 * (3.0 * volume_mm3 / (4.0 * np.pi)) ** (1.0 / 3.0)
    assert equivalent == pytest.approx(p.lesion_diameter_mm, rel=0.2)


def test_no_lesion_means_no_label_two():
    p = _phantom(3, lesion=False)
    assert p.spec.lesion is None and p.lesion_center_kji is None
    assert p.lesion_diameter_mm is None and p.lesion_location is None
    assert not np.any(p.labels == 2) and np.any(p.labels == 1)


def _mean(p, name):
    return float(p.hu[p.organs == CODE[name]].mean())


def test_attenuation_is_plausible_per_organ():
    for seed in range(6):
        p = _phantom(seed, lesion=True)
        assert -1010 < float(p.hu[0, 0, 0]) < -990  # air in the corner
        assert _mean(p, "subcutaneous_fat") < -70
        assert _mean(p, "cortical_bone") > 300
        liver = _mean(p, "liver")
        assert 40 < liver < 130
        # Away from the edges, where partial volume with fat does not pull the mean down.
        core = ndimage.binary_erosion(p.labels == 1)
        pancreas = float(p.hu[core if core.any() else p.labels == 1].mean())
        lesion = float(p.hu[p.labels == 2].mean())
        assert 20 < pancreas < 130
        # Hypo-attenuating: never brighter than the gland around it.
        assert lesion < pancreas
        if p.spec.phase is Phase.PORTAL_VENOUS:
            assert _mean(p, "portal_vein") > liver
        if p.spec.phase is Phase.ARTERIAL:
            assert _mean(p, "artery") > 200


def test_same_seed_same_phantom_and_seeds_differ():
    small = {"shape": (48, 96, 96), "spacing": (5.0, 4.0, 4.0)}
    a, b = _phantom(11, None, **small), _phantom(11, None, **small)
    assert a.spec == b.spec
    np.testing.assert_array_equal(a.hu, b.hu)
    np.testing.assert_array_equal(a.organs, b.organs)
    specs = [sample_spec(np.random.default_rng(s)) for s in range(20)]
    assert len({s.body_semi_mm for s in specs}) == 20
    assert len({s.pancreas.shape for s in specs}) >= 3
    assert len({s.phase for s in specs}) == 3
    assert 4 <= sum(s.lesion is not None for s in specs) <= 16
    volumes = [_phantom(s, False, **small).pancreas_volume_ml for s in range(5)]
    assert max(volumes) > 1.3 * min(volumes)


def test_anatomy_does_not_depend_on_the_grid():
    spec = sample_spec(np.random.default_rng(5), lesion=True)
    coarse = render(spec, shape_kji=(60, 100, 100), spacing_kji=(4.0, 4.0, 4.0))
    fine = render(spec, shape_kji=(120, 200, 200), spacing_kji=(2.0, 2.0, 2.0))
    assert coarse.lesion_center_lps == pytest.approx(fine.lesion_center_lps)
    assert coarse.pancreas_volume_ml == pytest.approx(fine.pancreas_volume_ml, rel=0.2)


def test_render_rejects_bad_grids():
    spec = sample_spec(np.random.default_rng(0))
    with pytest.raises(ValueError, match="shape_kji must be three positive integers"):
        render(spec, shape_kji=(0, 10, 10), spacing_kji=SPACING)
    with pytest.raises(ValueError, match="spacing_kji must be three spacings"):
        render(spec, shape_kji=(4, 10, 10), spacing_kji=(0.0, 1.0, 1.0))
    with pytest.raises(TypeError, match="spec must be a PhantomSpec"):
        render("spec", shape_kji=(4, 10, 10), spacing_kji=SPACING)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="rng must be a numpy Generator"):
        sample_spec(0)  # type: ignore[arg-type]


@pytest.mark.parametrize("region", ["head", "chest", "pelvis"])
def test_other_regions_are_plausible(region):
    hu = render_region(np.random.default_rng(2), region, shape_kji=(40, 128, 128),
                       spacing_kji=(3.0, 3.0, 3.0))
    assert hu.shape == (40, 128, 128) and hu.dtype == np.float32
    assert hu[:, 0, 0].mean() < -950
    assert hu.max() > 300  # skull, ribs/spine or pelvic bones
    if region == "chest":
        assert np.mean(hu < -700) > 0.1  # lungs fill much of it
    with pytest.raises(ValueError, match="region must be one of"):
        render_region(np.random.default_rng(2), "knee", shape_kji=(4, 8, 8),
                      spacing_kji=(1.0, 1.0, 1.0))


def test_render_is_fast_enough_for_training():
    import time

    spec = sample_spec(np.random.default_rng(9))
    start = time.perf_counter()
    render(spec, shape_kji=SHAPE, spacing_kji=SPACING)
    assert time.perf_counter() - start < 2.0  # well under a second when the machine is idle


def test_coarse_grids_keep_the_lesion_and_grids_that_miss_it_have_none():
    spec = sample_spec(np.random.default_rng(2), lesion=True)
    z = spec.lesion.center_mm[2]
    coarse = render(spec, shape_kji=(24, 32, 32), spacing_kji=(5.0, 14.0, 14.0), z_center_mm=z)
    centre = tuple(round(c) for c in coarse.lesion_center_kji)
    assert coarse.labels[centre] == 2
    missed = render(spec, shape_kji=(24, 32, 32), spacing_kji=(5.0, 14.0, 14.0),
                    z_center_mm=z + 150.0)
    assert not np.any(missed.labels == 2)
    assert missed.lesion_center_kji is None and missed.lesion_location is None


def test_a_bowel_loop_whose_walk_repeats_a_point_still_renders():
    # This patient's small-bowel walk is clipped into a corner twice in a row: the same
    # point twice, which a spline through the points cannot take.
    rng = np.random.default_rng(900008019)
    lesion = bool(rng.random() < 0.5)  # as the held-out cases draw it
    spec = sample_spec(rng, lesion=lesion)
    repeats = [t for t in spec.bowel if (np.linalg.norm(np.diff(t.points, axis=0), axis=1) < 1e-9).any()]
    assert repeats, "the seed no longer draws a repeated point; pick another"
    phantom = render(spec, shape_kji=SHAPE, spacing_kji=SPACING)
    assert (phantom.organs == CODE["bowel_wall"]).any()
