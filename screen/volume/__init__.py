"""Series to HU volume: decode, orient, correct tilt and gaps, and check the content."""

from screen.volume.content import looks_abdominal
from screen.volume.errors import VolumeError
from screen.volume.load import load_volume

__all__ = ["VolumeError", "load_volume", "looks_abdominal"]
