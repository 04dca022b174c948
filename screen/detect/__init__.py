"""Detection: preprocess a Volume for each network, run them, postprocess into a Detection."""

from screen.detect.detector import Analysis, Detector, analyse, detect
from screen.detect.preprocess import Grid, preprocess

__all__ = ["Analysis", "Detector", "Grid", "analyse", "detect", "preprocess"]
