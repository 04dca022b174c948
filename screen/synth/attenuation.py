"""From organ codes to HU: attenuation per organ and contrast phase, partial-volume blur, organ
texture and CT noise."""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from screen.synth.anatomy import CODE, LESION_CODE, Phase
from screen.synth.spec import PhantomSpec

# Mean attenuation (HU) per organ code in (non-contrast, arterial/pancreatic, portal venous)
# phase, from typical adult values. The pancreas peaks in the late arterial phase, which is why
# pancreas protocols scan then; the lesion's HU is the pancreas value plus the spec's delta.
_HU_TABLE: dict[int, tuple[float, float, float]] = {
    0: (-1000, -1000, -1000), 1: (-105, -105, -105), 2: (50, 58, 62), 3: (-95, -95, -95),
    4: (58, 75, 115), 5: (12, 12, 12), 6: (48, 115, 120), 7: (35, 190, 165),
    8: (30, 90, 150), 9: (45, 85, 90), 10: (45, 80, 95), 11: (12, 12, 12),
    12: (-950, -950, -950), 13: (280, 280, 280), 14: (42, 320, 170), 15: (40, 90, 150),
    16: (40, 110, 180), 17: (750, 750, 750), 18: (220, 220, 220), 19: (15, 15, 15),
    20: (-860, -860, -860), 21: (42, 115, 100), 22: (42, 115, 100), 23: (42, 115, 100),
    24: (15, 20, 25), 25: (42, 115, 100), 26: (42, 250, 150), 27: (85, 90, 95),
}
_PHASE_COLUMN = {Phase.NON_CONTRAST: 0, Phase.ARTERIAL: 1, Phase.PORTAL_VENOUS: 2}
# Without contrast a hypo-attenuating lesion shows only a fraction of its enhanced contrast.
_LESION_DELTA_FACTOR = {Phase.NON_CONTRAST: 0.35, Phase.ARTERIAL: 1.0, Phase.PORTAL_VENOUS: 0.85}


def attenuation(organs: np.ndarray, spec: PhantomSpec,
                 spacing_kji: tuple[float, float, float]) -> np.ndarray:
    column = _PHASE_COLUMN[spec.phase]
    lut = np.zeros(256, dtype=np.float32)
    for code, values in _HU_TABLE.items():
        lut[code] = values[column]
    if spec.lesion is not None:
        lut[LESION_CODE] = lut[CODE["pancreas_body"]] + spec.lesion.delta_hu * (
            _LESION_DELTA_FACTOR[spec.phase])
    hu = lut[organs]
    rng = np.random.default_rng(spec.noise_seed)
    # Partial volume: a voxel averages the anatomy over its extent, so blur by about half a
    # voxel along each axis (in voxels, since the voxel is the averaging kernel).
    hu = ndimage.gaussian_filter(hu, sigma=(0.45, 0.45, 0.45), mode="nearest")
    # Organ texture: low-amplitude, smooth (a few mm) variation inside soft tissue.
    texture = ndimage.gaussian_filter(rng.standard_normal(organs.shape, dtype=np.float32),
                                      sigma=tuple(min(3.0, 2.0 / s) for s in spacing_kji))
    texture *= 4.0 / max(float(texture.std()), 1e-6)
    soft = (organs > 1) & (organs != CODE["lung"]) & (organs != CODE["luminal_gas"])
    hu += np.where(soft, texture, 0.0).astype(np.float32)
    # Quantum noise: correlated in-plane by the reconstruction kernel, and lower in thicker
    # slices (more photons per voxel), relative to a 2.5 mm reference slice.
    sigma = spec.noise_sigma_hu * math.sqrt(2.5 / spacing_kji[0])
    noise = ndimage.gaussian_filter(rng.standard_normal(organs.shape, dtype=np.float32),
                                    sigma=(0.0, 0.6, 0.6))
    noise *= sigma / max(float(noise.std()), 1e-6)
    body = organs > 0
    hu += np.where(body, noise, noise * 0.2)
    np.clip(hu, -1024.0, 3071.0, out=hu)
    return hu.astype(np.float32, copy=False)
