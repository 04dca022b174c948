from __future__ import annotations

import os
from pathlib import Path

from screen.crawl import Found, crawl
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
    found = [f.path for f in crawl([tmp_path]) if isinstance(f, Found)]
    real = [os.path.realpath(p) for p in found]
    assert len(real) == len(set(real)) == 4
    assert str((outside / "external.dcm").resolve()) in real


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
