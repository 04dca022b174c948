"""The index on a generated archive: exactly the abdominal CTs are eligible, nothing is lost."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest

from screen.index import index


@pytest.fixture(scope="module")
def manifest(small_archive: Path) -> list[dict[str, str]]:
    with open(small_archive / "manifest.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def result(small_archive: Path):
    return index([small_archive / "archive"], workers=2)


def _folder_of(small_archive: Path, path: str) -> str:
    return os.path.dirname(os.path.relpath(path, small_archive / "archive"))


def test_eligible_set_is_exactly_the_abdominal_cts(manifest, result) -> None:
    abdominal = {m["series_instance_uid"] for m in manifest if m["kind"] == "abdominal_ct"}
    sure = {e.series.first.series_instance_uid for e in result.eligible if not e.confirm}
    pending = {e.series.first.series_instance_uid for e in result.eligible if e.confirm}
    kinds = {m["series_instance_uid"]: m["kind"] for m in manifest}
    # Headers alone cannot tell every abdomen: an abdominal series tagged only CHEST or
    # ARTERIAL waits for its pixels, and so does a chest CT (the scan's content check
    # rejects it). Nothing else may slip through.
    assert sure | pending >= abdominal
    assert sure <= abdominal
    assert {kinds[uid] for uid in pending - abdominal} <= {"chest_ct"}
    assert all(m["should_be_eligible"] == "1" for m in manifest if m["kind"] == "abdominal_ct")
    assert not any(m["should_be_eligible"] == "1" for m in manifest if m["kind"] != "abdominal_ct")


def test_every_series_is_found_whole(small_archive: Path, manifest, result) -> None:
    series = [m for m in manifest if m["kind"] != "junk"]
    assert len(result.entries) == len(series)
    by_uid = {e.series.first.series_instance_uid: e for e in result.entries}
    for m in series:
        if m["series_instance_uid"]:
            entry = by_uid[m["series_instance_uid"]]
        else:  # an emptied UID: found by its own folder, under a derived key
            folder = m["folders"].split(";")[0]
            [entry] = [e for e in result.entries if not e.series.first.series_instance_uid
                       and _folder_of(small_archive, e.series.first.path) == folder]
            assert entry.series.key.startswith("derived-")
        assert len(entry.series.instances) == int(m["n_files"]), m["kind"]


def test_every_junk_file_is_in_errors(small_archive: Path, manifest, result) -> None:
    junk = {str(small_archive / "archive" / m["path"]) for m in manifest if m["kind"] == "junk"}
    errors = {e.path: e.error for e in result.errors}
    assert junk and junk <= set(errors)
    assert all(errors[p] for p in junk)


def test_rejections_name_their_rule(manifest, result) -> None:
    expected_rule = {"localizer": "localizer", "lung_kernel": "kernel", "head_ct": "region",
                     "coronal_reformat": "reformat", "mr": "modality"}
    kinds = {m["series_instance_uid"]: m["kind"] for m in manifest if m["series_instance_uid"]}
    for entry in result.entries:
        kind = kinds.get(entry.series.first.series_instance_uid)
        if kind in expected_rule:
            assert entry.decision.rule == expected_rule[kind], (kind, entry.decision)
