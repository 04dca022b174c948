"""Where a sweep may write: never inside an archive it reads, and one sweep at a time.

Outputs under an archive root would be written into the archive, and the next sweep would
crawl its own SR and SEG; they are refused before any work. A lock file beside the worklist
(``<out>.lock``, holding the pid and host of the sweep that holds it) keeps a second sweep off
the same ``--out`` while the first runs: two of them would clear and compact each other's part
files. The lock is an ``flock`` on that file, so the kernel releases it when its process ends,
however it ends; a lock file left by a sweep that was killed is stale, and taken over.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

logger = logging.getLogger(__name__)


def refuse_inside_archives(roots: Sequence[Path], outputs: Mapping[str, Path | None]) -> None:
    """ValueError, in one line, for the first output (named by its option) that lies inside an
    archive root or is one, symbolic links resolved on both sides."""
    resolved_roots = [Path(r).resolve() for r in roots]
    for option, path in outputs.items():
        if path is None:
            continue
        target = Path(path).resolve()
        for root, given in zip(resolved_roots, roots):
            if target == root or (root.is_dir() and target.is_relative_to(root)):
                raise ValueError(f"{option} {path} is inside the archive {given}; "
                                 "write outputs outside the archive")


@dataclass(frozen=True, slots=True)
class Holder:
    """Who holds a lock: written into the lock file, read back to say who is in the way."""

    pid: int
    host: str
    since: str

    @classmethod
    def me(cls) -> Holder:
        return cls(os.getpid(), socket.gethostname(),
                   datetime.now(UTC).isoformat(timespec="seconds"))

    @classmethod
    def parse(cls, text: str) -> Holder | None:
        try:
            data = json.loads(text)
            return cls(int(data["pid"]), str(data["host"]), str(data["since"]))
        except (ValueError, KeyError, TypeError):
            return None

    def __str__(self) -> str:
        return f"pid {self.pid} on {self.host}, since {self.since}"


class LockedError(OSError):
    """Another sweep holds the lock on this output."""


class OutputLock:
    """An exclusive lock on one ``--out`` for as long as the ``with`` block runs."""

    def __init__(self, out: Path) -> None:
        self.path = Path(out).with_name(Path(out).name + ".lock")
        self._fd: int | None = None
        self.stale: Holder | None = None  # who left the lock file this sweep took over

    def __enter__(self) -> OutputLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = Holder.parse(_read(fd))
                os.close(fd)
                who = f" ({holder})" if holder else ""
                raise LockedError(f"{self.path.with_suffix('')} is in use by another sweep"
                                  f"{who}; wait for it to finish") from None
            # The holder before us may have removed the file between our open and our lock:
            # then we hold a lock on a file nobody else will see, and must start again.
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        self.stale = Holder.parse(_read(fd))
        if self.stale is not None:
            logger.info("taking over the lock on %s left by %s, which is no longer running",
                     self.path, self.stale)
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(_as_dict(Holder.me())).encode(), 0)
        os.fsync(fd)
        self._fd = fd
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)  # while still held: nobody else is in between
        finally:
            os.close(self._fd)  # releases the flock
            self._fd = None


def _as_dict(holder: Holder) -> dict[str, object]:
    return {"pid": holder.pid, "host": holder.host, "since": holder.since}


def _read(fd: int) -> str:
    try:
        return os.pread(fd, 4096, 0).decode(errors="replace")
    except OSError:
        return ""
