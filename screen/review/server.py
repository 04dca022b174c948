"""`screen review DIR`: the report served on this machine, so reviewers can record decisions.

It listens on 127.0.0.1 only, and every address carries a random token
(``http://127.0.0.1:PORT/TOKEN/index.html``): a request without it is refused, so neither
another account on the machine nor a web page open in the reviewer's browser can read the
report or write a decision without being given the address. It serves the files of the
report folder as they are, and takes one kind of write: ``POST /TOKEN/decision`` with
``{"series_key", "decision", "note"}``, recorded at once (see :mod:`screen.review.decisions`).
"""

from __future__ import annotations

import hmac
import json
import logging
import mimetypes
import secrets
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

from screen.review import decisions
from screen.review.pages import INDEX, page_path

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"
MAX_BODY = 64 * 1024  # bytes of a decision request: a note, not an upload


class ReviewServer:
    """The report in ``folder`` served on 127.0.0.1; decisions are recorded as ``reviewer``."""

    def __init__(self, folder: Path, reviewer: str, *, port: int = 0, token: str | None = None) -> None:
        folder = Path(folder)
        if not (folder / INDEX).is_file():
            raise ValueError(f"{folder} is not a review report: it has no {INDEX}")
        if not isinstance(reviewer, str) or not reviewer.strip():
            raise ValueError(f"a reviewer name is needed, got {reviewer!r}")
        if not 0 <= port <= 65535:
            raise ValueError(f"port must be between 0 and 65535, got {port}")
        self.folder = folder.resolve()
        self.reviewer = reviewer.strip()
        self.token = token or secrets.token_urlsafe(24)
        decisions.compact(self.folder)  # gather any part a crash left ungathered
        self._httpd = ThreadingHTTPServer((HOST, port), _handler(self))
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/{self.token}/{INDEX}"

    def serve_forever(self) -> None:
        self._httpd.serve_forever()

    def start(self) -> ReviewServer:
        """Serve in a background thread (for embedding and tests)."""
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True,
                                        name="screen-review")
        self._thread.start()
        return self

    def close(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> ReviewServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def record(self, body: bytes) -> decisions.ReviewDecision:
        """The decision a page posted, recorded; ValueError for anything else."""
        try:
            data = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise ValueError("a decision must be sent as JSON") from None
        if not isinstance(data, dict) or not isinstance(data.get("series_key"), str):
            raise ValueError("a decision needs a series_key")
        key = data["series_key"]
        if not page_path(self.folder, key).is_file():
            raise ValueError(f"series {key!r} is not in this report")
        decision = decisions.ReviewDecision.now(self.reviewer, key, str(data.get("decision")),
                                          str(data.get("note") or ""))
        decisions.record(self.folder, decision)
        logger.info("%s: %s on %s", decision.reviewer, decision.decision.value, key)
        return decision


def _handler(server: ReviewServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "screen-review"

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base's name
            logger.debug("%s %s", self.address_string(), format % args)

        def _inside(self) -> str | None:
            """The path after a valid token, or None (and a 403 sent)."""
            parts = urlsplit(self.path).path.split("/", 2)
            if len(parts) < 2 or not hmac.compare_digest(parts[1].encode(), server.token.encode()):
                self._reply(HTTPStatus.FORBIDDEN, b"forbidden\n", "text/plain; charset=utf-8")
                return None
            return unquote(parts[2] if len(parts) > 2 else "")

        def _reply(self, status: HTTPStatus, body: bytes, kind: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 - the base's name
            inside = self._inside()
            if inside is None:
                return
            target = (server.folder / (inside or INDEX)).resolve()
            if not target.is_relative_to(server.folder) or not target.is_file() or \
                    any(part.startswith(".") for part in target.relative_to(server.folder).parts):
                self._reply(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain; charset=utf-8")
                return
            kind = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
            if kind.startswith("text/") or kind.endswith("javascript"):
                kind += "; charset=utf-8"
            self._reply(HTTPStatus.OK, target.read_bytes(), kind)

        do_HEAD = do_GET

        def do_POST(self) -> None:  # noqa: N802 - the base's name
            inside = self._inside()
            if inside is None:
                return
            if inside != "decision":
                self._reply(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain; charset=utf-8")
                return
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                length = -1
            if not 0 < length <= MAX_BODY:
                self._reply(HTTPStatus.BAD_REQUEST, b"a decision is a small JSON body\n",
                            "text/plain; charset=utf-8")
                return
            try:
                decision = server.record(self.rfile.read(length))
            except ValueError as exc:
                self._reply(HTTPStatus.BAD_REQUEST, f"{exc}\n".encode(), "text/plain; charset=utf-8")
                return
            except OSError as exc:
                logger.error("could not record a decision: %s", exc)
                self._reply(HTTPStatus.INTERNAL_SERVER_ERROR, b"could not record the decision\n",
                            "text/plain; charset=utf-8")
                return
            self._reply(HTTPStatus.OK, json.dumps(decision.as_json()).encode(),
                        "application/json")

    return Handler
