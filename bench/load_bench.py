"""Reading a series' pixels: a 512x512 series loaded inside a sweep's worker (the worklist's
``load_seconds``) against SimpleITK reading the same files in a plain process, side by side.

    python -m bench.load_bench [--rounds 3]

Generates (once, cached under out/bench/load-archive) one abdominal CT of 512x512x240 slices,
uncompressed, and a copy of it under new UIDs. Each round, in turn, on a warm page cache and
after a first read that loads each reader's libraries:
  - SimpleITK's ImageSeriesReader, in a fresh process, given the files in slice order;
  - screen's loader in a fresh process, and again with MALLOC_TRIM_THRESHOLD_=65536 (what a
    Dask nanny sets; reading should not care);
  - screen's loader given each file as a pydicom data set, as a PACS sweep's reader gives
    them: what parsing a data set per slice costs against reading the pixels in place;
  - a whole sweep with one local worker, whose worklist row says how long loading took there,
    and again with the worker started with that same malloc setting.
Medians are reported, and the ratios of SimpleITK's time to screen's; for the plain
processes also their CPU time, which other work on a busy machine disturbs less.
"""

from __future__ import annotations

import argparse
import os
import pickle
import shutil
import statistics
from pathlib import Path

from bench.common import RESULTS, cached_archive, child_output, save
from screen.records import Series

NANNY_MALLOC = {"MALLOC_TRIM_THRESHOLD_": "65536"}

SIMPLEITK = """
import pickle, sys, time
import SimpleITK as sitk
series = pickle.load(open(sys.argv[-1], "rb"))
reader = sitk.ImageSeriesReader()
reader.SetFileNames([i.path for i in series.instances])
reader.Execute()  # the first read also loads GDCM's dictionaries
start, cpu = time.perf_counter(), time.process_time()
image = reader.Execute()
print(time.perf_counter() - start, time.process_time() - cpu, image.GetSize())
"""

SCREEN = """
import pickle, sys, time
from screen.volume import load_volume
series = pickle.load(open(sys.argv[-1], "rb"))
load_volume(series)  # the first read also loads pydicom's pixel plugins
start, cpu = time.perf_counter(), time.process_time()
volume = load_volume(series)
print(time.perf_counter() - start, time.process_time() - cpu, volume.hu.shape)
"""

SCREEN_THROUGH_PYDICOM = """
import pickle, sys, time
from screen.volume import load_volume
from screen.volume.decode import read_dataset
series = pickle.load(open(sys.argv[-1], "rb"))
def read(path):  # any reader but the files' own: each slice a data set
    return read_dataset(path)
load_volume(series, read=read)
start, cpu = time.perf_counter(), time.process_time()
volume = load_volume(series, read=read)
print(time.perf_counter() - start, time.process_time() - cpu, volume.hu.shape)
"""


def archive() -> Path:
    # Seed 5's only case: 240 slices of 1.25 mm, explicit VR little endian, signed 16 bit.
    return cached_archive("load-archive", 1, seed=5, matrix=512, distractors=False,
                          then=_copy_as_new_series)


def _copy_as_new_series(root: Path) -> None:
    """The series again, under new UIDs: a sweep's worker reads one of the two after the
    other, as it does every series but its first, with its libraries loaded."""
    import pydicom
    from pydicom.uid import generate_uid

    files = [p for p in sorted(root.rglob("*")) if p.is_file() and p.stat().st_size > 100_000]
    series_uid = generate_uid(entropy_srcs=["load-bench-copy"])
    for n, path in enumerate(files):
        ds = pydicom.dcmread(path)
        ds.SeriesInstanceUID = series_uid
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid(
            entropy_srcs=["load-bench-copy", str(n)])
        target = root / "copy" / path.relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(target)


def the_series(root: Path) -> Series:
    from screen.index import index

    eligible = index([root], workers=1).eligible
    if len(eligible) != 2:
        raise RuntimeError(f"expected two eligible series in {root}, found {len(eligible)}")
    return eligible[0].series


def in_child(code: str, series_file: Path, env: dict[str, str] | None = None
             ) -> tuple[float, float]:
    """Wall and CPU seconds of ``code``'s timed read, in a fresh process."""
    wall, cpu = child_output(f"import sys; sys.argv.append({str(series_file)!r})\n{code}",
                             env).split()[:2]
    return float(wall), float(cpu)


def in_sweep(root: Path, env: dict[str, str] | None = None) -> float:
    """load_seconds of the series read second in a sweep on one local worker started with
    ``env`` (the shorter of the two)."""
    import pyarrow.parquet as pq

    from screen.scan import ScanOptions, scan

    out = RESULTS / "load-sweep" / "worklist.parquet"
    shutil.rmtree(out.parent, ignore_errors=True)
    saved = {k: os.environ.get(k) for k in env or {}}
    os.environ.update(env or {})  # local workers inherit this process's environment
    try:
        scan([root], out, options=ScanOptions(workers=1, gpus=0, resume=False))
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    rows = pq.read_table(out).to_pylist()
    if len(rows) != 2 or any(r["status"] != "ok" for r in rows):
        raise RuntimeError(f"the sweep did not score both series: {rows}")
    return min(float(r["load_seconds"]) for r in rows)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    rounds = parser.parse_args().rounds
    root = archive()
    series = the_series(root)
    series_file = RESULTS / "load-series.pickle"
    series_file.write_bytes(pickle.dumps(series))
    for instance in series.instances:  # a warm page cache for every reader alike
        Path(instance.path).read_bytes()

    children = {
        "simpleitk_plain_process": (SIMPLEITK, None),
        "screen_plain_process": (SCREEN, None),
        "screen_plain_process_nanny_malloc": (SCREEN, NANNY_MALLOC),
        "screen_plain_process_through_pydicom": (SCREEN_THROUGH_PYDICOM, None),
    }
    sweeps = {"screen_in_sweep_worker": None, "screen_in_sweep_worker_nanny_malloc": NANNY_MALLOC}
    runs: dict[str, list[float]] = {name: [] for name in (*children, *sweeps)}
    cpu: dict[str, list[float]] = {name: [] for name in children}
    for _ in range(rounds):
        for name, (code, env) in children.items():
            wall, cpu_seconds = in_child(code, series_file, env)
            runs[name].append(wall)
            cpu[name].append(cpu_seconds)
        for name, env in sweeps.items():
            runs[name].append(in_sweep(root, env))
    median = {name: statistics.median(times) for name, times in runs.items()}
    median_cpu = {name: statistics.median(times) for name, times in cpu.items()}
    sitk, sitk_cpu = median["simpleitk_plain_process"], median_cpu["simpleitk_plain_process"]
    first = series.first
    save("load", {
        "series": f"{first.rows}x{first.columns}x{len(series.instances)}, "
                  f"transfer syntax {first.transfer_syntax_uid}",
        "rounds": rounds,
        "median_seconds": {name: round(t, 3) for name, t in median.items()},
        "simpleitk_over_screen": {
            name: round(sitk / t, 2) for name, t in median.items() if name.startswith("screen")},
        "seconds_each_round": {name: [round(t, 3) for t in times] for name, times in runs.items()},
        # CPU seconds of the plain processes: steadier than wall time on a busy machine.
        "median_cpu_seconds": {name: round(t, 3) for name, t in median_cpu.items()},
        "simpleitk_over_screen_cpu": {
            name: round(sitk_cpu / t, 2) for name, t in median_cpu.items()
            if name.startswith("screen")},
    })


if __name__ == "__main__":
    main()
