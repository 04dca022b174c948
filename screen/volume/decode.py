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
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.pixels import get_decoder, pixel_array
from pydicom.pixels.processing import apply_modality_lut
from pydicom.uid import UID

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
            stored = self._unused_bits_cleared(ds, stored)
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
        padding = self._padding(stored, ds)
        if ds.get("ModalityLUTSequence"):
            out[...] = apply_modality_lut(stored, ds)
        else:
            rescale = frame_rescale(ds, index)
            if rescale.slope != 1.0:
                np.multiply(stored, np.float32(rescale.slope), out=out, dtype=np.float32)
            else:
                np.copyto(out, stored, casting="unsafe")
            if rescale.intercept != 0.0:
                out += np.float32(rescale.intercept)
        if padding is not None:
            np.copyto(out, np.float32(PADDING_HU), where=padding)

    def _buffer(self, name: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        buffer = self._scratch.get(name)
        if buffer is None or buffer.shape != shape or buffer.dtype != dtype:
            buffer = self._scratch[name] = np.empty(shape, dtype=dtype)
        return buffer

    def _unused_bits_cleared(self, ds: Dataset, stored: np.ndarray) -> np.ndarray:
        """Stored values read in place, with the bits above BitsStored cleared (unsigned) or
        set from the sign bit (signed), as pydicom does to the copies it makes."""
        bits = 8 * stored.dtype.itemsize
        unused = bits - int(ds.get("BitsStored") or bits)
        if unused <= 0 or unused >= bits:
            return stored
        cleared = self._buffer("stored", stored.shape, stored.dtype)
        np.left_shift(stored, unused, out=cleared)
        np.right_shift(cleared, unused, out=cleared)
        return cleared

    def _padding(self, stored: np.ndarray, ds: Dataset) -> np.ndarray | None:
        """Pixels whose stored value is PixelPaddingValue, or within the padding range."""
        bounds = padding_range(ds)
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
    bits = int(ds.get("BitsAllocated") or 16)
    signed = int(ds.get("PixelRepresentation") or 0) == 1

    def as_stored(v: int) -> int:
        # The tag's VR (US or SS) follows PixelRepresentation, but files disagree with
        # themselves: read an unsigned -32768 as the signed value it stands for.
        v = int(v)
        if signed and v >= 2 ** (bits - 1):
            v -= 2**bits
        return v

    low = as_stored(value)
    limit = ds.get("PixelPaddingRangeLimit")
    high = as_stored(limit) if limit not in (None, "") else low
    return min(low, high), max(low, high)


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
