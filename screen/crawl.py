"""Walk archive trees and yield every file once.

Archives are PACS exports: nested or flat folders, names with or without extensions, and
symbolic links, sometimes pointing back up the tree. Each real folder is entered once, however
many links lead to it, so a loop cannot trap the crawl and no file is counted twice through
two routes. Links that lead out of the archive (to ``/etc``, say) are reported and not
followed unless ``follow_links`` says so. Folders and links that cannot be followed are
reported, never silently dropped. Memory stays flat: only folders are remembered, not files.

Names are taken as the file system gives them: bytes that are not UTF-8 (Latin-1 folders of
old exports) stay in the path as Python's surrogate escapes, so every file can be opened
again; ``screen.paths`` says how they are written into tables.
"""

from __future__ import annotations

import errno
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


OUT_OF_ARCHIVE = ("symbolic link to a place outside the archive, not followed "
                  "(--follow-links follows it)")
SPECIAL_FILE = "not a regular file (device, socket or pipe), not read"
LINK_LOOP = "symbolic link loop: the link leads back to itself"
LINK_TO_SPECIAL = "symbolic link to a special file (device, socket or pipe), not read"


def crawl(roots: Sequence[str | Path], *, follow_links: bool = False
          ) -> Iterator[Found | FileError]:
    """Every file under ``roots`` once, in a stable order, plus the places that could not be read.

    A root may be a single file. Files reached through a link to a file are yielded under the
    link's path unless the target was already reached by another route. A link whose target
    lies outside every root is reported, not followed, unless ``follow_links``.
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
        yield from _walk(root_path, seen_dirs, seen_linked_files,
                         None if follow_links else real_roots, real_roots)


def _walk(
    top: str,
    seen_dirs: set[tuple[int, int]],
    seen_linked_files: set[tuple[int, int]],
    confine_to: tuple[str, ...] | None,
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
        outside = not _inside(os.path.realpath(folder), real_roots)  # entered by a link
        for entry in entries:
            try:
                is_dir = entry.is_dir(follow_symlinks=True)
                is_file = not is_dir and entry.is_file(follow_symlinks=True)
                if entry.is_symlink() and (is_dir or is_file) and confine_to is not None \
                        and not _inside(os.path.realpath(entry.path), confine_to):
                    yield FileError(entry.path, Stage.CRAWL, OUT_OF_ARCHIVE)
                elif is_dir:
                    subfolders.append(entry.path)
                elif is_file:
                    if entry.is_symlink() or outside:
                        if not outside and _inside(os.path.realpath(entry.path), real_roots):
                            continue  # reached directly, under its own name
                        # Outside the archive a file may be reached by several routes.
                        target = os.stat(entry.path)
                        target_key = (target.st_dev, target.st_ino)
                        if target_key in seen_linked_files:
                            continue
                        seen_linked_files.add(target_key)
                    yield Found(entry.path)
                elif entry.is_symlink():
                    yield FileError(entry.path, Stage.CRAWL, _unusable_link(entry.path))
                else:
                    yield FileError(entry.path, Stage.CRAWL, SPECIAL_FILE)
            except OSError as exc:
                yield FileError(entry.path, Stage.CRAWL, LINK_LOOP if exc.errno == errno.ELOOP
                                else f"cannot be inspected: {exc.strerror}")
        # Depth first, in name order: pop from the end, so push in reverse.
        stack.extend(reversed(subfolders))


def _unusable_link(path: str) -> str:
    """Why a symbolic link that leads to neither a folder nor a file cannot be read."""
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return LINK_LOOP
        return "broken symbolic link: its target does not exist"
    return LINK_TO_SPECIAL


def _inside(path: str, roots: tuple[str, ...]) -> bool:
    return any(path == r or path.startswith(r.rstrip(os.sep) + os.sep) for r in roots)
