"""Decode one DICOM file's frames into Hounsfield units, whatever its transfer syntax.

pydicom 3 and its pixel plugins (pylibjpeg with openjpeg/libjpeg/rle, pyjpegls, gdcm) do the
decoding; this module adds what a CT reader must do on top, frame by frame:

* the rescale to HU, from RescaleSlope/Intercept or, in Enhanced CT, from the per-frame or
  shared Pixel Value Transformation functional group (a Modality LUT, rare in CT, is applied
  through pydicom);
* PixelPaddingValue (and PixelPaddingRangeLimit), compared with the stored values before the
  rescale as the standard says, set to ``PADDING_HU`` so that the area outside the scan's
  field of view reads as air rather than as -1500 or -32768 "HU";
* the retired lossy JPEG syntaxes (process 6/8 and 10/12) that pydicom has no decoder for
  are read through GDCM directly when it is installed.

Bits above BitsStored are masked and signed pixels sign-extended (by pydicom, or here for
uncompressed pixels read in place); pydicom corrects JPEG 2000 streams whose signedness
disagrees with PixelRepresentation. ``FrameDecoder`` writes each frame's HU straight into
the caller's array, so that decoding a series allocates nothing per slice.

The common case, a file of one uncompressed 16-bit frame, needs none of pydicom:
``FrameDecoder.file_hu_into`` walks the header only as far as the Pixel Data element and
reads the pixels from the file in one go, with the same HU, bit for bit, as pydicom's path.
"""

from __future__ import annotations

import io
import logging
import os
import struct
from dataclasses import dataclass

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.pixels import get_decoder, pixel_array
from pydicom.pixels.processing import apply_modality_lut
from pydicom.uid import UID

from screen import header_scan
from screen.volume.errors import DamagedPixels, VolumeError

logger = logging.getLogger(__name__)

# Air. Padding marks pixels outside the reconstructed field of view; they are outside the
# patient, so they become air rather than the volume minimum (often -3024 "HU" of the
# scanner's own out-of-field value, which would skew intensity statistics).
PADDING_HU = -1000.0

# Syntaxes pydicom has no decoder for but GDCM reads (retired lossy JPEG processes).
_GDCM_ONLY = {
    "1.2.840.10008.1.2.4.53": "JPEG Spectral Selection, Non-Hierarchical (Process 6 & 8)",
    "1.2.840.10008.1.2.4.55": "JPEG Full Progression, Non-Hierarchical (Process 10 & 12)",
}


@dataclass(frozen=True, slots=True)
class Rescale:
    """Stored value to HU: ``hu = stored * slope + intercept``."""

    slope: float = 1.0
    intercept: float = 0.0

    def __post_init__(self) -> None:
        if not np.isfinite(self.slope) or self.slope == 0:
            raise ValueError(f"RescaleSlope must be finite and non-zero, got {self.slope}")
        if not np.isfinite(self.intercept):
            raise ValueError(f"RescaleIntercept must be finite, got {self.intercept}")


def syntax_name(uid: str) -> str:
    name = UID(uid).name if uid else ""
    return f"{name} ({uid})" if name and name != uid else (uid or "unknown transfer syntax")


def check_decodable(transfer_syntax_uid: str, path: str) -> None:
    """Fail before any pixel is read when nothing installed can decode this syntax."""
    uid = UID(transfer_syntax_uid) if transfer_syntax_uid else None
    if uid is None or not uid.is_transfer_syntax:
        return  # a bare data set without file meta: pydicom will guess, let it try
    if str(uid) in _GDCM_ONLY:
        if not _gdcm_available():
            raise VolumeError(
                f"{path}: pixels use the retired {syntax_name(uid)}, which pydicom cannot "
                "decode; install python-gdcm (pip install python-gdcm) or convert the series "
                "to a standard transfer syntax (e.g. gdcmconv --raw)"
            )
        return
    try:
        decoder = get_decoder(uid)
    except NotImplementedError:
        raise VolumeError(
            f"{path}: no decoder exists for {syntax_name(uid)}; convert the series to a "
            "standard transfer syntax (e.g. gdcmconv --raw)"
        ) from None
    if not decoder.is_available:
        missing = "; ".join(decoder.missing_dependencies) or "a decoding plugin"
        raise VolumeError(
            f"{path}: cannot decode {syntax_name(uid)}: no decoding plugin is installed; "
            f"install one of: {missing}"
        )


