"""File names for what is written about a series: its review page and images, its DICOM SR and
SEG. One key per series, safe as a file name, so the files of one series share it."""

from __future__ import annotations

import hashlib
import re

_SAFE_KEY = re.compile(r"[0-9A-Za-z][0-9A-Za-z.\-]{0,95}")


def page_key(series_key: str) -> str:
    """A file-name-safe key for a series' page and images (UIDs pass unchanged)."""
    if not isinstance(series_key, str) or not series_key:
        raise ValueError(f"a series key must be a non-empty string, got {series_key!r}")
    if _SAFE_KEY.fullmatch(series_key):
        return series_key
    return "s-" + hashlib.sha256(series_key.encode()).hexdigest()[:24]
