"""Review pages and monitoring: a 40-slice series page's size and open time in headless
Chromium, and `screen monitor` over a year of monthly sweeps.

    python -m bench.review_bench [--sweeps 12] [--rows 10000]

The page is built from a phantom at a clinical matrix (512 x 512 at 0.7 mm, 1.25 mm slices,
CT noise): the noise is what makes slices hard to compress, so a clean or coarse series
would flatter the size. The open time is the browser's own clock from navigation to the
first windowed slice on screen (five opens, the median). Goals: at most 3 MB, under 1 s;
monitor under 5 s.
"""

from __future__ import annotations

import argparse
import math
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from bench.common import RESULTS, save, timed


def series_page(folder: Path) -> Path:
    from screen.detect.detector import Analysis
    from screen.detect.masks import Masks
    from screen.detect.preprocess import Grid
    from screen.records import Detection, Volume
    from screen.review.pages import image_paths, write_series_page
    from screen.review.stack import build_stack, save_stack
    from screen.synth.phantom import render, sample_spec
    from screen.worklist_row import WorklistRow

    spec = sample_spec(np.random.default_rng(7), lesion=True)
    z = float(np.mean([p[2] for p in spec.pancreas.centerline]))  # centred on the gland
    phantom = render(spec, shape_kji=(96, 512, 512), spacing_kji=(1.25, 0.7, 0.7), z_center_mm=z)
    affine = np.diag([0.7, 0.7, 1.25, 1.0])
    affine[:3, 3] = phantom.origin_lps
    volume = Volume(phantom.hu, affine, tuple(f"1.2.3.{k}" for k in range(phantom.hu.shape[0])))
    labels = phantom.labels
    grid = Grid((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), labels.shape)
    lesion_probability = (labels == 2).astype(np.float32)
    key = int(round(phantom.lesion_center_kji[0])) if phantom.lesion_center_kji else labels.shape[0] // 2
    detection = Detection(0.92, True, 60.0)
    analysis = Analysis(detection, {}, grid, grid, lesion_probability, labels > 0)
    stack = build_stack(volume, Masks(labels > 0, labels == 2), analysis, key)
    row = WorklistRow(series_key="1.2.3", series_instance_uid="1.2.3", study_instance_uid="1.2",
                      status="ok", score=0.92, flagged=True, rank=1, pancreas_found=True)
    save_stack(stack, image_paths(folder, "1.2.3")["stack"])
    return write_series_page(folder, row, threshold=0.5)


def open_times(page: Path, opens: int = 5) -> list[float]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    profile = tempfile.mkdtemp(prefix="bench-chrome-")
    options = webdriver.ChromeOptions()
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--window-size=1200,1000", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    try:
        times = []
        for _ in range(opens):
            driver.get("about:blank")
            driver.get(page.as_uri())
            body = WebDriverWait(driver, 30).until(
                lambda d: d.find_element("css selector", "body[data-ready-ms]"))
            times.append(float(body.get_attribute("data-ready-ms")) / 1000.0)
        return times
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def write_sweeps(folder: Path, sweeps: int, rows: int) -> list[Path]:
    from screen.tables import write_atomic
    from screen.worklist_row import SCHEMA

    rng = np.random.default_rng(0)
    paths = []
    for month in range(sweeps):
        scores = rng.beta(1.2, 8.0, rows).astype(np.float32)
        aorta = rng.normal(170.0 if month < sweeps // 2 else 300.0, 20.0, rows).astype(np.float32)
        columns = {
            "series_key": [f"{month}-{i}" for i in range(rows)], "status": ["ok"] * rows,
            "score": scores, "flagged": scores >= 0.5, "pancreas_found": rng.random(rows) < 0.97,
            "slice_thickness_mm": rng.choice([1.0, 2.5, 3.0, 5.0], rows).astype(np.float32),
            "convolution_kernel": rng.choice(["B30f", "Br40", "STANDARD", "FC08"], rows),
            "scanner": rng.choice(["SIEMENS SOMATOM Force", "GE Revolution", "CANON Aquilion"], rows),
            "aorta_hu": aorta,
            "contrast_phase": np.where(aorta > 230, "arterial", "portal_venous"),
        }
        table = pa.table({name: pa.array(columns.get(name, [None] * rows), SCHEMA.field(name).type)
                          for name in SCHEMA.names})
        path = folder / f"sweep-{month + 1:02d}.parquet"
        write_atomic(table, path, {"eligible_by_tags": rows + 50, "rejected_by_content": 50})
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sweeps", type=int, default=12)
    parser.add_argument("--rows", type=int, default=10_000)
    args = parser.parse_args()
    from screen.monitor.drift import monitor
    from screen.monitor.report import write_html

    folder = RESULTS / "review"
    shutil.rmtree(folder, ignore_errors=True)
    page, build_s = timed(lambda: series_page(folder))
    numbers: dict[str, object] = {"page_bytes": page.stat().st_size,
                                  "page_mib": round(page.stat().st_size / 2**20, 2),
                                  "page_build_seconds": round(build_s, 2)}
    if shutil.which("chromedriver") and shutil.which("chromium"):
        times = open_times(page)
        numbers |= {"page_open_seconds_median": round(statistics.median(times), 3),
                    "page_open_seconds": [round(t, 3) for t in times]}
    else:
        numbers["page_open_seconds_median"] = "not measured: no chromium/chromedriver"

    sweeps = write_sweeps(folder, args.sweeps, args.rows)
    start = time.perf_counter()
    report = monitor(sweeps)
    write_html(report, folder / "monitor.html")
    (folder / "monitor.json").write_text(report.to_json())
    numbers |= {"monitor_sweeps": args.sweeps, "monitor_rows_each": args.rows,
                "monitor_seconds": round(time.perf_counter() - start, 2),
                "monitor_shifts": len(report.shifted)}
    assert not math.isnan(report.sweeps[0].score_psi)
    save("review", numbers)


if __name__ == "__main__":
    main()