def read_dataset(path: str) -> Dataset:
    """The whole file, pixels included (headers alone were read when indexing)."""
    try:
        return pydicom.dcmread(path, force=True)
    except Exception as exc:
        raise VolumeError(f"{path}: cannot be read: {type(exc).__name__}: {exc}") from exc


class FrameDecoder:
    """Decodes frames as HU straight into arrays the caller owns.

    One decoder serves a whole series and keeps its scratch buffers (the padding mask, stored
    values with their unused high bits cleared) from frame to frame; uncompressed pixels are
    read where the file's bytes lie, without a copy. Decoding a frame then allocates nothing
    beyond what a compression plugin returns. That keeps it at memory speed whatever the
    allocator does: a Dask nanny, for one, sets MALLOC_TRIM_THRESHOLD_, which turns every
    large allocation into fresh pages from the kernel.
    """

    def __init__(self) -> None:
        self._scratch: dict[str, np.ndarray] = {}

    def hu_into(self, ds: Dataset, path: str, index: int, out: np.ndarray) -> None:
        """Frame ``index`` of ``ds`` as float32 HU into ``out`` (rows, columns), padding as air.

        The HU are those of ``stored * slope + intercept`` computed in float32, whatever
        ``out``'s strides.
        """
        n_frames = int(ds.get("NumberOfFrames") or 1)
        if not 0 <= index < n_frames:
            raise VolumeError(f"{path}: frame {index + 1} asked of a file with {n_frames}")
        stored = _stored_frame(ds, path, index, n_frames)
        if _read_in_place(ds):
            cleared = self._buffer("stored", stored.shape, stored.dtype)
            stored = _unused_bits_cleared(stored, int(ds.get("BitsStored") or 0), cleared)
        if stored.ndim != 2:
            raise VolumeError(
                f"{path}: expected one grey-level frame, got pixel array of shape "
                f"{stored.shape} (PhotometricInterpretation "
                f"{ds.get('PhotometricInterpretation', '?')})"
            )
        if stored.shape != out.shape:
            raise DamagedPixels(
                path, f"{path}: pixels are {stored.shape[0]}x{stored.shape[1]} but the header "
                f"says {out.shape[0]}x{out.shape[1]}")
        if ds.get("ModalityLUTSequence"):
            padding = self._padding(stored, padding_range(ds))
            out[...] = apply_modality_lut(stored, ds)
            if padding is not None:
                np.copyto(out, np.float32(PADDING_HU), where=padding)
        else:
            self._rescaled_into(stored, frame_rescale(ds, index), padding_range(ds), out)

    def file_hu_into(self, path: str, out: np.ndarray) -> bool:
        """The file's one uncompressed frame as HU into ``out``, as ``hu_into`` writes it, read
        straight from the file with no data set parsed; False, with ``out`` untouched, when
        the file is not the plain kind this reads (see ``native_frame``): ``hu_into`` then.

        The header walk stops at the Pixel Data element, and its value is read in one go into
        a buffer kept from frame to frame, so a series of such files costs one open and two
        reads per slice. Anything short or odd (a file cut short, a length that does not
        match the header) goes to ``hu_into`` too, so that damage is judged one way.
        """
        try:
            with open(path, "rb", buffering=0) as f:
                head = f.read(header_scan.BLOCK)
                frame = native_frame(head, os.fstat(f.fileno()).st_size)
                if frame is None or frame.shape != out.shape:
                    return False
                stored = self._buffer("native", frame.shape, frame.dtype)
                f.seek(frame.offset)
                if not _read_exactly(f, stored):
                    return False
        except OSError:
            return False  # gone or unreadable: read_dataset says so in its own words
        stored = _unused_bits_cleared(stored, frame.bits_stored, stored)
        self._rescaled_into(stored, frame.rescale, frame.padding, out)
        return True

    def _rescaled_into(self, stored: np.ndarray, rescale: Rescale,
                       padding: tuple[int, int] | None, out: np.ndarray) -> None:
        mask = self._padding(stored, padding)
        if rescale.slope != 1.0:
            np.multiply(stored, np.float32(rescale.slope), out=out, dtype=np.float32)
            if rescale.intercept != 0.0:
                out += np.float32(rescale.intercept)
        elif rescale.intercept != 0.0:
            # One pass: each stored value made float32 (exact), then the float32 sum.
            np.add(stored, np.float32(rescale.intercept), out=out, dtype=np.float32)
        else:
            np.copyto(out, stored, casting="unsafe")
        if mask is not None:
            np.copyto(out, np.float32(PADDING_HU), where=mask)

    def _buffer(self, name: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        buffer = self._scratch.get(name)
        if buffer is None or buffer.shape != shape or buffer.dtype != dtype:
            buffer = self._scratch[name] = np.empty(shape, dtype=dtype)
        return buffer

    def _padding(self, stored: np.ndarray, bounds: tuple[int, int] | None) -> np.ndarray | None:
        """Pixels whose stored value is within ``bounds`` (PixelPaddingValue and its range)."""
        if bounds is None:
            return None
        mask = self._buffer("padding", stored.shape, np.dtype(bool))
        within = self._buffer("within", stored.shape, np.dtype(bool))
        np.greater_equal(stored, bounds[0], out=mask)
        np.less_equal(stored, bounds[1], out=within)
        np.logical_and(mask, within, out=mask)
        return mask if mask.any() else None


def frame_rescale(ds: Dataset, frame: int = 0) -> Rescale:
    """The rescale of one frame: per-frame group, then shared group, then the top level."""
    places: list[Dataset] = []
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if per_frame and frame < len(per_frame):
        places.append(per_frame[frame])
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared:
        places.append(shared[0])
    for group in places:
        items = group.get("PixelValueTransformationSequence")
        if items:
            return _rescale_of(items[0])
    return _rescale_of(ds)


def _rescale_of(item: Dataset) -> Rescale:
    slope = item.get("RescaleSlope")
    intercept = item.get("RescaleIntercept")
    try:
        return Rescale(
            slope=float(slope) if slope not in (None, "") else 1.0,
            intercept=float(intercept) if intercept not in (None, "") else 0.0,
        )
    except (TypeError, ValueError) as exc:
        raise VolumeError(f"unusable rescale (slope {slope!r}, intercept {intercept!r}): {exc}")


def padding_range(ds: Dataset) -> tuple[int, int] | None:
    """The stored values PixelPaddingValue (and PixelPaddingRangeLimit) mark, low to high."""
    value = ds.get("PixelPaddingValue")
    if value is None or value == "":
        return None
    limit = ds.get("PixelPaddingRangeLimit")
    return _padding_bounds(int(value), int(limit) if limit not in (None, "") else None,
                           bits=int(ds.get("BitsAllocated") or 16),
                           signed=int(ds.get("PixelRepresentation") or 0) == 1)


def _padding_bounds(value: int, limit: int | None, *, bits: int,
                    signed: bool) -> tuple[int, int]:
    def as_stored(v: int) -> int:
        # The tag's VR (US or SS) follows PixelRepresentation, but files disagree with
        # themselves: read an unsigned -32768 as the signed value it stands for.
        if signed and v >= 2 ** (bits - 1):
            v -= 2**bits
        return v

    low = as_stored(value)
    high = as_stored(limit) if limit is not None else low
    return min(low, high), max(low, high)


def _unused_bits_cleared(stored: np.ndarray, bits_stored: int, out: np.ndarray) -> np.ndarray:
    """``stored`` with the bits above BitsStored cleared (unsigned) or set from the sign bit
    (signed), as pydicom does to the copies it makes, into ``out`` (which may be ``stored``);
    ``stored`` itself when every bit is used."""
    bits = 8 * stored.dtype.itemsize
    unused = bits - (bits_stored or bits)
    if unused <= 0 or unused >= bits:
        return stored
    np.left_shift(stored, unused, out=out)
    np.right_shift(out, unused, out=out)
    return out


_U16, _S16 = struct.Struct("<H"), struct.Struct("<h")

# Uncompressed little-endian syntaxes whose frames ``file_hu_into`` reads itself.
NATIVE_SYNTAXES = frozenset({"1.2.840.10008.1.2", "1.2.840.10008.1.2.1"})

_SAMPLES, _PHOTOMETRIC, _FRAMES = 0x00280002, 0x00280004, 0x00280008
_ROWS, _COLUMNS = 0x00280010, 0x00280011
_BITS_ALLOCATED, _BITS_STORED, _HIGH_BIT, _REPRESENTATION = (
    0x00280100, 0x00280101, 0x00280102, 0x00280103)
_PADDING, _PADDING_LIMIT = 0x00280120, 0x00280121
_INTERCEPT, _SLOPE = 0x00281052, 0x00281053
_NATIVE_TAGS = frozenset({
    _SAMPLES, _PHOTOMETRIC, _FRAMES, _ROWS, _COLUMNS, _BITS_ALLOCATED, _BITS_STORED,
    _HIGH_BIT, _REPRESENTATION, _PADDING, _PADDING_LIMIT, _INTERCEPT, _SLOPE})
# Elements that change how stored values become HU beyond the top-level rescale (a Modality
# LUT; Enhanced CT's functional groups). Their tag's bytes anywhere before the pixels send the
# file to pydicom: a chance match inside some other value costs only speed.
_OTHER_TRANSFORMS = tuple(struct.pack("<HH", tag >> 16, tag & 0xFFFF) for tag in (
    0x00283000, 0x52009229, 0x52009230))


@dataclass(frozen=True, slots=True)
class NativeFrame:
    """Where a single-frame uncompressed file's pixels lie, and how they become HU."""

    offset: int  # of the Pixel Data value, in the file
    shape: tuple[int, int]
    dtype: np.dtype
    bits_stored: int
    rescale: Rescale
    padding: tuple[int, int] | None


def native_frame(head: bytes, size: int) -> NativeFrame | None:
    """The plain case, from a file's first bytes (``size`` in all): one frame of 16-bit grey
    levels, uncompressed little endian, all of it in the file, rescaled by the top-level
    RescaleSlope and RescaleIntercept only. None for anything else, which pydicom reads."""
    found = header_scan.scan_to_pixels(head, size, _NATIVE_TAGS)
    if found is None:
        return None
    scan, offset, length = found
    if scan.transfer_syntax_uid not in NATIVE_SYNTAXES or \
            any(head.find(tag, 0, offset) >= 0 for tag in _OTHER_TRANSFORMS):
        return None
    values = scan.elements
    try:
        rows, columns = _us(values[_ROWS]), _us(values[_COLUMNS])
        bits, bits_stored = _us(values[_BITS_ALLOCATED]), _us(values[_BITS_STORED])
        signed = _us(values[_REPRESENTATION])
        if _us(values[_SAMPLES]) != 1 or bits != 16 or signed not in (0, 1) or \
                not 1 <= bits_stored <= bits or _us(values[_HIGH_BIT]) != bits_stored - 1 or \
                _text(values[_PHOTOMETRIC]) not in ("MONOCHROME1", "MONOCHROME2") or \
                _text(values.get(_FRAMES)) not in ("", "1") or \
                length != rows * columns * 2 or offset + length > size:
            return None
        rescale = Rescale(slope=_number(values.get(_SLOPE), 1.0),
                          intercept=_number(values.get(_INTERCEPT), 0.0))
        padding = None
        if _PADDING in values:
            limit = values.get(_PADDING_LIMIT)
            padding = _padding_bounds(
                _us_or_ss(values[_PADDING], signed),
                _us_or_ss(limit, signed) if limit is not None else None,
                bits=bits, signed=signed == 1)
    except (KeyError, ValueError, struct.error, UnicodeDecodeError):
        return None  # absent, malformed or unusable: pydicom's reading says which
    return NativeFrame(offset, (rows, columns), np.dtype("<i2" if signed else "<u2"),
                       bits_stored, rescale, padding)


def _us(item: tuple[str | None, bytes]) -> int:
    return _U16.unpack(item[1])[0]


def _us_or_ss(item: tuple[str | None, bytes], signed: int) -> int:
    """A value of VR US or SS: as written, or, without a VR (implicit), as
    PixelRepresentation says."""
    vr, raw = item
    return (_S16 if vr == "SS" or (vr is None and signed) else _U16).unpack(raw)[0]


def _text(item: tuple[str | None, bytes] | None) -> str:
    return item[1].decode("ascii").strip(" \x00") if item else ""


def _number(item: tuple[str | None, bytes] | None, default: float) -> float:
    """A decimal string (DS) with one value; ValueError for several."""
    text = _text(item)
    if "\\" in text:
        raise ValueError(f"several values: {text!r}")
    return float(text) if text else default


def _read_exactly(f: io.RawIOBase, into: np.ndarray) -> bool:
    """Fill ``into`` from the file's position on; False if the file ends first."""
    view, done = memoryview(into).cast("B"), 0
    while done < len(view):
        n = f.readinto(view[done:])
        if not n:
            return False
        done += n
    return True


def _stored_frame(ds: Dataset, path: str, index: int, n_frames: int) -> np.ndarray:
    syntax = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or "")
    if syntax in _GDCM_ONLY:
        return _gdcm_frame(path, index, n_frames)
    if "PixelData" not in ds:
        # Indexed as an image, so its pixels were there: an encapsulated file cut short loses
        # the whole element. Damaged, as a file cut short inside native pixels is.
        raise DamagedPixels(path, f"{path}: holds no pixel data (cut short?)")
    # FrameDecoder clears the unused high bits of pixels read in place, into its own buffer.
    options = {"view_only": True, "correct_unused_bits": False} if _read_in_place(ds) else {}
    try:
        return pixel_array(ds, index=index if n_frames > 1 else None, **options)
    except NotImplementedError as exc:
        raise VolumeError(f"{path}: cannot decode {syntax_name(syntax)}: {_one_line(exc)}")
    except Exception as exc:
        # One rule for every syntax: check_decodable has made sure a decoder is installed, so
        # a failure here (a RuntimeError naming each plugin pydicom tried, for compressed
        # data; a ValueError for native pixels cut short) is this file's own damage.
        raise DamagedPixels(
            path, f"{path}: pixel data of {syntax_name(syntax)} is damaged: "
            f"{type(exc).__name__}: {_one_line(exc)}"
        ) from exc


