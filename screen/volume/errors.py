"""The one error a series can fail to load with, worded for the worklist's error column."""

from __future__ import annotations


class VolumeError(ValueError):
    """A series whose pixels cannot become one trustworthy HU volume, and why."""


class DamagedPixels(VolumeError):
    """One file's pixel data is truncated or corrupt; the rest of the series may be sound."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(message)
        self.path = path
