"""A lean scan of the elements at the start of a DICOM file, for indexing at archive scale.

Indexing needs some thirty elements, all in groups 0008 to 0028, from millions of files. This
scanner reads the first block of a file, walks the element headers with `struct` and keeps the
raw bytes of the wanted elements, stopping at the first element past group 0028. It handles the
common case (a preamble, explicit or implicit VR little endian) and answers None for anything
else (big endian, deflate, no preamble, a header longer than the block, anything odd), so that
pydicom's full reader takes over. It never interprets a value: decoding is the caller's.
``scan_to_pixels`` walks on as far as the Pixel Data element, for reading pixels in place.
"""

from __future__ import annotations

import struct
from collections.abc import Set
from dataclasses import dataclass

BLOCK = 64 * 1024  # enough for the groups we read in all but extraordinary headers
IMPLICIT_LE = "1.2.840.10008.1.2"
BIG_ENDIAN = "1.2.840.10008.1.2.2"
DEFLATED = "1.2.840.10008.1.2.1.99"
LAST_TAG = 0x0028FFFF
PIXEL_DATA = 0x7FE00010
_LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN",
                       b"UR", b"UT", b"UV"})
_UNDEFINED = 0xFFFFFFFF
_ITEM, _ITEM_END, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_TAG = struct.Struct("<HH")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")


class _Unsupported(Exception):
    """This file is for pydicom's full reader."""


@dataclass(frozen=True, slots=True)
class Scan:
    transfer_syntax_uid: str
    media_sop_class_uid: str
    implicit: bool
    elements: dict[int, tuple[str | None, bytes]]  # tag -> (VR or None if implicit, raw value)
    at_end: bool  # the file ended before any element past group 0028
    stop: int = -1  # where the first element not read starts in the block, -1 if none did


def scan(path: str, wanted: Set[int]) -> Scan | None:
    """The wanted elements of ``path``, or None when the file needs the full reader."""
    with open(path, "rb") as f:
        buf = f.read(BLOCK)
        size = f.seek(0, 2)
    try:
        return _scan(buf, size, wanted)
    except (_Unsupported, struct.error, IndexError, UnicodeDecodeError):
        return None


def _scan(buf: bytes, size: int, wanted: Set[int], last_tag: int = LAST_TAG) -> Scan:
    if len(buf) < 144 or buf[128:132] != b"DICM":
        raise _Unsupported
    meta, pos = _read_elements(buf, 132, implicit=False, stop_group=0x0002, wanted=None)
    if pos < 0:
        raise _Unsupported
    syntax = _uid(meta.get(0x00020010))
    if syntax in (BIG_ENDIAN, DEFLATED) or not syntax:
        raise _Unsupported
    implicit = syntax == IMPLICIT_LE
    elements, end = _read_elements(buf, pos, implicit=implicit, stop_group=None, wanted=wanted,
                                   last_tag=last_tag)
    if end < 0:  # ran off the block
        if len(buf) < size:
            raise _Unsupported  # a long header: let the full reader have it
        at_end = True
    else:
        at_end = False
    if not elements:
        raise _Unsupported
    return Scan(syntax, _uid(meta.get(0x00020002)), implicit, elements, at_end, end)


def scan_to_pixels(head: bytes, size: int, wanted: Set[int]) -> tuple[Scan, int, int] | None:
    """The wanted elements of a file that starts with ``head`` (``size`` bytes in all), read up
    to its Pixel Data, with where that element's value starts in the file and its length.

    None when the file needs the full reader (as for ``scan``), when its Pixel Data does not
    start within ``head``, or when it is encapsulated (of undefined length).
    """
    try:
        found = _scan(head, size, wanted, last_tag=PIXEL_DATA - 1)
        if found.stop < 0 or _TAG.unpack_from(head, found.stop) != (0x7FE0, 0x0010):
            return None
        _, length, start = _element_header(head, found.stop, found.implicit)
    except (_Unsupported, struct.error, IndexError, UnicodeDecodeError):
        return None
    return (found, start, length) if length != _UNDEFINED else None


def _uid(item: tuple[str | None, bytes] | None) -> str:
    return item[1].decode("ascii").strip(" \x00") if item else ""


def _read_elements(buf: bytes, pos: int, *, implicit: bool, stop_group: int | None,
                   wanted: Set[int] | None, last_tag: int = LAST_TAG
                   ) -> tuple[dict[int, tuple[str | None, bytes]], int]:
    """Elements from ``pos`` until a tag past ``last_tag`` (or past ``stop_group``).

    Returns them and the position of the first element not read, or -1 if the block ended.
    """
    found: dict[int, tuple[str | None, bytes]] = {}
    end = len(buf)
    while pos + 8 <= end:
        group, element = _TAG.unpack_from(buf, pos)
        tag = group << 16 | element
        if (stop_group is not None and group != stop_group) or tag > last_tag:
            return found, pos
        vr, length, start = _element_header(buf, pos, implicit)
        if length == _UNDEFINED:
            pos = _skip_undefined(buf, start, implicit)
            continue
        if start + length > end:
            return found, -1
        if wanted is None or tag in wanted:
            found[tag] = (vr, buf[start:start + length])
        pos = start + length
    return found, -1


def _element_header(buf: bytes, pos: int, implicit: bool) -> tuple[str | None, int, int]:
    """The VR (None when implicit), value length and value position of the element at ``pos``."""
    if implicit:
        return None, _U32.unpack_from(buf, pos + 4)[0], pos + 8
    vr_bytes = buf[pos + 4:pos + 6]
    if not (65 <= vr_bytes[0] <= 90 and 65 <= vr_bytes[1] <= 90):
        raise _Unsupported  # not an explicit VR: the full reader copes with such files
    if vr_bytes in _LONG_VRS:
        return vr_bytes.decode("ascii"), _U32.unpack_from(buf, pos + 8)[0], pos + 12
    return vr_bytes.decode("ascii"), _U16.unpack_from(buf, pos + 6)[0], pos + 8


def _skip_undefined(buf: bytes, pos: int, implicit: bool) -> int:
    """The position after a sequence of undefined length that starts at ``pos``."""
    end = len(buf)
    while pos + 8 <= end:
        group, element = _TAG.unpack_from(buf, pos)
        tag = group << 16 | element
        length = _U32.unpack_from(buf, pos + 4)[0]
        pos += 8
        if tag == _SEQUENCE_END:
            return pos
        if tag != _ITEM:
            raise _Unsupported
        if length != _UNDEFINED:
            pos += length
            continue
        pos = _skip_item(buf, pos, implicit)
    raise _Unsupported


def _skip_item(buf: bytes, pos: int, implicit: bool) -> int:
    """The position after an item of undefined length: its elements up to the item end."""
    end = len(buf)
    while pos + 8 <= end:
        group, element = _TAG.unpack_from(buf, pos)
        tag = group << 16 | element
        if tag == _ITEM_END:
            return pos + 8
        _, length, start = _element_header(buf, pos, implicit)
        pos = _skip_undefined(buf, start, implicit) if length == _UNDEFINED else start + length
    raise _Unsupported
