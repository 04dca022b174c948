"""The slices a reviewer scrolls through: about 40 axial slices of the pancreas' box, in HU.

A review page windows its slices itself (presets and drag-to-adjust), so it needs Hounsfield
units, not a rendering. They travel as one lossless PNG mosaic, slice under slice: red and
green hold ``HU + 1024`` (0..4095) as high and low byte, blue the outlines (bit 0 the
pancreas, bit 1 the lesion). A PNG decodes natively and exactly in any browser, offline, and
CT compresses well in it.

The page must carry the PNG inline (a browser will not let a page read the pixels of an image
file beside it), as text. That text is written in an alphabet of 32 punctuation marks, five
bytes to eight marks (:func:`to_text`), not in base64: base64's letters and digits would
spell out, by chance, short names and numbers that the check for leaked patient identifiers
rightly cannot tell from real ones; punctuation spells nothing.

The slices are cut from the volume in its canonical L-P-S voxel order, so each is shown as is
in the radiological convention: the patient's right on the viewer's left, anterior at the top.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from screen.atomic import write_bytes_atomic
from screen.detect.detector import Analysis
from screen.detect.masks import Masks
from screen.detect.postprocess import location_in_mask
from screen.records import Volume

logger = logging.getLogger(__name__)

SLICES = 40  # about 40 slices through the box: enough to read the gland, light to ship
DISPLAY_PIXELS = 256  # the box's longer side on the display grid: finer than a typical
# pancreas box at native resolution, so a coarse series is interpolated, not shown blocky
MARGIN_MM = 15.0  # context around the gland's box
FALLBACK_HALF_MM = 60.0  # half the box when no gland was found: around the key point
HU_OFFSET = 1024
HU_MAX = 4095 - HU_OFFSET
PANCREAS_BIT, LESION_BIT = 1, 2


@dataclass(frozen=True, slots=True)
class Peak:
    """Where the lesion probability is highest, in or against the gland: why a series with
    no lesion candidate may still score high."""

    probability: float
    lps_mm: tuple[float, float, float]
    location: str | None  # head, body or tail; None without a gland to place it on
    slice: int  # index into the stack nearest the peak

    def __post_init__(self) -> None:
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError(f"peak probability must lie in [0, 1], got {self.probability}")


@dataclass(frozen=True, slots=True)
class Stack:
    """Metadata of a stack's mosaic: ``rows`` x ``cols`` square pixels of ``pixel_mm``, one
    slice per volume slice in ``slices_k``, at table positions ``positions_mm`` (LPS z)."""

    slices_k: tuple[int, ...]
    positions_mm: tuple[float, ...]
    rows: int
    cols: int
    pixel_mm: float
    key_slice: int  # index into the stack the page opens at
    peak: Peak | None
    png: bytes  # the mosaic

    def __post_init__(self) -> None:
        if not self.slices_k or len(self.slices_k) != len(self.positions_mm):
            raise ValueError(f"a stack needs one position per slice, got {len(self.slices_k)} "
                             f"slices and {len(self.positions_mm)} positions")
        if self.rows < 1 or self.cols < 1 or not self.pixel_mm > 0:
            raise ValueError(f"bad stack geometry {self.rows}x{self.cols} at {self.pixel_mm} mm")
        if not 0 <= self.key_slice < len(self.slices_k):
            raise ValueError(f"key slice {self.key_slice} is outside the {len(self.slices_k)} slices")

    def metadata(self) -> dict[str, object]:
        """Everything but the mosaic, as JSON values."""
        data = asdict(self)
        del data["png"]
        return data

    @classmethod
    def from_metadata(cls, data: dict[str, object], png: bytes) -> Stack:
        peak = data.get("peak")
        return cls(**{**data, "slices_k": tuple(data["slices_k"]),  # type: ignore[arg-type]
                      "positions_mm": tuple(data["positions_mm"]),  # type: ignore[arg-type]
                      "peak": None if peak is None else Peak(**{**peak, "lps_mm": tuple(peak["lps_mm"])}),  # type: ignore[dict-item]
                      "png": png})

    def hu(self) -> np.ndarray:
        """The stack's HU as (slices, rows, cols) int16, decoded as the page decodes it."""
        rgb = self._pixels()
        return (rgb[..., 0].astype(np.int16) * 256 + rgb[..., 1] - HU_OFFSET).astype(np.int16)

    def outlines(self) -> np.ndarray:
        return self._pixels()[..., 2]

    def _pixels(self) -> np.ndarray:
        with Image.open(io.BytesIO(self.png)) as image:
            rgb = np.asarray(image.convert("RGB"))
        return rgb.reshape(len(self.slices_k), self.rows, self.cols, 3)