def _read_in_place(ds: Dataset) -> bool:
    """Whether the pixels are uncompressed little-endian whole bytes, which pydicom can hand
    over as a read-only view of the file's bytes instead of a copy."""
    syntax = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or "")
    uid = UID(syntax)
    return bool(syntax) and uid.is_transfer_syntax and not uid.is_encapsulated and \
        uid.is_little_endian and int(ds.get("BitsAllocated") or 0) in (8, 16, 32)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _gdcm_available() -> bool:
    try:
        import gdcm  # noqa: F401
    except ImportError:
        return False
    return True


_GDCM_DTYPES = {"INT8": np.int8, "UINT8": np.uint8, "INT16": np.int16, "UINT16": np.uint16,
                "INT32": np.int32, "UINT32": np.uint32}


def _gdcm_frame(path: str, index: int, n_frames: int) -> np.ndarray:
    """One frame decoded by GDCM, for the syntaxes pydicom leaves to it."""
    try:
        import gdcm
    except ImportError:
        raise VolumeError(
            f"{path}: pixels use a retired JPEG syntax that only GDCM decodes; "
            "install python-gdcm (pip install python-gdcm)"
        ) from None
    reader = gdcm.ImageReader()
    reader.SetFileName(path)
    if not reader.Read():
        raise DamagedPixels(path, f"{path}: pixel data is damaged: GDCM could not read the file")
    image = reader.GetImage()
    pixel_format = image.GetPixelFormat()
    dtype = _GDCM_DTYPES.get(pixel_format.GetScalarTypeAsString())
    if dtype is None or pixel_format.GetSamplesPerPixel() != 1:
        raise VolumeError(f"{path}: GDCM decoded pixels of an unsupported kind ({pixel_format})")
    columns, rows = image.GetDimension(0), image.GetDimension(1)
    # GDCM hands the decoded buffer back as a str of raw bytes (surrogate-escaped).
    raw = image.GetBuffer().encode("utf-8", errors="surrogateescape")
    frames = np.frombuffer(raw, dtype=dtype)
    if frames.size != rows * columns * n_frames:
        raise DamagedPixels(
            path, f"{path}: pixel data is damaged: GDCM decoded {frames.size} pixels, "
            f"expected {rows}x{columns}x{n_frames}"
        )
    return frames.reshape(n_frames, rows, columns)[index].copy()
