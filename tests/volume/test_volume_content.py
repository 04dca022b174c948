"""The content check on real CT (abdomen, chest crop, head) and on the synthetic archive."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import compare_with_sitk, series_of, sitk_image

from screen.records import Volume
from screen.volume import VolumeError, load_volume, looks_abdominal
from screen.volume.decode import check_decodable

REAL = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "real-ct" / "totalsegmentator"


def _nifti_volume(name: str) -> Volume:
    nib = pytest.importorskip("nibabel", reason="nibabel reads the real NIfTI CTs")
    path = REAL / name
    if not path.exists():
        pytest.skip(f"shared test data not found: real-ct/totalsegmentator/{name}")
    image = nib.load(path)
    hu = np.asarray(image.dataobj, dtype=np.float32).transpose(2, 1, 0)  # (x,y,z) -> [k,j,i]
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ image.affine  # NIfTI is RAS
    return Volume(hu=np.ascontiguousarray(hu), affine=lps,
                  slice_uids=tuple(str(k) for k in range(hu.shape[0])))


def test_real_abdomen_pelvis_ct_looks_abdominal() -> None:
    ok, reason = looks_abdominal(_nifti_volume("example_ct.nii.gz"))
    assert ok, reason
    assert reason.endswith("consistent with an abdomen")


def test_real_chest_cta_crop_does_not() -> None:
    ok, reason = looks_abdominal(_nifti_volume("chest_cta_crop.nii.gz"))
    assert not ok
    assert "too small for an adult abdomen" in reason


def test_real_head_ct_does_not(corpus: Path) -> None:
    volume = load_volume(series_of(sorted((corpus / "dcm_qa_ct/In/GE").glob("*.dcm"))))
    ok, reason = looks_abdominal(volume)
    assert not ok
    assert reason.startswith("body 18 cm across")


def test_lungs_in_the_middle_read_as_chest() -> None:
    # A 32 cm soft-tissue body whose middle is filled with two lung-density ovals.
    j, i = np.mgrid[0:128, 0:128]
    body = ((i - 64) / 55.0) ** 2 + ((j - 64) / 45.0) ** 2 <= 1
    lungs = (((i - 40) / 18.0) ** 2 + ((j - 60) / 28.0) ** 2 <= 1) | \
            (((i - 88) / 18.0) ** 2 + ((j - 60) / 28.0) ** 2 <= 1)
    section = np.where(body, 40.0, -1000.0)
    section[lungs] = -850.0
    hu = np.repeat(section[None].astype(np.float32), 6, axis=0)
    volume = Volume(hu=hu, affine=np.diag([3.0, 3.0, 5.0, 1.0]),
                    slice_uids=tuple("123456"))
    ok, reason = looks_abdominal(volume)
    assert not ok and "too much air for an abdomen (chest?)" in reason
    hu[:, lungs] = 40.0
    assert looks_abdominal(volume)[0]


def test_looks_abdominal_needs_a_volume() -> None:
    with pytest.raises(TypeError, match="needs a Volume, got ndarray"):
        looks_abdominal(np.zeros((2, 2, 2)))  # type: ignore[arg-type]


def test_synthetic_archive_abdomens_load_match_simpleitk_and_look_abdominal(
    small_archive: Path,
) -> None:
    import csv

    from screen.index import index

    truth = {row["series_instance_uid"]
             for row in csv.DictReader((small_archive / "truth.csv").open())}
    result = index([small_archive / "archive"], workers=1)
    abdomens = [e.series for e in result.entries if e.series.key in truth]
    assert len(abdomens) == len(truth)
    syntaxes = set()
    damaged = 0
    for series in abdomens:
        volume = load_volume(series)
        syntaxes.update(i.transfer_syntax_uid for i in series.instances)
        ok, reason = looks_abdominal(volume)
        assert ok, f"{series.key}: {reason}"
        folders = {str(Path(i.path).parent) for i in series.instances}
        if any("IM99999" in i.path for i in series.instances):
            # The archive's truncated copy of a slice: left out and filled in, with a note.
            assert any("IM99999" in w and "treated as a missing slice" in w
                       for w in volume.warnings)
            damaged += 1
        elif len(folders) == 1:  # SimpleITK reads one folder per series
            compare_with_sitk(volume, sitk_image([i.path for i in series.instances]),
                              atol=1e-3)
    assert len(syntaxes) >= 2  # the archive mixes transfer syntaxes
    assert damaged <= 1


def test_a_syntax_without_any_decoder_is_named() -> None:
    with pytest.raises(VolumeError, match=r"no decoder exists for MPEG2 .*1\.2\.840\.10008\.1\.2"
                                          r"\.4\.100.*convert the series"):
        check_decodable("1.2.840.10008.1.2.4.100", "IM0001")