def build_stack(volume: Volume, masks: Masks, analysis: Analysis, key_k: int,
                slices: int = SLICES) -> Stack:
    """The slices of ``volume`` through the gland's box (or around ``key_k`` without one)."""
    if slices < 1:
        raise ValueError(f"a stack needs at least one slice, got {slices}")
    shape = np.asarray(volume.hu.shape)
    sk, sj, si = volume.spacing
    found = np.argwhere(masks.pancreas | masks.lesion)
    if len(found):
        lo, hi = found.min(axis=0), found.max(axis=0)
    else:
        half = np.array([FALLBACK_HALF_MM / sk, FALLBACK_HALF_MM / sj, FALLBACK_HALF_MM / si])
        centre = np.array([key_k, shape[1] / 2, shape[2] / 2])
        lo, hi = np.floor(centre - half).astype(int), np.ceil(centre + half).astype(int)
    margin = np.rint(np.array([MARGIN_MM / sk, MARGIN_MM / sj, MARGIN_MM / si])).astype(int)
    lo = np.clip(lo - margin, 0, shape - 1)
    hi = np.clip(hi + margin, 0, shape - 1)
    # Head first, as a reader scrolls: down the stack is down the patient.
    chosen = _slices(int(lo[0]), int(hi[0]), int(shape[0]), slices, key_k)[::-1]

    crop = (slice(int(lo[1]), int(hi[1]) + 1), slice(int(lo[2]), int(hi[2]) + 1))
    rows_mm, cols_mm = (hi[1] - lo[1] + 1) * sj, (hi[2] - lo[2] + 1) * si
    pixel = max(rows_mm, cols_mm) / DISPLAY_PIXELS
    rows, cols = max(1, round(rows_mm / pixel)), max(1, round(cols_mm / pixel))
    zoom = (rows / (hi[1] - lo[1] + 1), cols / (hi[2] - lo[2] + 1))

    hu = np.stack([_fit(ndimage.zoom(volume.hu[k][crop].astype(np.float32), zoom, order=1), rows, cols)
                   for k in chosen])
    bits = np.zeros(hu.shape, dtype=np.uint8)
    for mask, bit in ((masks.pancreas, PANCREAS_BIT), (masks.lesion, LESION_BIT)):
        for n, k in enumerate(chosen):
            if mask[k].any():
                small = _fit(ndimage.zoom(mask[k][crop].astype(np.uint8), zoom, order=0), rows, cols) > 0
                bits[n] |= np.where(small & ~ndimage.binary_erosion(small, border_value=0), bit, 0
                                    ).astype(np.uint8)
    value = (np.clip(np.rint(hu), -HU_OFFSET, HU_MAX) + HU_OFFSET).astype(np.uint16)
    rgb = np.stack([(value >> 8).astype(np.uint8), (value & 255).astype(np.uint8), bits], axis=-1)
    sink = io.BytesIO()
    # zlib's default level: PIL's optimize would save under a tenth of the size for ten
    # times the time, on the worker, for every flagged series.
    Image.fromarray(rgb.reshape(len(chosen) * rows, cols, 3), "RGB").save(sink, format="PNG")
    positions = tuple(round(float(volume.to_lps(np.array([k, (lo[1] + hi[1]) / 2, (lo[2] + hi[2]) / 2]))[2]), 1)
                      for k in chosen)
    peak = _peak(volume, analysis, chosen)
    return Stack(slices_k=tuple(int(k) for k in chosen), positions_mm=positions, rows=rows,
                 cols=cols, pixel_mm=round(float(pixel), 4),
                 key_slice=int(np.argmin([abs(k - key_k) for k in chosen])), peak=peak,
                 png=sink.getvalue())


