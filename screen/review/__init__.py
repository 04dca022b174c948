"""Review report: key images with outlines and a static, offline HTML worklist."""

from screen.detect.masks import Masks, lps_to_kji, volume_masks
from screen.file_names import page_key
from screen.review.pages import page_path, write_index
from screen.review.render import render_series

__all__ = ["Masks", "lps_to_kji", "page_key", "page_path", "render_series", "volume_masks", "write_index"]
