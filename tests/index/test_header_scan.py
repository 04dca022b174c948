"""The lean header scan must read exactly what pydicom's full reader reads."""

from __future__ import annotations

import os
from pathlib import Path

import pydicom.data
import pytest

from screen.header_scan import scan
from screen.headers import _WANTED, read_instance

PYDICOM_FILES = Path(pydicom.data.__file__).parent / "test_files"


def _files(*roots: Path) -> list[str]:
    return sorted(os.path.join(d, f) for root in roots for d, _, names in os.walk(root)
                  for f in names)


def _same(path: str) -> None:
    lean, full = read_instance(path), read_instance(path, lean=False)
    assert lean == full, path


def test_corpus_and_pydicom_files_read_the_same_both_ways(corpus: Path) -> None:
    files = _files(corpus, PYDICOM_FILES)
    for path in files:
        _same(path)
    # The lean scan did take most real files (the rest went to the full reader).
    assert sum(scan(p, _WANTED) is not None for p in files) > len(files) // 3


def test_a_generated_archive_reads_the_same_both_ways(small_archive: Path) -> None:
    files = _files(small_archive / "archive")
    for path in files:
        _same(path)
    assert sum(scan(p, _WANTED) is not None for p in files) > 0.9 * len(files)


@pytest.mark.parametrize("cut", [140, 300, 700, 1500])
def test_a_file_cut_short_reads_the_same_both_ways(corpus: Path, tmp_path: Path,
                                                    cut: int) -> None:
    source = (corpus / "dcm_qa_ct/In/GE/01.dcm").read_bytes()
    short = tmp_path / "short.dcm"
    short.write_bytes(source[:cut])
    _same(str(short))