def _slices(first: int, last: int, total: int, count: int, key_k: int) -> list[int]:
    """``count`` slice indices covering [first, last], widened to ``count`` where the volume
    allows, always holding ``key_k``."""
    span = last - first + 1
    if span < count:
        grow = count - span
        first = max(0, first - grow // 2)
        last = min(total - 1, first + count - 1)
        first = max(0, last - count + 1)
        return list(range(first, last + 1))
    chosen = sorted({int(round(x)) for x in np.linspace(first, last, count)})
    if 0 <= key_k < total and key_k not in chosen:
        chosen[int(np.argmin([abs(k - key_k) for k in chosen]))] = key_k
        chosen.sort()
    return chosen


def _fit(image: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """``image`` cut or edge-padded to exactly (rows, cols): zoom rounds sizes its own way."""
    image = image[:rows, :cols]
    pad = ((0, rows - image.shape[0]), (0, cols - image.shape[1]))
    return np.pad(image, pad, mode="edge") if any(p[1] for p in pad) else image


def _peak(volume: Volume, analysis: Analysis, chosen: list[int]) -> Peak | None:
    grid, lesion = analysis.segment_grid, analysis.lesion_probability
    if grid is None or lesion is None:
        return None
    lesion = np.asarray(lesion, dtype=np.float32)
    gland = analysis.pancreas_mask
    if gland is not None and np.asarray(gland).any():
        # As the detector counts lesions: only in or against the gland.
        lesion = np.where(ndimage.binary_dilation(np.asarray(gland, bool), iterations=2), lesion, 0.0)
    at = np.unravel_index(int(np.argmax(lesion)), lesion.shape)
    kji = grid.to_volume(np.asarray(at, dtype=np.float64))
    lps = volume.to_lps(kji)
    location = None
    if gland is not None and np.asarray(gland).sum() >= 2:
        location = location_in_mask(gland, lambda v: volume.to_lps(grid.to_volume(v)), lps).value
    probability = float(np.clip(lesion[at], 0.0, 1.0))
    nearest = int(np.argmin([abs(k - float(kji[0])) for k in chosen]))
    if math.isnan(probability):
        return None
    return Peak(probability, tuple(round(float(v), 1) for v in lps), location, nearest)


def save_stack(stack: Stack, path: Path) -> Path:
    """The mosaic at ``path`` (a PNG) and its metadata beside it (``.json``)."""
    write_bytes_atomic(path, stack.png)
    return write_bytes_atomic(Path(path).with_suffix(".json"),
                              json.dumps(stack.metadata(), separators=(",", ":")).encode())


def load_stack(path: Path) -> Stack | None:
    """The stack saved at ``path``; None when there is none or it cannot be read (an older
    report, a half-copied folder): the page then shows its key images only."""
    try:
        data = json.loads(Path(path).with_suffix(".json").read_text(encoding="utf-8"))
        return Stack.from_metadata(data, Path(path).read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError, KeyError) as exc:
        logger.warning("could not read the slice stack %s: %s", path, exc)
        return None


# 32 marks, none a letter or a digit; "<" never stands before a letter, so the text can sit
# inside a <script> element unescaped.
ALPHABET = "!#$%&()*+,-./:;<=>?@[]^_{|}~\"'\\`"
_BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_TO_MARKS = str.maketrans(_BASE32, ALPHABET)
_FROM_MARKS = str.maketrans(ALPHABET, _BASE32)


def to_text(data: bytes) -> str:
    """``data`` as punctuation, eight marks for every five bytes (zero-padded at the end)."""
    padded = data + bytes(-len(data) % 5)
    return base64.b32encode(padded).decode("ascii").translate(_TO_MARKS)


def from_text(text: str, size: int) -> bytes:
    return base64.b32decode(text.translate(_FROM_MARKS))[:size]
