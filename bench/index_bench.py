"""Header indexing speed: `screen index` against a bare pydicom loop over the same files.

    python -m bench.index_bench [--files 20000] [--only startup|in-scan]

(`--only in-scan` measures on the projection archive below, of --files files; `--only
projection` measures only that archive, of --projection-files files.)

Generates (once, cached under out/bench/archive-N) a synthetic archive with vendor private
groups of realistic size, then measures on a warm page cache:
  - the I/O floor: reading the first 8 KiB of every file;
  - a bare `pydicom.dcmread(path, stop_before_pixels=True)` loop, one process;
  - screen's header reader, one process, then 1 and 2 worker processes for the whole index;
  - the peak memory (VmHWM) of a process that does nothing but index, on half the files and
    on all of them, and what each file adds;
  - the index inside `scan` against `screen index`, each in a fresh process, taking turns;
  - start-up: `screen index` of an empty folder against `screen --help`, Python importing
    only the libraries indexing needs, and Python alone, fresh processes taking turns, the
    median of several runs.

With --projection-files N (default 100000; 0 to skip) it also generates N tiny CT files
(16x16 pixels behind full headers with a vendor's small private tags, in series of 200
slices, one 4 KiB block each; once, cached under out/bench/projection-N) and indexes half and
all of them in a process of their own: memory per file and files per second, projected to
an archive of 10 million files. The goal is 1M files (--projection-files 1000000: 4 GiB of
disk).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pydicom

import screen
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


PROJECTED_FILES = 10_000_000
SLICES = 200  # per series of the projection archive
SERIES_PER_STUDY = 4


def projection_archive(files: int) -> Path:
    """About ``files`` tiny CT files with full headers, one folder per series of SLICES.

    One series is written with pydicom (vendor tags before group 0028 kept, the big private
    blobs after it dropped, so that a file takes one 4 KiB block) and copied to every other
    series with its identifiers and UIDs rewritten in place, at the same length: a million
    files are written in a minute, each with its own SOP instance UID."""
    from screen.synth.dicom_writer import (
        AXIAL,
        CT_IMAGE_STORAGE,
        MODELS,
        SOFT_KERNELS,
        PixelEncoding,
        SeriesPlan,
        Study,
        uid,
        write_series,
    )

    root = RESULTS / f"projection-{files}"
    if (root / ".complete").exists():
        return root / "archive"
    shutil.rmtree(root, ignore_errors=True)
    vendor = "GE MEDICAL SYSTEMS"
    study = Study(
        patient_id="PX0000000", patient_name="PATIENT^PX0000000", patient_birth_date="19600101",
        patient_sex="F", accession_number="AX00000000", study_instance_uid=uid(0, "study"),
        study_date="20240101", study_time="120000",
        study_description="CT ABDOMEN PELVIS W CONTRAST", institution="GENERAL HOSPITAL")
    plan = SeriesPlan(
        kind="abdominal_ct", series_instance_uid=uid(0, "series"), series_number=2,
        series_description="PORTAL VENOUS 2.5mm", modality="CT", sop_class_uid=CT_IMAGE_STORAGE,
        image_type=("ORIGINAL", "PRIMARY", "AXIAL"), manufacturer=vendor,
        model=MODELS[vendor][0], frame_of_reference_uid=uid(0, "frame"), syntax="explicit",
        encoding=PixelEncoding(signed=True, intercept=0.0, bits_stored=16),
        folders=("template",), naming="im", kernel=SOFT_KERNELS[vendor][0],
        body_part="ABDOMEN", slice_thickness=2.5)
    template = root / "template"
    write_series(template, study, plan, [np.full((16, 16), 40.0, dtype=np.float32)] * SLICES,
                 [(-150.0, -180.0, -300.0 + 2.5 * k) for k in range(SLICES)], AXIAL, (0.8, 0.8),
                 seed=0, rng=np.random.default_rng(0))
    slices = []
    for path in sorted((template / "template").iterdir()):
        ds = pydicom.dcmread(path)
        for element in [e for e in ds if e.tag.is_private and e.tag.group > 0x0028]:
            del ds[element.tag]
        ds.save_as(path)
        slices.append((path.name, path.read_bytes(), str(ds.SOPInstanceUID)))
    fixed = {"series": str(plan.series_instance_uid), "study": str(study.study_instance_uid),
             "frame": str(plan.frame_of_reference_uid)}

    def same_length(text: str, number: int) -> bytes:
        digits = f"{number:07d}"  # fixed width, so that no two numbers give one UID
        return (text[:-len(digits)] + digits).encode()

    archive = root / "archive"
    for n in range(max(1, files // SLICES)):
        patient, number = divmod(n, SERIES_PER_STUDY)
        swaps = [(b"PX0000000", f"PX{patient:07d}".encode()),
                 (b"AX00000000", f"AX{patient:08d}".encode()),
                 (fixed["series"].encode(), same_length(fixed["series"], n)),
                 (fixed["study"].encode(), same_length(fixed["study"], patient)),
                 (fixed["frame"].encode(), same_length(fixed["frame"], patient))]
        folder = archive / f"PX{patient:07d}" / f"20240101_AX{patient:08d}" / f"SE{number + 2:03d}"
        folder.mkdir(parents=True)
        for name, data, sop in slices:
            for old, new in swaps:
                data = data.replace(old, new)
            (folder / name).write_bytes(data.replace(sop.encode(), same_length(sop, n)))
    shutil.rmtree(template)
    (root / ".complete").write_text("")
    return archive


# A process that does nothing but index: its peak memory (VmHWM, which unlike ru_maxrss starts
# afresh at exec) after its imports, and after the index. Its readers are processes of their
# own, each holding one chunk of files at a time.
INDEX_ONLY = """
import time
from screen.index import index
from screen.memory import peak_rss_mib
base = peak_rss_mib()
start = time.perf_counter()
result = index({roots!r}, workers=2)
print(result.files_found, time.perf_counter() - start, base, peak_rss_mib())
"""


def index_alone(roots: list[str]) -> tuple[int, float, float, float]:
    """Files found, seconds, and peak memory in MiB after imports and after the index."""
    found, seconds, base, peak = child_output(INDEX_ONLY.format(roots=roots)).split()
    return int(found), float(seconds), float(base), float(peak)


def memory_growth(root: Path) -> dict[str, object]:
    """The index process's peak on half the archive's top folders and on all of them."""
    tops = sorted(str(p) for p in root.iterdir() if p.is_dir())
    half, whole = index_alone(tops[: len(tops) // 2]), index_alone([str(root)])
    per_file = (whole[3] - half[3]) * 2**20 / max(1, whole[0] - half[0])
    return {
        "peak_rss_mib": {f"{half[0]} files": round(half[3], 1),
                         f"{whole[0]} files": round(whole[3], 1)},
        "rss_after_imports_mib": round(whole[2], 1),
        "bytes_per_file": round(per_file),
        "files_per_s": round(whole[0] / whole[1]),
        "whole": whole,
    }


def projection(files: int) -> dict[str, object]:
    growth = memory_growth(projection_archive(files))
    found, seconds, base, _ = growth.pop("whole")
    per_file = growth["bytes_per_file"]
    return {
        "files": found, **growth,
        f"projected_to_{PROJECTED_FILES}_files": {
            "client_gib": round((base * 2**20 + per_file * PROJECTED_FILES) / 2**30, 2),
            "hours_with_2_workers": round(PROJECTED_FILES / (found / seconds) / 3600, 2),
        },
    }


# `screen index` and `screen scan` as each indexes, in a process of its own as from the command
# line: the index and the writing of its tables, under rules that rule every series out, so
# that scan screens none; scan's clock for the index is the one it reports.
ALONE = """
import time
from pathlib import Path
from screen import index as indexing
from screen.select import load_rules
rules = load_rules(Path({rules!r}))
start = time.perf_counter()
result = indexing.index({roots!r}, rules=rules, workers={workers})
indexing.write_outputs(result, Path({out!r}) / "inventory.parquet",
                       Path({out!r}) / "errors.parquet", rules=rules, roots={roots!r})
