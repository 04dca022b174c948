"""Synthetic abdominal CT: phantoms with known truth, and PACS-like archives built from them."""

from screen.synth.phantom import Phantom, PhantomSpec, render, render_region, sample_spec

__all__ = ["Phantom", "PhantomSpec", "render", "render_region", "sample_spec"]
