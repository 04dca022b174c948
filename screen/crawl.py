"""Walk archive trees and yield every file once.

Archives are PACS exports: nested or flat folders, names with or without extensions, and
symbolic links, sometimes pointing back up the tree. Each real folder is entered once, however
many links lead to it, so a loop cannot trap the crawl and no file is counted twice through
two routes. Folders and links that cannot be followed are reported, never silently dropped.
Memory stays flat: only folders are remembered, not files.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from screen.records import FileError, Stage

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Found:
    """A file to read; ``path`` is the route the crawl found it by."""

    path: str


def crawl(roots: Sequence[str | Path]) -> Iterator[Found | FileError]:
    """Every file under ``roots`` once, in a stable order, plus the places that could not be read.

    A root may be a single file. Files reached through a link to a file are yielded under the
    link's path unless the target was already reached by another route.
    """
    seen_dirs: set[tuple[int, int]] = set()
    seen_linked_files: set[tuple[int, int]] = set()
    real_roots = tuple(os.path.realpath(os.fspath(r)) for r in roots)
    for root in roots:
        root_path = os.path.abspath(os.fspath(root))
        try:
            st = os.stat(root_path)
        except OSError as exc:
            yield FileError(root_path, Stage.CRAWL, f"archive path cannot be opened: {exc.strerror}")
            continue
        if not os.path.isdir(root_path):
            key = (st.st_dev, st.st_ino)
            if key not in seen_linked_files:
                seen_linked_files.add(key)
                yield Found(root_path)
            continue
        yield from _walk(root_path, seen_dirs, seen_linked_files, real_roots)


def _walk(
    top: str,
    seen_dirs: set[tuple[int, int]],
    seen_linked_files: set[tuple[int, int]],
    real_roots: tuple[str, ...],
) -> Iterator[Found | FileError]:
    stack = [top]
    while stack:
        folder = stack.pop()
        try:
            st = os.stat(folder)
        except OSError as exc:
            yield FileError(folder, Stage.CRAWL, f"folder cannot be opened: {exc.strerror}")
            continue
        key = (st.st_dev, st.st_ino)
        if key in seen_dirs:
            logger.debug("already crawled %s by another route", folder)
            continue
        seen_dirs.add(key)
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            yield FileError(folder, Stage.CRAWL, f"folder cannot be listed: {exc.strerror}")
            continue
        subfolders = []
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=True):
                    subfolders.append(entry.path)
                elif entry.is_file(follow_symlinks=True):
                    if entry.is_symlink():
                        if _inside(os.path.realpath(entry.path), real_roots):
                            continue  # reached directly, under its own name
                        target = os.stat(entry.path)
                        target_key = (target.st_dev, target.st_ino)
                        if target_key in seen_linked_files:
                            continue
                        seen_linked_files.add(target_key)
                    yield Found(entry.path)
                elif entry.is_symlink():
                    yield FileError(entry.path, Stage.CRAWL,
                                    "broken symbolic link: its target does not exist")
                else:
                    yield FileError(entry.path, Stage.CRAWL,
                                    "not a regular file (device, socket or pipe)")
            except OSError as exc:
                yield FileError(entry.path, Stage.CRAWL, f"cannot be inspected: {exc.strerror}")
        # Depth first, in name order: pop from the end, so push in reverse.
        stack.extend(reversed(subfolders))


def _inside(path: str, roots: tuple[str, ...]) -> bool:
    return any(path == r or path.startswith(r.rstrip(os.sep) + os.sep) for r in roots)
