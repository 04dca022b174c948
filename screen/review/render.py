"""One series' review: masks on the volume, key images, thumbnail, slice stack and page, in
that order."""

from __future__ import annotations

import logging
from pathlib import Path

from screen.detect.detector import Analysis
from screen.detect.masks import volume_masks
from screen.records import Series, Volume
from screen.review.images import axial_image, coronal_image, key_point, save_png, thumbnail
from screen.review.pages import image_paths, write_series_page
from screen.review.stack import build_stack, save_stack
from screen.worklist_row import WorklistRow

logger = logging.getLogger(__name__)


def render_series(out_dir: Path, series: Series, volume: Volume, analysis: Analysis,
                  row: WorklistRow) -> Path:
    """Key images and the page ``series/<key>.html`` for one series under ``out_dir``.

    ``row`` is the series' worklist row (pseudonymised already, where the sweep is): its
    values are what the page shows. Returns the page's path.
    """
    if not isinstance(series, Series):
        raise TypeError(f"render_series needs a Series, got {type(series).__name__}")
    if not isinstance(volume, Volume):
        raise TypeError(f"render_series needs a Volume, got {type(volume).__name__}")
    if not isinstance(analysis, Analysis):
        raise TypeError(f"render_series needs an Analysis, got {type(analysis).__name__}")
    if not isinstance(row, WorklistRow):
        raise TypeError(f"render_series needs a WorklistRow, got {type(row).__name__}")
    if row.series_key != series.key:
        raise ValueError(f"row is for series {row.series_key!r}, not {series.key!r}")
    masks = volume_masks(volume, analysis)
    k, j, _ = key_point(volume, analysis.detection, masks)
    paths = image_paths(out_dir, series.key)
    axial = axial_image(volume, masks, int(k))
    save_png(axial, paths["axial"])
    save_png(coronal_image(volume, masks, int(j)), paths["coronal"])
    save_png(thumbnail(axial), paths["thumb"])
    save_stack(build_stack(volume, masks, analysis, int(k)), paths["stack"])
    page = write_series_page(out_dir, row)
    logger.debug("review page for %s at slice k=%d, row j=%d", series.key, k, j)
    return page
