"""One way to talk to the PACS: a dicomweb-client over a requests session that retries.

Every request (QIDO, WADO, STOW) goes through ``Connection.client()``. Failures are retried
by urllib3 with exponential backoff: a refused or dropped connection, a timeout, and the
answers that say "try again" (408, 429, 5xx). What still fails after the retries raises, and
``describe`` turns it into one line naming the HTTP status, never the credentials.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from screen.dicomweb.address import Credentials, PacsAddress

logger = logging.getLogger(__name__)

RETRIES = 5
BACKOFF_SECONDS = 0.5  # urllib3 waits 0, 1, 2, 4, 8 s: a PACS restarting has ~15 s to return
BACKOFF_MAX_SECONDS = 10.0
RETRY_STATUSES = (408, 429, 500, 502, 503, 504)
CONNECT_TIMEOUT_SECONDS = 10.0
READ_TIMEOUT_SECONDS = 120.0
DEFAULT_MAX_CONNECTIONS = 4


class PacsError(OSError):
    """A request to the PACS failed after its retries; ``status`` is the HTTP status, if any."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class Connection:
    """How to reach one DICOMweb service; picklable, so workers can open their own."""

    address: PacsAddress
    credentials: Credentials | None = None
    verify: bool | Path = True  # TLS verification: on, or against this CA bundle
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    retries: int = RETRIES
    backoff_seconds: float = BACKOFF_SECONDS

    def __post_init__(self) -> None:
        if not isinstance(self.address, PacsAddress):
            raise TypeError(f"address must be a PacsAddress, got {type(self.address).__name__}")
        if isinstance(self.max_connections, bool) or not isinstance(self.max_connections, int) \
                or self.max_connections < 1:
            raise ValueError(f"max_connections must be a positive integer, got "
                             f"{self.max_connections!r}")
        if self.retries < 0 or self.backoff_seconds < 0:
            raise ValueError("retries and backoff must not be negative")
        if isinstance(self.verify, Path) and not self.verify.is_file():
            raise ValueError(f"the CA bundle {self.verify} is not a file")

    def client(self):
        """A DICOMwebClient whose session retries, verifies TLS and carries the credentials."""
        import requests
        from dicomweb_client.api import DICOMwebClient
        from requests.adapters import HTTPAdapter
        from urllib3.util.retry import Retry

        session = requests.Session()
        session.verify = str(self.verify) if isinstance(self.verify, Path) else self.verify
        if self.credentials is not None:
            session.auth = self.credentials.requests_auth()
        retry = Retry(total=self.retries, connect=self.retries, read=self.retries,
                      status=self.retries, status_forcelist=RETRY_STATUSES,
                      allowed_methods=None,  # GET and POST alike: a STOW of the same UIDs is idempotent
                      backoff_factor=self.backoff_seconds, backoff_max=BACKOFF_MAX_SECONDS,
                      raise_on_status=False, respect_retry_after_header=True)
        adapter = HTTPAdapter(max_retries=retry, pool_connections=1,
                              pool_maxsize=self.max_connections)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        client = DICOMwebClient(self.address.url, session=session,
                                timeout=(CONNECT_TIMEOUT_SECONDS, READ_TIMEOUT_SECONDS))
        client.set_http_retry_params(retry=False)  # urllib3 retries, once, for every request
        return client

    def check(self) -> None:
        """Fail with one line, before any work, when the PACS cannot be searched."""
        try:
            self.client().search_for_studies(limit=1, fields=["StudyInstanceUID"])
        except Exception as exc:  # noqa: BLE001 - every failure becomes the one line below
            raise PacsError(f"cannot search the PACS at {self.address}: {describe(exc)}",
                            status_of(exc)) from None


def status_of(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


def describe(exc: BaseException) -> str:
    """What went wrong, in one line with the HTTP status where there was one."""
    status = status_of(exc)
    if status == 401:
        return "HTTP 401 Unauthorized: the PACS refused the credentials (check --auth)"
    if status == 403:
        return "HTTP 403 Forbidden: these credentials may not read this PACS"
    if status is not None:
        reason = getattr(exc.response, "reason", "") or ""  # type: ignore[attr-defined]
        url = getattr(exc.response, "url", "")  # type: ignore[attr-defined]
        return f"HTTP {status} {reason} from {url}".strip()
    import requests

    if isinstance(exc, requests.exceptions.SSLError):
        return f"TLS verification failed ({_first_line(exc)})"
    if isinstance(exc, requests.Timeout):
        return f"no answer in time after {RETRIES} retries ({type(exc).__name__})"
    if isinstance(exc, requests.ConnectionError):
        return f"the PACS could not be reached after {RETRIES} retries ({_first_line(exc)})"
    return f"{type(exc).__name__}: {_first_line(exc)}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
