"""Sweep a PACS over DICOMweb: QIDO-RS to search, WADO-RS to read, STOW-RS to send back.

The flow is the file sweep's: series metadata (no pixels) becomes the same instance records a
header read gives, so the same assembly, geometry checks, rules and inventory apply; only
the series the rules keep are retrieved, as stored, and decoded by the same decoders.
"""

from screen.dicomweb.address import Credentials, PacsAddress, is_pacs_address, parse_auth
from screen.dicomweb.source import Filters, PacsSource

__all__ = ["Credentials", "Filters", "PacsAddress", "PacsSource", "is_pacs_address",
           "parse_auth"]
