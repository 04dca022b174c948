"""Where the PACS is and how to log in, parsed once and checked when built.

A secret is read from a file, never taken from the command line, and never shown: a
Credentials' repr names the user and the file, not what the file holds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

SCHEME_PREFIX = "dicomweb+"


def is_pacs_address(text: str) -> bool:
    return str(text).startswith(SCHEME_PREFIX)


@dataclass(frozen=True, slots=True)
class PacsAddress:
    """A DICOMweb service root, e.g. ``https://pacs.example.org/dicom-web``."""

    url: str

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"a DICOMweb address is dicomweb+http(s)://HOST/PATH, got "
                             f"{SCHEME_PREFIX}{self.url!r}")
        if parts.username or parts.password:
            raise ValueError("give credentials with --auth, never inside the address")
        if parts.query or parts.fragment:
            raise ValueError(f"a DICOMweb address has no query or fragment: {self.url!r}")

    @classmethod
    def parse(cls, text: str) -> PacsAddress:
        if not is_pacs_address(text):
            raise ValueError(f"a DICOMweb address starts with {SCHEME_PREFIX}, got {text!r}")
        return cls(str(text)[len(SCHEME_PREFIX):].rstrip("/"))

    def __str__(self) -> str:
        return SCHEME_PREFIX + self.url

    def study(self, study_uid: str) -> str:
        return f"{self.url}/studies/{study_uid}"

    def series(self, study_uid: str, series_uid: str) -> str:
        return f"{self.study(study_uid)}/series/{series_uid}"

    def instance(self, study_uid: str, series_uid: str, sop_uid: str) -> str:
        """The instance's WADO-RS URL: what the inventory and errors name it by."""
        return f"{self.series(study_uid, series_uid)}/instances/{sop_uid}"


@dataclass(frozen=True, slots=True)
class Credentials:
    """HTTP basic (user and password) or a bearer token, the secret read from a file."""

    kind: str  # "basic" or "token"
    source: Path  # the file the secret came from, for messages
    user: str = ""
    secret: str = field(default="", repr=False)

    def __post_init__(self) -> None:
        if self.kind not in ("basic", "token"):
            raise ValueError(f"credentials are basic or token, got {self.kind!r}")
        if self.kind == "basic" and not self.user:
            raise ValueError("basic credentials need a user name")
        if not self.secret:
            raise ValueError(f"the secret file {self.source} is empty")

    def requests_auth(self):
        from requests.auth import HTTPBasicAuth

        if self.kind == "basic":
            return HTTPBasicAuth(self.user, self.secret)
        return _Bearer(self.secret)


def parse_auth(text: str) -> Credentials:
    """``basic:USER:PASSWORD-FILE`` or ``token:TOKEN-FILE``; the file holds the secret alone."""
    kind, _, rest = str(text).partition(":")
    if kind == "basic":
        user, sep, file = rest.partition(":")
        if not sep or not user or not file:
            raise ValueError("--auth basic needs basic:USER:PASSWORD-FILE")
    elif kind == "token":
        user, file = "", rest
        if not file:
            raise ValueError("--auth token needs token:TOKEN-FILE")
    else:
        raise ValueError(f"--auth is basic:USER:PASSWORD-FILE or token:TOKEN-FILE, not {kind!r}"
                         " (a password never goes on the command line)")
    path = Path(file)
    try:
        secret = path.read_text().strip("\r\n")
    except OSError as exc:
        raise ValueError(f"cannot read the secret file {path}: {exc.strerror or exc}") from None
    return Credentials(kind, path, user, secret)


class _Bearer:
    """``Authorization: Bearer TOKEN`` on each request (requests' own AuthBase protocol)."""

    def __init__(self, token: str) -> None:
        self._token = token

    def __call__(self, request):
        request.headers["Authorization"] = f"Bearer {self._token}"
        return request

    def __repr__(self) -> str:
        return "Bearer(<hidden>)"


@dataclass(frozen=True, slots=True)
class DimseAddress:
    """A DICOM node to C-STORE to: ``dimse://AET@HOST:PORT``."""

    ae_title: str
    host: str
    port: int

    def __post_init__(self) -> None:
        if not 1 <= len(self.ae_title) <= 16:
            raise ValueError(f"an AE title has 1 to 16 characters, got {self.ae_title!r}")
        if not self.host:
            raise ValueError("a DICOM node needs a host")
        if not 0 < self.port < 65536:
            raise ValueError(f"a port is 1..65535, got {self.port}")

    @classmethod
    def parse(cls, text: str) -> DimseAddress:
        parts = urlsplit(str(text))
        if parts.scheme != "dimse" or not parts.username or not parts.hostname:
            raise ValueError(f"a DICOM node is dimse://AET@HOST:PORT, got {text!r}")
        try:
            port = parts.port or 104
        except ValueError:
            raise ValueError(f"a DICOM node is dimse://AET@HOST:PORT, got {text!r}") from None
        return cls(parts.username, parts.hostname, port)

    def __str__(self) -> str:
        return f"dimse://{self.ae_title}@{self.host}:{self.port}"
