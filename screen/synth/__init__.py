"""Synthetic abdominal CT: phantoms with known truth, and PACS-like archives built from them."""

from screen.synth.archive import ArchiveSummary, write_archive
from screen.synth.phantom import Phantom, PhantomSpec, render, render_region, sample_spec

__all__ = [
    "ArchiveSummary", "Phantom", "PhantomSpec", "render", "render_region", "sample_spec",
    "write_archive",
]
