"""Time the detector on a full-size abdominal CT: preprocess, inference, postprocess.

    python -m screen.detect.benchmark [--model NAME] [--backend auto] [--repeat 2]

The volume is a phantom of 512 x 512 x 300 voxels at 0.7 x 0.7 x 1.5 mm, rendered in a
separate process and handed over as a file, so that the peak memory reported (RSS of this
process) is the detector's and not the renderer's.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from screen.memory import peak_rss_mib

logger = logging.getLogger(__name__)

SHAPE_KJI = (300, 512, 512)
SPACING_KJI = (1.5, 0.7, 0.7)


def _render_to(path: str, seed: int) -> None:
    from screen.synth.phantom import render, sample_spec

    phantom = render(sample_spec(np.random.default_rng(seed), lesion=True), shape_kji=SHAPE_KJI,
                     spacing_kji=SPACING_KJI)
    np.save(path, phantom.hu)
    np.save(path + ".affine.npy", phantom.affine)


def benchmark(model: str = "pancreas-phantom-v1", backend: str = "auto", repeat: int = 2,
              seed: int = 3) -> dict[str, object]:
    from screen.detect.detector import Detector, analyse
    from screen.model.package import find_package
    from screen.records import Volume

    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "hu.npy")
        context = multiprocessing.get_context("spawn")
        started = time.perf_counter()
        worker = context.Process(target=_render_to, args=(path, seed))
        worker.start()
        worker.join()
        if worker.exitcode != 0:
            raise RuntimeError(f"rendering the benchmark phantom failed (exit {worker.exitcode})")
        render_s = time.perf_counter() - started
        hu = np.load(path)
        affine = np.load(path + ".affine.npy")
    volume = Volume(hu=hu, affine=affine, slice_uids=tuple(str(k) for k in range(hu.shape[0])))
    rss_volume = peak_rss_mib()
    started = time.perf_counter()
    detector = Detector.open(find_package(model), backend=backend)
    load_s = time.perf_counter() - started
    runs = []
    for _ in range(repeat):
        started = time.perf_counter()
        analysis = analyse(volume, detector)
        runs.append({**{k: round(v, 2) for k, v in analysis.seconds.items()},
                     "total": round(time.perf_counter() - started, 2)})
    d = analysis.detection
    return {
        "shape_kji": list(SHAPE_KJI), "spacing_kji": list(SPACING_KJI),
        "backend": detector.backend, "precision": detector.precision,
        "render_seconds": round(render_s, 1), "model_load_seconds": round(load_s, 2),
        "runs": runs, "peak_rss_mib": round(peak_rss_mib(), 0),
        "rss_after_loading_volume_mib": round(rss_volume, 0),
        "detection": {"score": round(d.score, 4), "pancreas_found": d.pancreas_found,
                      "lesion": d.lesion_center_lps is not None},
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m screen.detect.benchmark", description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="pancreas-phantom-v1")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    sys.stdout.write(json.dumps(benchmark(args.model, args.backend, args.repeat), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
