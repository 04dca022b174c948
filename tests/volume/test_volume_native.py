"""Uncompressed frames read straight from the file give the same HU as pydicom's path, bit for
bit, on real files and on generated series; anything else is left to pydicom."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pydicom
import pytest
from conftest import series_in, write_ct_series
from pydicom.data import get_testdata_files
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from screen import header_scan
from screen.volume import VolumeError, load_volume
from screen.volume.decode import FrameDecoder, NativeFrame, native_frame, read_dataset

SLICES = 6


def _native(path: Path | str) -> NativeFrame | None:
    with open(path, "rb") as f:
        return native_frame(f.read(header_scan.BLOCK), os.path.getsize(path))


def _both_ways(path: Path | str, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The frame's HU read in place, and through pydicom's data set."""
    decoder = FrameDecoder()
    direct = np.full(shape, np.nan, dtype=np.float32)
    assert decoder.file_hu_into(str(path), direct), path
    through_pydicom = np.full(shape, np.nan, dtype=np.float32)
    decoder.hu_into(read_dataset(str(path)), str(path), 0, through_pydicom)
    return direct, through_pydicom


def _same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and np.array_equal(a.view(np.uint32), b.view(np.uint32))


def test_real_uncompressed_files_read_in_place_match_pydicom_bit_for_bit(corpus: Path) -> None:
    files = sorted(p for p in corpus.rglob("*") if p.is_file()) + \
        sorted(Path(p) for p in get_testdata_files() if Path(p).is_file())
    read = {p: frame for p in files if (frame := _native(p)) is not None}
    for path, frame in read.items():
        direct, through_pydicom = _both_ways(path, frame.shape)
        assert _same_bits(direct, through_pydicom), path
    syntaxes = {str(pydicom.dcmread(p, stop_before_pixels=True).file_meta.TransferSyntaxUID)
                for p in read}
    # What the real files exercise: both syntaxes, padding, an intercept, a slope, 12 bits.
    assert syntaxes == {ExplicitVRLittleEndian, ImplicitVRLittleEndian}
    assert any(f.padding is not None for f in read.values())
    assert any(f.rescale.intercept != 0 for f in read.values())
    assert any(f.rescale.slope != 1 for f in read.values())
    assert any(f.bits_stored < 16 for f in read.values())


@pytest.mark.parametrize("name", [
    "cornerstone/testImages/CTImage.dcm_JPEG2000LosslessOnlyTransferSyntax_1.2.840.10008.1.2.4.90.dcm",
    "cornerstone/testImages/CTImage.dcm_BigEndianExplicitTransferSyntax_1.2.840.10008.1.2.2.dcm",
    "cornerstone/testImages/CTImage.dcm_RLELosslessTransferSyntax_1.2.840.10008.1.2.5.dcm",
    "pydicom-data/data_store/data/eCT_Supplemental.dcm",  # Enhanced CT: functional groups
    "cornerstone/testImages/no-pixel-data.dcm",
])
def test_compressed_multi_frame_and_pixelless_files_are_left_to_pydicom(corpus: Path,
                                                                        name: str) -> None:
    assert _native(corpus / name) is None


CASES = {
    "explicit, signed, intercept": dict(intercept=-1024.0),
    "implicit, signed, slope and intercept": dict(syntax=ImplicitVRLittleEndian, slope=0.5,
                                                  intercept=-1024.25),
    "explicit, unsigned, 12 bits with an overlay above them, padding": dict(
        signed=False, bits_stored=12, intercept=-1024.0, padding=0, overlay=True),
    "explicit, signed, 12 bits with bit 14 set above them": dict(
        bits_stored=12, intercept=-24.0, overlay=True),
    "implicit, unsigned, padding range": dict(
        syntax=ImplicitVRLittleEndian, signed=False, intercept=-1024.0, padding=0,
        padding_limit=30),
    "implicit, signed, padding -2000": dict(syntax=ImplicitVRLittleEndian, padding=-2000,
                                            intercept=-1024.0),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_generated_series_read_in_place_match_pydicom_bit_for_bit(tmp_path: Path,
                                                                  case: str) -> None:
    options = dict(CASES[case])
    overlay = options.pop("overlay", False)
    signed = options.get("signed", True)
    rng = np.random.default_rng(7)
    low, high = (-2000, 2000) if signed else (0, 4000)  # within 12 bits
    stored = [rng.integers(low, high, (20, 24)) for _ in range(SLICES)]
    if "padding" in options:
        for s in stored:
            s[:3, :] = options["padding"]  # outside the field of view
    # The HU the header promises, from the stored values before any overlay bits go in.
    expected = np.stack(stored).astype(np.float32) * np.float32(options.get("slope", 1.0)) + \
        np.float32(options.get("intercept", 0.0))
    if "padding" in options:
        padding = np.stack(stored)
        expected[(padding >= options["padding"]) &
                 (padding <= options.get("padding_limit", options["padding"]))] = -1000.0
    if overlay:  # bits that are not pixel values: 13 and 15 unsigned, 14 signed
        stored = [s | (0x4000 if signed else 0xA000) for s in stored]
    folder = write_ct_series(tmp_path / "s", stored,
                             [(0.0, 0.0, 1.5 * z) for z in range(SLICES)], **options)
    for path in sorted(folder.iterdir()):
        direct, through_pydicom = _both_ways(path, (20, 24))
        assert _same_bits(direct, through_pydicom), path
    # The whole loader, both ways: its own reader of files, and one it cannot read in place.
    series = series_in(folder)
    in_place = load_volume(series)
    via_pydicom = load_volume(series, read=lambda path: read_dataset(path))
    assert _same_bits(in_place.hu, via_pydicom.hu)
    np.testing.assert_array_equal(in_place.hu, expected)  # already in L, P, S order: no turn


def test_a_frame_the_header_does_not_match_is_left_untouched_for_pydicom(tmp_path: Path) -> None:
    folder = write_ct_series(tmp_path / "s", [np.zeros((8, 8), np.int16)], [(0.0, 0.0, 0.0)])
    path = next(folder.iterdir())
    out = np.full((8, 9), 7.0, dtype=np.float32)
    assert not FrameDecoder().file_hu_into(str(path), out)
    assert np.all(out == 7.0)


def test_a_file_gone_since_indexing_fails_the_series_in_words(tmp_path: Path) -> None:
    stored = [np.zeros((8, 8), np.int16) for _ in range(3)]
    folder = write_ct_series(tmp_path / "s", stored, [(0.0, 0.0, z) for z in range(3)])
    series = series_in(folder)
    (folder / "IM0002.dcm").unlink()
    with pytest.raises(VolumeError, match="IM0002.dcm: cannot be read: FileNotFoundError"):
        load_volume(series)
