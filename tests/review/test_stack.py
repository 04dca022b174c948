"""The slice stack a page scrolls through, the words a page says, and the viewer link."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from screen.review import ViewerLink, volume_masks
from screen.review.images import key_point
from screen.review.pages import finding_sentence, flag_reason, image_paths, page_path
from screen.review.stack import ALPHABET, SLICES, build_stack, from_text, load_stack, to_text


@pytest.fixture(scope="module")
def lesion_stack(lesion_case):
    masks = volume_masks(lesion_case.volume, lesion_case.analysis)
    k, _, _ = key_point(lesion_case.volume, lesion_case.analysis.detection, masks)
    return build_stack(lesion_case.volume, masks, lesion_case.analysis, int(k)), masks


def test_the_stack_covers_the_gland_head_first_and_opens_at_the_key_slice(lesion_case, lesion_stack) -> None:
    stack, masks = lesion_stack
    assert len(stack.slices_k) == SLICES
    assert list(stack.slices_k) == sorted(stack.slices_k, reverse=True)
    assert list(stack.positions_mm) == sorted(stack.positions_mm, reverse=True)
    gland = np.flatnonzero(masks.pancreas.any(axis=(1, 2)))
    # A gland longer than 40 slices is sampled evenly: the stack spans it, margin included.
    assert stack.slices_k[0] >= gland.max() and stack.slices_k[-1] <= gland.min()
    assert stack.slices_k[stack.key_slice] == lesion_case.analysis.detection.key_slice
    outlines = stack.outlines()
    assert (outlines[stack.key_slice] & 2).any(), "the key slice shows no lesion outline"
    assert (outlines & 1).any()


def test_the_stack_keeps_the_hu_of_the_volume(lesion_case, lesion_stack) -> None:
    stack, _ = lesion_stack
    hu = stack.hu()
    assert hu.shape == (SLICES, stack.rows, stack.cols) and hu.dtype == np.int16
    volume = lesion_case.volume.hu
    for n in (0, stack.key_slice, SLICES - 1):
        source = volume[stack.slices_k[n]]
        # Interpolated onto the display grid: the same range and nearly the same mean.
        assert hu[n].min() >= max(source.min(), -1024) - 1 and hu[n].max() <= source.max() + 1
    assert stack.rows <= 256 and stack.cols <= 256


def test_the_page_text_encoding_spells_no_letter_or_digit() -> None:
    assert len(set(ALPHABET)) == 32
    assert not any(c.isalnum() or c.isspace() for c in ALPHABET)
    data = bytes(range(256)) * 3 + b"ANNA 12345678"
    text = to_text(data)
    assert not re.search(r"[0-9A-Za-z\s]", text) and "</" not in text
    assert from_text(text, len(data)) == data


def test_the_series_page_shows_the_final_rank_and_flag(review_report: Path, lesion_case) -> None:
    page = page_path(review_report, lesion_case.series.key).read_text(encoding="utf-8")
    assert "<dt>Rank</dt><dd>1</dd>" in page
    assert "<dt>Flagged for review</dt><dd>yes</dd>" in page
    assert load_stack(image_paths(review_report, lesion_case.series.key)["stack"]) is not None


def test_the_finding_is_a_sentence(lesion_case, clean_case, lesion_stack) -> None:
    assert finding_sentence(lesion_case.row) == (
        "Suspicious region in the pancreatic body, 20 mm, probability 91%.")
    assert finding_sentence(clean_case.row) == "No lesion candidate; probability 4%."
    assert flag_reason(lesion_case.row, lesion_stack[0], 0.5) == (
        "Flagged: its probability 91% is at or above the threshold of 50%.")


def test_a_flag_without_a_lesion_candidate_says_where_the_probability_peaks(clean_case) -> None:
    analysis = clean_case.analysis
    masks = volume_masks(clean_case.volume, analysis)
    # A faint spot in the gland: below the lesion threshold, so no candidate, but highest.
    lesion_probability = analysis.lesion_probability.copy()
    spot = tuple(np.argwhere(analysis.pancreas_mask)[len(np.argwhere(analysis.pancreas_mask)) // 2])
    lesion_probability[spot] = 0.37
    faint = type(analysis)(analysis.detection, analysis.features, analysis.locate_grid,
                           analysis.segment_grid, lesion_probability, analysis.pancreas_mask)
    k, _, _ = key_point(clean_case.volume, analysis.detection, masks)
    stack = build_stack(clean_case.volume, masks, faint, int(k))
    assert stack.peak is not None and stack.peak.probability == pytest.approx(0.37)
    assert stack.peak.location in ("head", "body", "tail")
    reason = flag_reason(replace(clean_case.row, flagged=True, score=0.62), stack, 0.5)
    assert reason.startswith("Flagged: its probability 62% is at or above the threshold of 50%.")
    assert re.search(r"No region passed the lesion threshold; the highest lesion probability, "
                     r"37%, lies in the pancreatic (head/uncinate process|body|tail) at "
                     r"\(-?\d+\.\d, -?\d+\.\d, -?\d+\.\d\) mm \(LPS\), slice \d+ of the stack\.",
                     reason), reason


def test_viewer_links_fill_the_template_url_encoded() -> None:
    link = ViewerLink("https://pacs.example/viewer?StudyInstanceUIDs={study}&series={series}")
    row = {"study_instance_uid": "1.2.3", "series_instance_uid": "1.2.3.4&x=1"}
    assert link.url(row) == "https://pacs.example/viewer?StudyInstanceUIDs=1.2.3&series=1.2.3.4%26x%3D1"
    assert link.url({"study_instance_uid": "1.2.3"}) is None
    link.check_pseudonymized()
    with pytest.raises(ValueError, match="cannot be used with --pseudonymize"):
        ViewerLink("https://pacs.example/?acc={accession}").check_pseudonymized()
    with pytest.raises(ValueError, match="may use {study}, {series} and {accession}"):
        ViewerLink("https://pacs.example/?p={patient}")
    with pytest.raises(ValueError, match="must start with http"):
        ViewerLink("javascript:alert({study})")
    with pytest.raises(ValueError, match="names none of"):
        ViewerLink("https://pacs.example/")
