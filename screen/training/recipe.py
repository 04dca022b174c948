"""The training recipe: the two networks, patch sizes, steps, class weights and schedule."""

from __future__ import annotations

from screen.model.card import NetworkCard

LOCATE = NetworkCard(
    name="locate", onnx="locate.onnx", torch="locate.pt", widths=(6, 12, 24, 48),
    spacing_kji=(4.0, 4.0, 4.0), window_hu=(-160.0, 240.0), shape_multiple=8, crop="body",
)
SEGMENT = NetworkCard(
    name="segment", onnx="model.onnx", torch="model.pt", widths=(8, 16, 32, 64),
    spacing_kji=(1.5, 1.5, 1.5), window_hu=(-200.0, 200.0), shape_multiple=8, crop="pancreas",
    margin_mm=16.0, min_extent_mm=(48.0, 96.0, 96.0), max_extent_mm=(144.0, 192.0, 240.0),
    window_relative_to="gland",
)
TRAIN_CASES, VALIDATION_CASES = 160, 100
CONTINUE_LR = 1e-3  # peak learning rate when continuing a trained segmenter
LOCATE_PATCH = (32, 48, 48)
SEGMENT_PATCH = (32, 48, 48)
CLASS_WEIGHTS = (1.0, 1.0, 2.0)
BOX_JITTER_MM = 5.0  # how far the training boxes stray from the true pancreas, like the locator's
LOCATE_STEPS, SEGMENT_STEPS, BATCH = 1200, 8000, 2  # the defaults; the card's command names others
ARRIVAL_SHARE = 0.8  # the training phantoms have all joined the segmenter's set by this share of its steps
