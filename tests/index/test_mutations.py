"""Over a thousand damaged copies of real files: each is placed, none crashes or hangs the run."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from tests.conftest import need

SOURCES = [
    "dcm_qa_ct/In/GE/01.dcm",
    "dcmqi/data/segmentations/ct-3slice/01.dcm",
    "pydicom-data/data_store/data/explicit_VR-UN.dcm",
    "pydicom-data/data_store/data/eCT_Supplemental.dcm",
    "cornerstone/testImages/CTImage.dcm_LittleEndianImplicitTransferSyntax_1.2.840.10008.1.2.dcm",
    "cornerstone/testImages/CTImage.dcm_BigEndianExplicitTransferSyntax_1.2.840.10008.1.2.2.dcm",
    "cornerstone/testImages/CTImage.dcm_RLELosslessTransferSyntax_1.2.840.10008.1.2.5.dcm",
    "fo-dicom/test-data/GH342.dcm",
    "dcm_qa_ct/In/Philips/S21610/S4010/I10",
    "dcm_qa_ct/DICOMDIR",
]
PER_SOURCE = 110  # 10 sources x 110 = 1,100 files


def _mutate(data: bytes, rng: np.random.Generator, kind: int) -> bytes:
    buf = bytearray(data)
    header = min(len(buf), 4096)
    if kind == 0:  # truncation anywhere, header region most often
        cut = int(rng.integers(0, header if rng.random() < 0.7 else len(buf)))
        return bytes(buf[:cut])
    if kind == 1:  # flipped bytes in the header
        for _ in range(int(rng.integers(1, 16))):
            buf[int(rng.integers(0, header))] ^= 1 << int(rng.integers(0, 8))
        return bytes(buf)
    if kind == 2:  # a wrong 16- or 32-bit length where an element header may be
        at = int(rng.integers(132, max(133, header - 4)))
        value = int(rng.choice([0, 1, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, len(buf) * 2]))
        fmt = "<H" if value <= 0xFFFF and rng.random() < 0.5 else "<I"
        buf[at:at + struct.calcsize(fmt)] = struct.pack(fmt, value & (0xFFFF if fmt == "<H"
                                                                     else 0xFFFFFFFF))
        return bytes(buf)
    # a block of garbage spliced into the header
    at = int(rng.integers(0, header))
    return bytes(buf[:at]) + rng.bytes(int(rng.integers(1, 64))) + bytes(buf[at:])


@pytest.fixture(scope="module")
def mutated(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("mutated")
    rng = np.random.default_rng(20261127)
    for n, name in enumerate(SOURCES):
        data = need(corpus / name).read_bytes()
        folder = out / f"source{n:02d}"
        folder.mkdir()
        for m in range(PER_SOURCE):
            (folder / f"m{m:03d}").write_bytes(_mutate(data, rng, m % 4))
    return out


def test_every_mutated_file_is_placed_and_the_run_ends(mutated: Path, tmp_path: Path) -> None:
    files = {os.path.join(d, f) for d, _, names in os.walk(mutated) for f in names}
    assert len(files) >= 1000
    inventory = tmp_path / "inventory.parquet"
    run = subprocess.run(
        [sys.executable, "-m", "screen", "index", str(mutated), "--out", str(inventory),
         "--workers", "2"],
        capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    inv = pq.read_table(inventory).to_pylist()
    errors = pq.read_table(tmp_path / "errors.parquet").to_pylist()
    in_series = [p for row in inv for p in row["files"]]
    in_errors = [row["path"] for row in errors]
    assert set(in_series) | set(in_errors) == files
    assert len(in_series) + len(in_errors) == len(files)
    assert all(row["error"] for row in errors)
    assert "Traceback" not in run.stderr
