"""One full-size series through the detector: decode + preprocess + inference + postprocess.

    python -m bench.detector_bench

Writes (once) 512 x 512 axial CT series of 300 and 600 slices at 0.7 x 0.7 x 1.5 mm as DICOM
files, then, for each in a fresh process so that peak memory is the series' alone: reads its
headers, decodes it into a volume, and runs the shipped detector with `--backend auto` (ONNX
Runtime on a CPU machine). Reports each stage's seconds and share, and the peak RSS: the
300-slice series is the speed goal's, the 600-slice one the memory goal's.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from bench.common import RESULTS, save

MATRIX = 512
SLICES = (300, 600)
SPACING_KJI = (1.5, 0.7, 0.7)


def write_series(folder: Path, slices: int) -> Path:
    """The phantom as CT Image Storage files, 16-bit signed with a rescale, one per slice."""
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    from screen.synth.phantom import render, sample_spec

    if (folder / ".complete").exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    phantom = render(sample_spec(np.random.default_rng(3), lesion=True),
                     shape_kji=(slices, MATRIX, MATRIX), spacing_kji=SPACING_KJI)
    series, study, frame = generate_uid(), generate_uid(), generate_uid()
    origin = phantom.affine[:3, 3]
    for k in range(slices):
        ds = pydicom.Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.Modality, ds.PatientID, ds.AccessionNumber = "CT", "BENCH0001", "ACC0001"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.SeriesDescription, ds.BodyPartExamined = "ABD PEL W CON 1.5mm", "ABDOMEN"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.ConvolutionKernel, ds.SliceThickness = "B30f", SPACING_KJI[0]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [float(origin[0]), float(origin[1]),
                                   float(origin[2] + k * SPACING_KJI[0])]
        ds.PixelSpacing = [SPACING_KJI[1], SPACING_KJI[2]]
        ds.InstanceNumber, ds.Rows, ds.Columns = k + 1, MATRIX, MATRIX
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope = 0, 1
        ds.PixelData = np.clip(np.rint(phantom.hu[k]), -1024, 3071).astype(np.int16).tobytes()
        ds.save_as(folder / f"IM{k + 1:05d}.dcm", enforce_file_format=True)
    (folder / ".complete").write_text("")
    return folder


_MEASURE = r"""
import json, sys, time
from screen.detect.detector import Detector, analyse
from screen.index import index
from screen.memory import peak_rss_mib
from screen.model.package import find_package
from screen.volume import load_volume

detector = Detector.open(find_package("pancreas-phantom-v1"))
start = time.perf_counter()
[entry] = index([sys.argv[1]], workers=1).entries
headers = time.perf_counter() - start
start = time.perf_counter()
volume = load_volume(entry.series)
decode = time.perf_counter() - start
analysis = analyse(volume, detector)
seconds = {"headers": headers, "decode": decode, **analysis.seconds}
print(json.dumps({"shape_kji": list(volume.hu.shape), "backend": detector.backend,
                  "seconds": seconds,
                  "peak_rss_mib": peak_rss_mib(),
                  "score": analysis.detection.score}))
"""


def measure(slices: int) -> dict[str, object]:
    folder = write_series(RESULTS / f"series-{MATRIX}x{MATRIX}x{slices}", slices)
    run = subprocess.run([sys.executable, "-c", _MEASURE, str(folder)], capture_output=True,
                         text=True, check=True)
    result = json.loads(run.stdout.strip().splitlines()[-1])
    seconds = result["seconds"]
    total = sum(seconds.values())
    return {
        "series": f"{MATRIX}x{MATRIX}x{slices}, 0.7x0.7x1.5 mm, uncompressed",
        "backend": result["backend"],
        "total_seconds": round(total, 2),
        "stage_seconds": {k: round(v, 2) for k, v in seconds.items()},
        "stage_share": {k: round(v / total, 3) for k, v in seconds.items()},
        "peak_rss_mib": round(result["peak_rss_mib"]),
    }


def main() -> None:
    save("detector", {f"slices_{n}": measure(n) for n in SLICES})


if __name__ == "__main__":
    main()