print(time.perf_counter() - start)
"""
IN_SCAN = """
from pathlib import Path
from screen.scan import ScanOptions, scan
if __name__ == "__main__":
    options = ScanOptions(workers={workers}, gpus=0, rules=Path({rules!r}))
    summary = scan([Path(r) for r in {roots!r}], Path({out!r}) / "worklist.parquet",
                   options=options)
    assert summary.files_found and not summary.eligible, summary
    print(summary.seconds["index"])
"""
NOTHING_ELIGIBLE = """
[[rule]]
name = "modality"
facts = ["modality"]
allow = ["^MR$"]
reason = "not screened in this benchmark"
"""


def in_scan(root: Path, workers: int = 2, rounds: int = 3) -> dict[str, object]:
    """`screen index`'s seconds against those of the index inside `scan` (in whatever order
    scan starts its local Dask cluster and indexes), each in a fresh process, taking turns at
    going first round by round after a first index that warms the page cache; the best of
    ``rounds`` each."""
    roots = [str(root)]
    alone, scanned = [], []
    with tempfile.TemporaryDirectory() as tmp:
        rules = Path(tmp) / "rules.toml"
        rules.write_text(NOTHING_ELIGIBLE)

        def run(code: str, times: list[float]) -> None:
            with tempfile.TemporaryDirectory(dir=tmp) as out:
                script = Path(out) / "measure.py"  # a file: scan's workers re-import it
                script.write_text(code.format(roots=roots, workers=workers, out=out,
                                              rules=str(rules)))
                done = subprocess.run([sys.executable, str(script)], capture_output=True,
                                      text=True)
                if done.returncode:
                    raise RuntimeError(f"{script.name} failed: {done.stderr[-2000:]}")
                times.append(float(done.stdout.split()[-1]))

        run(ALONE, [])
        ways = [(ALONE, alone), (IN_SCAN, scanned)]
        for round_ in range(rounds):
            for code, times in ways[::-1] if round_ % 2 else ways:
                run(code, times)
    return {"files": index([root], workers=workers).files_found,
            "screen_index_s": round(min(alone), 2), "in_scan_s": round(min(scanned), 2),
            "in_scan_speed_vs_screen_index": round(min(alone) / min(scanned), 2),
            "all_s": {"screen_index": [round(t, 2) for t in alone],
                      "in_scan": [round(t, 2) for t in scanned]}}


# What indexing an empty folder cannot do without: the command line, the progress bar and
# summary table, and Parquet (pyarrow loads numpy with it). Python importing only these is the
# floor under `screen index EMPTY`.
NEEDED_LIBRARIES = "import typer, rich.progress, rich.table, pyarrow.parquet"


def startup(runs: int = 7) -> dict[str, object]:
    """Seconds from a fresh process to the end of `screen index EMPTY` and `screen --help`,
    and the floor under them: Python alone, and Python importing only the libraries indexing
    needs. Medians of fresh processes taking turns, so that a busy machine slows all alike."""
    cli = [sys.executable, "-m", "screen"]
    # As an installed copy starts: from compiled modules, even where PYTHONDONTWRITEBYTECODE
    # would have each run compile screen's own source again.
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(Path(screen.__file__).parent)],
                   check=True, capture_output=True)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "empty").mkdir()
        empty, bare, libraries, python = median_seconds_of([
            [*cli, "index", str(Path(tmp) / "empty"), "--out",
             str(Path(tmp) / "inventory.parquet")],
            [*cli, "--help"],
            [sys.executable, "-c", NEEDED_LIBRARIES],
            [sys.executable, "-c", "pass"]], runs)
    return {"index_empty_folder_s": round(empty, 3), "help_s": round(bare, 3),
            "libraries_alone_s": round(libraries, 3), "python_alone_s": round(python, 3)}


def median_seconds_of(commands: list[list[str]], runs: int) -> list[float]:
    """The median seconds of each command, run ``runs`` times in turn."""
    times: list[list[float]] = [[] for _ in commands]
    for _ in range(runs):
        for command, taken in zip(commands, times):
            start = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True)
            taken.append(time.perf_counter() - start)
    return [statistics.median(taken) for taken in times]


def paths_in(root: Path) -> list[str]:
    return [f.path for f in crawl([root]) if isinstance(f, Found)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=20000)
    parser.add_argument("--projection-files", type=int, default=100_000)
    parser.add_argument("--only", choices=("startup", "in-scan", "projection"),
                        help="measure only start-up, the index inside scan, or the "
                             "projection archive of --projection-files files")
    args = parser.parse_args()
    if args.only == "startup":
        save("index_startup", startup())
        return
    if args.only == "in-scan":
        # The projection's tiny files: the index at its fastest, where anything else on the
        # cores shows most.
        save("index_in_scan", in_scan(projection_archive(args.files), rounds=4))
        return
    if args.only == "projection":
        save("index_projection", projection(args.projection_files))
        return
    files = args.files
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

    growth = memory_growth(root)
    growth.pop("whole")
    save("index", {
        "files": n,
        "io_floor_files_per_s": round(n / t_floor),
        "bare_dcmread_files_per_s": round(n / t_bare),
        "screen_header_reader_files_per_s": round(n / t_ours),
        "reader_speedup_vs_bare": round(t_bare / t_ours, 2),
        "screen_index_1_worker_files_per_s": round(n / t_index1),
        "screen_index_2_workers_files_per_s": round(n / t_index2),
        "speedup_1_to_2_workers": round(t_index1 / t_index2, 2),
        "index_process": growth,
        "startup": startup(),
        "in_scan": in_scan(root),
    })
    if args.projection_files:
        save("index_projection", projection(args.projection_files))


if __name__ == "__main__":
    main()
