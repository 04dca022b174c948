"""Sweep a PACS over DICOMweb: QIDO-RS to search, WADO-RS to read, STOW-RS to send back.

The flow is the file sweep's: series metadata (no pixels) becomes the same instance records a
header read gives, so the same assembly, geometry checks, rules and inventory apply; only
the series the rules keep are retrieved, as stored, and decoded by the same decoders.
"""

from screen.dicomweb.address import Credentials, PacsAddress, is_pacs_address, parse_auth

__all__ = ["Credentials", "Filters", "PacsAddress", "PacsSource", "is_pacs_address",
           "parse_auth"]


def __getattr__(name: str):
    # The source pulls in the DICOMweb client and pydicom; telling a PACS address from a
    # folder, which every command does, must not.
    if name in ("Filters", "PacsSource"):
        from screen.dicomweb import source

        return getattr(source, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
