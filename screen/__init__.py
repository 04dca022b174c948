"""screen: find pancreatic lesions nobody was looking for in an archive of abdominal CTs."""

# The one place the version is written: pyproject.toml reads it from here, so that start-up
# need not search the installed distributions for it (importlib.metadata costs ~50 ms).
__version__ = "0.1.0"

__all__ = ["__version__"]
