"""Key images of one series: an axial and a coronal slice in a soft-tissue window, with the
pancreas outlined and the lesion contoured in colour.

Only anatomy and outlines go into the pixels. Score, location and size are written on the
review page as text, so an image copied out of the report cannot be mistaken for a finding
and the numbers are never misread from a rendering.

The volume is in canonical L-P-S voxel order (i towards the patient's left, j towards the
back, k towards the head), so ``hu[k]`` shown as is already follows the radiological
convention (the patient's left on the viewer's right, anterior at the top); a coronal slice
``hu[:, j, :]`` is turned upside down to put the head at the top.
"""

from __future__ import annotations

import io
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from screen.atomic import write_bytes_atomic
from screen.detect.masks import Masks
from screen.records import Detection, Volume

logger = logging.getLogger(__name__)

PANCREAS_RGB = (0, 210, 255)  # cyan outline of the gland
LESION_RGB = (255, 40, 40)  # red contour of the lesion
MIN_WIDTH_PX = 384  # small matrices are enlarged to at least this width, for legibility
THUMB_WIDTH_PX = 128


@dataclass(frozen=True, slots=True)
class Window:
    """A display window in Hounsfield units."""

    centre: float
    width: float

    def __post_init__(self) -> None:
        if not self.width > 0:
            raise ValueError(f"window width must be positive, got {self.width}")

    def apply(self, hu: np.ndarray) -> np.ndarray:
        low = self.centre - self.width / 2.0
        scaled = (np.asarray(hu, dtype=np.float32) - low) * (255.0 / self.width)
        return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


SOFT_TISSUE = Window(centre=40.0, width=400.0)


def key_point(volume: Volume, detection: Detection, masks: Masks) -> np.ndarray:
    """Voxel (k, j, i) the key images pass through: the lesion centre, else the pancreas
    centre, else the middle of the volume; always inside the volume."""
    shape = np.asarray(volume.hu.shape)
    if detection.lesion_center_lps is not None:
        point = volume.from_lps(detection.lesion_center_lps)
        if detection.key_slice is not None:
            point[0] = detection.key_slice  # the slice the worklist names for the viewer
    elif masks.pancreas.any():
        point = np.argwhere(masks.pancreas).mean(axis=0)
    else:
        point = (shape - 1) / 2.0
    return np.clip(np.rint(point), 0, shape - 1).astype(int)


def axial_image(volume: Volume, masks: Masks, k: int, window: Window = SOFT_TISSUE) -> Image.Image:
    _, sj, si = volume.spacing
    return _compose(volume.hu[k], masks.pancreas[k], masks.lesion[k], (sj, si), window)


def coronal_image(volume: Volume, masks: Masks, j: int, window: Window = SOFT_TISSUE) -> Image.Image:
    sk, _, si = volume.spacing
    # k runs towards the head: flip so the head is at the top of the picture.
    return _compose(volume.hu[::-1, j, :], masks.pancreas[::-1, j, :], masks.lesion[::-1, j, :],
                    (sk, si), window)


def _compose(hu: np.ndarray, pancreas: np.ndarray, lesion: np.ndarray,
             pixel_mm: tuple[float, float], window: Window) -> Image.Image:
    """Grey image of ``hu`` at square pixels with the outlines drawn over it."""
    rows, cols = hu.shape
    row_mm, col_mm = pixel_mm
    square = min(row_mm, col_mm)
    height, width = rows * row_mm / square, cols * col_mm / square
    scale = max(1, math.ceil(MIN_WIDTH_PX / width))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))  # PIL: (width, height)
    grey = Image.fromarray(window.apply(hu)).resize(size, Image.Resampling.BILINEAR)
    rgb = np.stack([np.asarray(grey)] * 3, axis=-1)
    for mask, colour, thickness in ((pancreas, PANCREAS_RGB, 1), (lesion, LESION_RGB, 2)):
        if not mask.any():
            continue
        big = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255)
                         .resize(size, Image.Resampling.NEAREST)) > 0
        edge = big & ~ndimage.binary_erosion(big, border_value=0)
        if thickness > 1:
            edge = ndimage.binary_dilation(edge, iterations=thickness - 1)
        rgb[edge] = colour
    return Image.fromarray(rgb)


def thumbnail(image: Image.Image, width: int = THUMB_WIDTH_PX) -> Image.Image:
    height = max(1, round(image.height * width / image.width))
    return image.resize((width, height), Image.Resampling.LANCZOS)


def save_png(image: Image.Image, path: Path) -> Path:
    sink = io.BytesIO()
    image.save(sink, format="PNG", optimize=True)
    return write_bytes_atomic(path, sink.getvalue())
