"""Header indexing speed: `screen index` against a bare pydicom loop over the same files.

    python -m bench.index_bench [--files 20000]

Generates (once, cached under out/bench/archive-N) a synthetic archive with vendor private
groups of realistic size, then measures on a warm page cache:
  - the I/O floor: reading the first 8 KiB of every file;
  - a bare `pydicom.dcmread(path, stop_before_pixels=True)` loop, one process;
  - screen's header reader, one process, then 1 and 2 worker processes for the whole index;
  - peak memory of `screen index` on half the files and on all of them (flat is the goal).
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

import pydicom

from bench.common import RESULTS, child_output, save, timed
from screen.crawl import Found, crawl
from screen.headers import read_instance
from screen.index import index


def archive_of(files: int) -> Path:
    """A synthetic archive of at least ``files`` files, generated once and kept."""
    from screen.synth.archive import write_archive

    root = RESULTS / f"archive-{files}"
    if not (root / ".complete").exists():
        shutil.rmtree(root, ignore_errors=True)
        probe = RESULTS / "archive-probe"
        shutil.rmtree(probe, ignore_errors=True)
        write_archive(probe, 2, seed=1, matrix=64)
        per_case = sum(len(f) for _, _, f in os.walk(probe / "archive")) / 2
        shutil.rmtree(probe)
        # Cases vary in size; aim a little high so the archive holds at least ``files``.
        write_archive(root, int(1.3 * files / per_case) + 1, seed=1, matrix=64)
        (root / ".complete").write_text("")
    return root / "archive"


def paths_in(root: Path) -> list[str]:
    return [f.path for f in crawl([root]) if isinstance(f, Found)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=20000)
    files = parser.parse_args().files
    root = archive_of(files)
    paths = paths_in(root)
    n = len(paths)

    def floor() -> None:
        for p in paths:
            with open(p, "rb") as f:
                f.read(8192)

    def bare() -> None:
        for p in paths:
            try:
                pydicom.dcmread(p, stop_before_pixels=True)
            except Exception:  # noqa: BLE001 - junk files fail in both loops alike
                pass

    def ours() -> None:
        for p in paths:
            read_instance(p)

    floor()  # warm the page cache so every loop reads from memory
    _, t_floor = timed(floor)
    _, t_bare = timed(bare)
    _, t_ours = timed(ours)
    _, t_index1 = timed(lambda: index([root], workers=1))
    _, t_index2 = timed(lambda: index([root], workers=2))

    tops = sorted(str(p) for p in root.iterdir() if p.is_dir())
    half = tops[: len(tops) // 2]
    # The client's own peak (its worker processes hold one chunk each at a time).
    code = ("import resource; from screen.index import index; r = index({roots!r}, workers=2); "
            "print(r.files_found, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)")
    out_half = child_output(code.format(roots=half)).split()
    out_all = child_output(code.format(roots=[str(root)])).split()
    save("index", {
        "files": n,
        "io_floor_files_per_s": round(n / t_floor),
        "bare_dcmread_files_per_s": round(n / t_bare),
        "screen_header_reader_files_per_s": round(n / t_ours),
        "reader_speedup_vs_bare": round(t_bare / t_ours, 2),
        "screen_index_1_worker_files_per_s": round(n / t_index1),
        "screen_index_2_workers_files_per_s": round(n / t_index2),
        "speedup_1_to_2_workers": round(t_index1 / t_index2, 2),
        "client_peak_rss_mib": {f"{out_half[0]} files": round(float(out_half[1])),
                                f"{out_all[0]} files": round(float(out_all[1]))},
    })


if __name__ == "__main__":
    main()
