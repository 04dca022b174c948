"""Review report: slice stacks and key images with outlines, an offline HTML worklist, and
the reviewers' decisions."""

from screen.detect.masks import Masks, volume_masks
from screen.file_names import page_key
from screen.review.pages import page_path, write_index
from screen.review.render import render_series
from screen.review.viewer import ViewerLink

__all__ = ["Masks", "ViewerLink", "page_key", "page_path", "render_series", "volume_masks",
           "write_index"]
