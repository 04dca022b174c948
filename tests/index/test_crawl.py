from __future__ import annotations

import os
from pathlib import Path

from screen.crawl import LINK_TO_SPECIAL, OUT_OF_ARCHIVE, SPECIAL_FILE, Found, crawl
from screen.records import FileError


def _tree(root: Path) -> None:
    (root / "a" / "b").mkdir(parents=True)
    (root / "flat").mkdir()
    (root / "a" / "one").write_bytes(b"1")
    (root / "a" / "b" / "two.dcm").write_bytes(b"2")
    (root / "flat" / "IM0001").write_bytes(b"3")


def test_every_file_once_in_a_stable_order(tmp_path: Path) -> None:
    _tree(tmp_path)
    found = [f.path for f in crawl([tmp_path]) if isinstance(f, Found)]
    rel = [os.path.relpath(p, tmp_path) for p in found]
    # A folder's files come before its subfolders, all in name order.
    assert rel == ["a/one", "a/b/two.dcm", "flat/IM0001"]


def test_link_loops_and_second_routes_are_followed_once(tmp_path: Path) -> None:
    _tree(tmp_path)
    (tmp_path / "a" / "b" / "up").symlink_to(tmp_path / "a")  # a loop
    (tmp_path / "again").symlink_to(tmp_path / "flat")  # a second route to a folder
    (tmp_path / "flat" / "alias").symlink_to(tmp_path / "a" / "one")  # a second name
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.mkdir()
    (outside / "external.dcm").write_bytes(b"x")
    (tmp_path / "ext").symlink_to(outside)
    (tmp_path / "ext.dcm").symlink_to(outside / "external.dcm")
    results = list(crawl([tmp_path]))
    real = [os.path.realpath(f.path) for f in results if isinstance(f, Found)]
    assert len(real) == len(set(real)) == 3
    # Links out of the archive are reported, not followed, unless asked for.
    errors = {os.path.basename(e.path): e.error for e in results if isinstance(e, FileError)}
    assert errors == {"ext": OUT_OF_ARCHIVE, "ext.dcm": OUT_OF_ARCHIVE}
    followed = [os.path.realpath(f.path) for f in crawl([tmp_path], follow_links=True)
                if isinstance(f, Found)]
    assert len(followed) == len(set(followed)) == 4
    assert str((outside / "external.dcm").resolve()) in followed


def test_links_to_special_files_and_loops_say_what_they_are(tmp_path: Path) -> None:
    _tree(tmp_path)
    (tmp_path / "zero").symlink_to("/dev/zero")
    (tmp_path / "self").symlink_to(tmp_path / "self")
    os.mkfifo(tmp_path / "pipe")
    for follow in (False, True):
        errors = {os.path.basename(e.path): e.error for e in crawl([tmp_path], follow_links=follow)
                  if isinstance(e, FileError)}
        assert errors == {"zero": LINK_TO_SPECIAL, "pipe": SPECIAL_FILE,
                          "self": "symbolic link loop: the link leads back to itself"}


def test_names_that_are_not_utf8_are_kept_exactly(tmp_path: Path) -> None:
    folder = os.fsencode(tmp_path) + b"/M\xfcller"
    os.mkdir(folder)
    with open(folder + b"/IM\xe91", "wb") as f:
        f.write(b"x")
    [found] = [f.path for f in crawl([tmp_path]) if isinstance(f, Found)]
    assert os.fsencode(found) == folder + b"/IM\xe91"
    with open(found, "rb") as f:  # the path opens the file it names
        assert f.read() == b"x"


def test_broken_links_and_missing_roots_are_reported(tmp_path: Path) -> None:
    _tree(tmp_path)
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    results = list(crawl([tmp_path, tmp_path / "absent"]))
    errors = {os.path.basename(e.path): e.error for e in results if isinstance(e, FileError)}
    assert errors["dangling"].startswith("broken symbolic link")
    assert errors["absent"].startswith("archive path cannot be opened")


def test_unlistable_folder_is_reported(tmp_path: Path) -> None:
    _tree(tmp_path)
    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "hidden").write_bytes(b"h")
    locked.chmod(0)
    try:
        if os.access(locked, os.R_OK):
            # Running as root: permissions do not stop us; the folder is simply read.
            assert any(f.path.endswith("hidden") for f in crawl([tmp_path]) if isinstance(f, Found))
        else:
            errors = [e for e in crawl([tmp_path]) if isinstance(e, FileError)]
            assert [e.error for e in errors if e.path == str(locked)]
    finally:
        locked.chmod(0o755)


def test_a_single_file_root(tmp_path: Path) -> None:
    _tree(tmp_path)
    only = tmp_path / "a" / "one"
    assert [f.path for f in crawl([only])] == [str(only)]
