"""File paths as text in the tables `screen` writes, kept losslessly whatever their bytes.

Linux file names are bytes. Old exports hold Latin-1 patient folders (``M\\xfcller``) that
are not valid UTF-8; Python reads such a byte as a lone surrogate (U+DCFC), which a path can
carry to ``open`` but a Parquet string cannot hold. So paths are written as text in one
documented form:

- every byte that is not part of valid UTF-8 is written ``\\xNN`` (two lowercase hex digits);
- every backslash in the name is doubled (``\\\\``), so that the form is never ambiguous;
- everything else is written as it is.

A path of valid UTF-8 without backslashes (nearly all of them) is written unchanged.
:func:`from_text` turns the text back into the path (``os.fsencode`` of it gives the exact
bytes on disk).
"""

from __future__ import annotations

import os
import re

_NEEDS_ESCAPE = re.compile(r"[\\\udc80-\udcff]")
_ESCAPED = re.compile(r"\\(\\|x[0-9a-f]{2})")


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    return "\\\\" if char == "\\" else f"\\x{ord(char) - 0xDC00:02x}"


def to_text(path: str) -> str:
    """``path`` (as ``os`` functions take it) in the documented text form."""
    return _NEEDS_ESCAPE.sub(_escape, path)


def _unescape(match: re.Match[str]) -> str:
    body = match.group(1)
    return "\\" if body == "\\" else chr(0xDC00 + int(body[1:], 16))


def from_text(text: str) -> str:
    """The path that :func:`to_text` wrote as ``text``, ready for ``open``."""
    return _ESCAPED.sub(_unescape, text)


def to_bytes(text: str) -> bytes:
    """The path's exact bytes on disk."""
    return os.fsencode(from_text(text))


def readable(component: str) -> str:
    """A path component as a person would read it: bytes that are not UTF-8 read as
    Latin-1 (the encoding of nearly every old export), for matching names, never for opening."""
    raw = os.fsencode(from_text(component))
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")
