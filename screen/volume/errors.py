"""The one error a series can fail to load with, worded for the worklist's error column."""

from __future__ import annotations


class VolumeError(ValueError):
    """A series whose pixels cannot become one trustworthy HU volume, and why."""
