"""One rule for damaged slices, whatever the transfer syntax: a file whose pixels cannot be
decoded is left out as a missing slice (up to two of them), and named in the volume."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from conftest import series_in, write_ct_series
from pydicom.encaps import generate_frames
from pydicom.uid import (
    UID,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
)

from screen.volume import VolumeError, load_volume
from screen.volume.decode import check_decodable

SLICES = 12
SYNTAXES = [ExplicitVRLittleEndian, ImplicitVRLittleEndian, RLELossless, JPEG2000Lossless,
            JPEGLSLossless]


def _series(folder: Path, syntax: str) -> list[Path]:
    try:
        check_decodable(syntax, "probe")
    except VolumeError as exc:
        pytest.skip(f"no decoder for {syntax.name} here: {exc}")
    rng = np.random.default_rng(3)
    stored = [rng.integers(-200, 300, (64, 64)).astype(np.int16) for _ in range(SLICES)]
    try:
        write_ct_series(folder, stored, [(0.0, 0.0, 2.0 * z) for z in range(SLICES)],
                        syntax=syntax)
    except (RuntimeError, NotImplementedError) as exc:
        pytest.skip(f"no encoder for {syntax.name} here to write the test series: {exc}")
    return sorted(folder.iterdir())


def _cut_short(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 200])


def _corrupt_stream(path: Path) -> None:
    """Random bytes over the start of the compressed stream, the file's length kept."""
    ds = pydicom.dcmread(path)
    frame = next(generate_frames(ds.PixelData, number_of_frames=1))
    data = bytearray(path.read_bytes())
    start = bytes(data).rfind(frame)
    assert start > 128 and len(frame) > 64
    data[start:start + 64] = np.random.default_rng(5).integers(0, 256, 64, np.uint8).tobytes()
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("syntax", SYNTAXES, ids=lambda s: s.name)
def test_one_damaged_slice_is_left_out_whatever_the_syntax(tmp_path: Path, syntax) -> None:
    # Issue reproduction: one undecodable slice of a JPEG 2000 series failed the series, while
    # an uncompressed truncated slice was left out. Now both are left out the same way.
    files = _series(tmp_path / "s", syntax)
    damage = _corrupt_stream if UID(syntax).is_compressed else _cut_short
    damage(files[5])
    volume = load_volume(series_in(tmp_path / "s"))
    assert volume.hu.shape[0] == SLICES  # the gap is interpolated, as for a missing slice
    assert volume.left_out == (str(files[5]),)
    assert any("is damaged" in w and "left out" in w for w in volume.warnings), volume.warnings


@pytest.mark.parametrize("syntax", SYNTAXES, ids=lambda s: s.name)
def test_a_compressed_file_cut_short_is_left_out_too(tmp_path: Path, syntax) -> None:
    files = _series(tmp_path / "s", syntax)
    _cut_short(files[7])
    volume = load_volume(series_in(tmp_path / "s"))
    assert volume.left_out == (str(files[7]),)


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, JPEG2000Lossless],
                         ids=lambda s: s.name)
def test_three_damaged_slices_fail_the_series_whatever_the_syntax(tmp_path: Path,
                                                                  syntax) -> None:
    files = _series(tmp_path / "s", syntax)
    damage = _corrupt_stream if UID(syntax).is_compressed else _cut_short
    for path in (files[2], files[5], files[8]):
        damage(path)
    with pytest.raises(VolumeError, match="is damaged"):
        load_volume(series_in(tmp_path / "s"))
