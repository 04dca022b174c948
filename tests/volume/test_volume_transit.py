"""Pixels read in place, and volumes on their way between workers: Dask's own serializer packs
whole-HU volumes as int16 and must give back the same float32, bit for bit."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from conftest import series_in, write_ct_series
from distributed.protocol import deserialize, serialize

from screen.records import Volume
from screen.volume import load_volume
from screen.volume.decode import PADDING_HU

ROWS, COLUMNS = 12, 10


def _axial(n: int) -> list[tuple[float, float, float]]:
    return [(-5.0, -6.0, 10.0 + 2.0 * k) for k in range(n)]


def _wire_bytes(value: object) -> int:
    _, frames = serialize(value)
    return sum(memoryview(f).nbytes for f in frames)


def _through_dask(value: object) -> object:
    return deserialize(*serialize(value))


def test_unsigned_pixels_read_in_place_lose_their_unused_high_bits(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    hu = np.random.default_rng(3).integers(-1024, 2000, size=(3, ROWS, COLUMNS))
    stored = ((hu + 1024) // 1).astype(np.uint16)  # intercept -1024, 12 bits stored
    stored[:, :2, :] = 0  # outside the field of view: padding
    garbage = [s | np.uint16(0xA000) for s in stored]  # an overlay left in bits 13 and 15
    folder = write_ct_series(tmp_path / "s", garbage, _axial(3), signed=False, intercept=-1024,
                             padding=0, bits_stored=12)
    with caplog.at_level(logging.WARNING):
        volume = load_volume(series_in(folder))
    expected = stored.astype(np.float32) - 1024
    expected[:, :2, :] = PADDING_HU
    np.testing.assert_array_equal(volume.hu, expected)
    assert volume.hu.dtype == np.float32
    assert not caplog.records  # reading in place is silent


def test_a_whole_hu_volume_travels_as_int16_and_comes_back_bit_for_bit(tmp_path: Path) -> None:
    hu = np.random.default_rng(0).integers(-1024, 2000, size=(6, ROWS, COLUMNS))
    folder = write_ct_series(tmp_path / "s", list(hu.astype(np.int16)), _axial(6),
                             slope=2.0, intercept=-3024.0)
    volume = load_volume(series_in(folder))
    assert _wire_bytes(volume) < 0.5 * volume.hu.nbytes + 4096
    back = _through_dask(volume)
    assert isinstance(back, Volume) and back.hu.dtype == np.float32
    assert back.hu.tobytes() == volume.hu.tobytes()
    np.testing.assert_array_equal(back.affine, volume.affine)
    assert (back.slice_uids, back.warnings, back.slice_axis) == \
        (volume.slice_uids, volume.warnings, volume.slice_axis)


@pytest.mark.parametrize("odd, why", [
    (0.5, "a fraction of a HU, as interpolation gives"),
    (-0.0, "negative zero, which int16 would turn into zero"),
    (40000.0, "beyond int16"),
    (np.nan, "not a number"),
])
def test_a_volume_int16_cannot_hold_travels_as_float32(odd: float, why: str) -> None:
    hu = np.zeros((3, ROWS, COLUMNS), dtype=np.float32)
    hu[2, 5, 5] = odd
    volume = Volume(hu=hu, affine=np.eye(4), slice_uids=("a", "b", "c"))
    assert _wire_bytes(volume) >= hu.nbytes, why
    back = _through_dask(volume)
    assert back.hu.dtype == np.float32 and back.hu.tobytes() == hu.tobytes(), why


def test_a_float64_volume_keeps_its_dtype_in_transit() -> None:
    hu = np.arange(24, dtype=np.float64).reshape(2, 3, 4)
    back = _through_dask(Volume(hu=hu, affine=np.eye(4), slice_uids=("a", "b")))
    assert back.hu.dtype == np.float64 and np.array_equal(back.hu, hu)
