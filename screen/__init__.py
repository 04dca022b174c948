"""screen: find pancreatic lesions nobody was looking for in an archive of abdominal CTs."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("screen")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"

__all__ = ["__version__"]
