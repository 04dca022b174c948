"""Other body regions (head, chest, pelvis), plain but plausible, for an archive's distractor
series."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from screen.synth.drawing import check_grid, make_grid
from screen.synth.sampling import uniform

REGIONS = ("head", "chest", "pelvis")


def render_region(rng: np.random.Generator, region: str, *, shape_kji: tuple[int, int, int],
                  spacing_kji: tuple[float, float, float]) -> np.ndarray:
    """A plain but plausible HU volume [k, j, i] of the head, chest or pelvis."""
    if region not in REGIONS:
        raise ValueError(f"region must be one of {REGIONS}, got {region!r}")
    shape_kji = tuple(int(n) for n in shape_kji)  # type: ignore[assignment]
    spacing_kji = tuple(float(s) for s in spacing_kji)  # type: ignore[assignment]
    check_grid(shape_kji, spacing_kji)
    grid = make_grid(shape_kji, spacing_kji, 0.0)
    x, y, z = grid.x[None, None, :], grid.y[None, :, None], grid.z[:, None, None]
    hu = np.full(shape_kji, -1000.0, dtype=np.float32)

    def put(mask: np.ndarray, value: float) -> None:
        hu[np.broadcast_to(mask, shape_kji)] = value

    if region == "head":
        a, b, c = uniform(rng, 70, 80), uniform(rng, 90, 100), uniform(rng, 80, 95)
        rho = np.sqrt((x / a) ** 2 + (y / b) ** 2 + (z / c) ** 2)
        put(rho <= 1.0, 40)  # scalp
        put(rho <= 0.96, 1100)  # skull
        put(rho <= 0.9, 8)  # CSF rim
        put(rho <= 0.87, 36)  # brain
        put((np.abs(x) < 12) & (np.abs(y + 5) < 25) & (np.abs(z - 10) < 15) & (np.abs(x) > 2), 6)
    elif region == "chest":
        a, b = uniform(rng, 150, 190), uniform(rng, 100, 130)
        body = (x / a) ** 2 + (y / b) ** 2 <= 1.0
        put(body, -100)
        put((x / (a - 15)) ** 2 + (y / (b - 15)) ** 2 <= 1.0, 50)
        for side in (-1, 1):
            put(((x - side * a * 0.45) / (a * 0.4)) ** 2 + (y / (b * 0.75)) ** 2
                + (z / 200.0) ** 2 <= 1.0, -850)
        put(((x - 20) / 55) ** 2 + ((y + 20) / 45) ** 2 + ((z + 20) / 55) ** 2 <= 1.0, 45)
        put((x - 10) ** 2 + (y - 25) ** 2 <= 13 ** 2, 45 + uniform(rng, 0, 250))  # aorta
        put(x ** 2 + (y - b + 45) ** 2 <= 18 ** 2, 300)  # vertebra
        rho = np.sqrt((x / (a - 20)) ** 2 + (y / (b - 20)) ** 2)
        put((np.abs(rho - 1.0) < 0.04) & (((z + 5) % 26) < 9), 700)  # ribs
    else:
        a, b = uniform(rng, 160, 200), uniform(rng, 100, 130)
        put((x / a) ** 2 + (y / b) ** 2 <= 1.0, -100)
        put((x / (a - 25)) ** 2 + (y / (b - 25)) ** 2 <= 1.0, 50)
        rho = np.sqrt((x / (a - 40)) ** 2 + (y / (b - 35)) ** 2)
        put((np.abs(rho - 0.8) < 0.07) & (y > -0.3 * b), 700)  # pelvic ring
        for side in (-1, 1):
            put((x - side * (a - 75)) ** 2 + (y + 5) ** 2 + (z + 30) ** 2 <= 24 ** 2, 400)
        put((x / 45) ** 2 + ((y + 35) / 35) ** 2 + (z / 40) ** 2 <= 1.0, 8)  # bladder
        put(x ** 2 + (y - 35) ** 2 <= 14 ** 2, -800)  # rectal gas
    hu = ndimage.gaussian_filter(hu, sigma=0.5, mode="nearest")
    hu += rng.normal(0.0, uniform(rng, 8, 20), size=shape_kji).astype(np.float32)
    return np.clip(hu, -1024.0, 3071.0).astype(np.float32)
