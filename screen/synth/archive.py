"""A synthetic PACS export with ground truth: the demo's, the tests' and the benchmarks' data.

``write_archive(out, cases)`` lays out::

    out/archive/      the export: what a scan is pointed at, and nothing else
    out/truth.csv     one row per abdominal CT series: label and lesion in LPS mm
    out/manifest.csv  one row per series written (any kind) and one per junk file
    out/labels/       only with ``labels=True``: each abdominal series' label volume

Each case is one patient with an abdominal CT study whose axial series is rendered from a
``screen.synth.phantom`` phantom, so the truth matches the pixels. With ``distractors`` the
cases also carry what real exports hold beside it: localizers, lung-kernel recons of the same
volume, coronal reformats, head or chest CTs, abdominal MR, dose reports. Exactly half the
cases (``cases // 2``, which ones fixed by the seed) carry a lesion.

What the archive varies on purpose, for the indexing and loading code to meet:

* transfer syntax: explicit VR little endian mostly, implicit VR little endian and RLE
  Lossless in turn (abdominal series of cases 1, 6, ... are implicit; 2, ... are RLE);
* pixel encoding: unsigned with intercept -1024, signed with intercept 0, slope 0.5;
* vendor private groups before and after the image pixel module (see ``dicom_writer``);
* layout: nested ``PATIENT/STUDY/SERIES`` folders or one flat folder per study; file names
  ``IM00001``, ``<SOPInstanceUID>.dcm``, bare numbers, ``IMG0001.dcm``; the abdominal series
  of case 1 is split over two folders;
* distractor series with an empty or a missing SeriesInstanceUID (the first distractor gets
  an empty one, the second none, later ones now and then). Abdominal series always keep
  their UID, because truth.csv is joined on it.
* junk: a truncated DICOM file, a text file, a zero-byte file, a JPEG, a DICOMDIR.

The same seed gives byte-identical pixel data and identical UIDs.
"""

from __future__ import annotations

import csv
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from screen.synth import junk
from screen.synth.dicom_writer import (
    AXIAL,
    CORONAL,
    CT_IMAGE_STORAGE,
    LUNG_KERNELS,
    MODELS,
    MR_IMAGE_STORAGE,
    SECONDARY_CAPTURE_STORAGE,
    SOFT_KERNELS,
    SYNTAXES,
    VENDORS,
    PixelEncoding,
    SeriesPlan,
    Study,
    uid,
    write_dose_sr,
    write_series,
)
from screen.synth.phantom import ORGAN_LABELS, Phantom, Phase, render, render_region, sample_spec
from screen.truth import TRUTH_FILE, TruthCase, write_truth

logger = logging.getLogger(__name__)

MANIFEST_COLUMNS = ("series_instance_uid", "study_instance_uid", "folders", "kind",
                    "should_be_eligible", "n_files", "transfer_syntax", "series_number",
                    "series_description", "path")
KINDS = ("abdominal_ct", "localizer", "lung_kernel", "coronal_reformat", "head_ct", "chest_ct",
         "mr", "dose_report", "junk")
_DISTRACTORS = ("localizer", "lung_kernel", "coronal_reformat", "head_ct", "chest_ct", "mr",
                "dose_report")
# Transfer syntax of each case's abdominal series, in turn: most explicit, some of the others.
_ABDOMEN_SYNTAX_CYCLE = ("explicit", "implicit", "rle", "explicit", "explicit", "implicit",
                         "explicit", "rle", "explicit", "explicit")
_THICKNESSES = (1.0, 1.25, 2.0, 2.5, 3.0, 5.0)
_THICKNESS_P = (0.1, 0.15, 0.15, 0.25, 0.15, 0.2)
_FAMILY = ("SMITH", "GARCIA", "MULLER", "ROSSI", "DUBOIS", "NOVAK", "JENSEN", "SILVA", "KOWALSKI",
           "OCONNOR", "TANAKA", "NGUYEN", "HANSEN", "MARTIN", "BROWN", "FISCHER", "LOPEZ")
_GIVEN = ("ANNA", "JOHN", "MARIA", "PETER", "ELENA", "DAVID", "SARA", "THOMAS", "LINDA", "JAN",
          "SOFIA", "MICHAEL", "CLARA", "PAUL", "EVA", "LUCAS")
# T2-like MR signal per organ (arbitrary units): fluid bright, fat bright, flowing blood dark.
_MR_SIGNAL = {"air": 0, "subcutaneous_fat": 700, "visceral_fat": 680, "muscle": 160,
              "liver": 220, "spleen": 480, "kidney_cortex": 520, "kidney_medulla": 600,
              "gallbladder": 1500, "luminal_fluid": 1400, "luminal_gas": 10, "oral_contrast": 900,
              "artery": 30, "ivc": 40, "portal_vein": 40, "cortical_bone": 40,
              "cancellous_bone": 480, "spinal_canal": 1500, "lung": 20, "heart": 60,
              "pancreatic_duct": 1300, "lesion": 420, "disc": 700}


@dataclass(frozen=True, slots=True)
class ManifestRow:
    series_instance_uid: str
    study_instance_uid: str
    folders: tuple[str, ...]
    kind: str
    should_be_eligible: bool
    n_files: int
    transfer_syntax: str
    series_number: int | None = None
    series_description: str = ""
    path: str = ""  # the junk file, relative to the archive

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if self.n_files < 1:
            raise ValueError(f"a manifest row covers at least one file, got {self.n_files}")


@dataclass(frozen=True, slots=True)
class ArchiveSummary:
    out: Path
    archive: Path
    truth_csv: Path
    manifest_csv: Path
    seed: int
    matrix: int
    cases: int
    lesion_cases: int
    series: int
    files: int  # every file under archive/, junk included
    junk_files: int
    seconds: float


def write_archive(out: Path, cases: int, *, seed: int = 0, matrix: int = 256,
                  distractors: bool = True, labels: bool = False) -> ArchiveSummary:
    """Write a PACS-export-like archive of ``cases`` patients under ``out`` (see module doc).

    With ``labels`` each abdominal series' label volume is saved too, as
    ``out/labels/<SeriesInstanceUID>.npz`` (``labels`` uint8 [k, j, i] with k in the order of
    increasing z, and ``affine`` voxel to LPS mm), for checks of truth against geometry.
    """
    out = Path(out)
    if isinstance(cases, bool) or not isinstance(cases, int) or cases < 1:
        raise ValueError(f"cases must be a positive integer, got {cases!r}")
    if isinstance(matrix, bool) or not isinstance(matrix, int) or not 16 <= matrix <= 1024:
        raise ValueError(f"matrix must be an integer in 16..1024, got {matrix!r}")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"output folder {out} exists and is not empty; choose a new one")
    started = time.perf_counter()
    root = out / "archive"
    root.mkdir(parents=True, exist_ok=True)

    positives = set(np.random.default_rng([seed, 1 << 20]).permutation(cases)[: cases // 2]
                    .tolist())
    manifest: list[ManifestRow] = []
    truth: list[TruthCase] = []
    distractor_count = 0
    first_files: list[Path] = []
    first_hu: np.ndarray | None = None
    for case in range(cases):
        writer = _CaseWriter(root, seed, case, matrix, case in positives, distractor_count,
                             out / "labels" if labels else None)
        rows, truth_row, files = writer.write(distractors)
        distractor_count = writer.distractor_count
        manifest.extend(rows)
        truth.append(truth_row)
        if case == 0:
            first_files, first_hu = files, writer.middle_slice
        logger.debug("case %d: %d series", case, len(rows))

    manifest.extend(_write_junk(root, seed, first_files, first_hu))
    write_truth(out / TRUTH_FILE, truth)
    _write_csv(out / "manifest.csv", MANIFEST_COLUMNS, [_manifest_values(m) for m in manifest])
    series_rows = [m for m in manifest if m.kind != "junk"]
    summary = ArchiveSummary(
        out=out, archive=root, truth_csv=out / TRUTH_FILE, manifest_csv=out / "manifest.csv",
        seed=seed, matrix=matrix, cases=cases, lesion_cases=len(positives),
        series=len(series_rows), files=sum(m.n_files for m in manifest),
        junk_files=len(manifest) - len(series_rows), seconds=time.perf_counter() - started,
    )
    logger.info("wrote %d files in %d series for %d cases to %s in %.1f s", summary.files,
                summary.series, cases, root, summary.seconds)
    return summary


class _CaseWriter:
    """Writes one patient's studies; holds the case's random stream and shared choices."""

    def __init__(self, root: Path, seed: int, case: int, matrix: int, lesion: bool,
                 distractor_count: int, labels_dir: Path | None = None) -> None:
        self.root, self.seed, self.case, self.matrix = root, seed, case, matrix
        self.labels_dir = labels_dir
        self.rng = np.random.default_rng([seed, case])
        self.lesion = lesion
        self.distractor_count = distractor_count
        self.vendor = str(self.rng.choice(VENDORS))
        self.model = str(self.rng.choice(MODELS[self.vendor]))
        self.patient_id = str(self.rng.integers(10**6, 10**8))
        self.name = f"{self.rng.choice(_FAMILY)}^{self.rng.choice(_GIVEN)}"
        self.birth = f"{self.rng.integers(1935, 1990)}{self.rng.integers(1, 13):02d}" \
                     f"{self.rng.integers(1, 29):02d}"
        self.sex = str(self.rng.choice(["F", "M"]))
        self.flat = bool(self.rng.random() < 0.35)
        self.series_number = 0
        self.middle_slice: np.ndarray | None = None

    # ---- studies and folders --------------------------------------------------------------

    def study(self, tag: str, description: str) -> Study:
        year = int(self.rng.integers(2018, 2026))
        return Study(
            patient_id=self.patient_id, patient_name=self.name,
            patient_birth_date=self.birth, patient_sex=self.sex,
            accession_number=f"{int(self.rng.integers(10**8, 10**9))}",
            study_instance_uid=uid(self.seed, "study", self.case, tag),
            study_date=f"{year}{self.rng.integers(1, 13):02d}{self.rng.integers(1, 29):02d}",
            study_time=f"{self.rng.integers(7, 20):02d}{self.rng.integers(0, 60):02d}00",
            study_description=description,
            institution=str(self.rng.choice(["GENERAL HOSPITAL", "UNIVERSITY MEDICAL CENTER",
                                             "ST MARY CLINIC", ""])),
        )

    def folders(self, study: Study, number: int, split: bool = False) -> tuple[str, ...]:
        if self.flat:
            base = f"export_{self.case:04d}_{study.accession_number[-4:]}"
            return (base, base + "_b") if split else (base,)
        base = f"{self.patient_id}/{study.study_date}_{study.accession_number}/SE{number:03d}"
        return (base, base + "_part2") if split else (base,)

    def naming(self) -> str:
        # File names must not clash in a flat folder that holds a whole study.
        if self.flat:
            return str(self.rng.choice(["uid", "number"]))
        return str(self.rng.choice(["im", "uid", "number", "img_dcm"], p=[0.4, 0.2, 0.2, 0.2]))

    def next_number(self, step: int = 1) -> int:
        self.series_number += step
        return self.series_number

    def distractor_uid(self, study: Study, number: int) -> str | None:
        # De-identified exports blank or drop SeriesInstanceUID; make sure any archive with
        # two distractors has both cases.
        index = self.distractor_count
        self.distractor_count += 1
        real = uid(self.seed, study.study_instance_uid, "series", number)
        if index == 0:
            return ""
        if index == 1:
            return None
        draw = self.rng.random()
        return "" if draw < 0.07 else None if draw < 0.12 else real

    def syntax(self) -> str:
        return str(self.rng.choice(["explicit", "implicit", "rle"], p=[0.7, 0.2, 0.1]))

    def ct_encoding(self) -> PixelEncoding:
        draw = self.rng.random()
        if draw < 0.5:
            return PixelEncoding(signed=False, slope=1.0, intercept=-1024.0, bits_stored=12)
        if draw < 0.85:
            return PixelEncoding(signed=True, slope=1.0, intercept=0.0, bits_stored=16)
        return PixelEncoding(signed=False, slope=0.5, intercept=-1024.0, bits_stored=16)

    def plan(self, study: Study, kind: str, number: int, series_uid: str | None,
             description: str, *, modality: str = "CT", sop: str = CT_IMAGE_STORAGE,
             image_type: tuple[str, ...] = ("ORIGINAL", "PRIMARY", "AXIAL"),
             frame_uid: str = "", syntax: str | None = None,
             encoding: PixelEncoding | None = None, split: bool = False, **more: object
             ) -> SeriesPlan:
        return SeriesPlan(
            kind=kind, series_instance_uid=series_uid, series_number=number,
            series_description=description, modality=modality, sop_class_uid=sop,
            image_type=image_type, manufacturer=self.vendor, model=self.model,
            frame_of_reference_uid=frame_uid, syntax=syntax or self.syntax(),
            encoding=encoding or self.ct_encoding(), folders=self.folders(study, number, split),
            naming=self.naming(), **more,  # type: ignore[arg-type]
        )

    def emit(self, study: Study, plan: SeriesPlan, images: Sequence[np.ndarray],
             positions: Sequence[tuple[float, float, float]] | None,
             orientation: tuple[float, ...] | None, spacing: tuple[float, float] | None,
             eligible: bool = False) -> tuple[ManifestRow, list[Path]]:
        files = write_series(self.root, study, plan, images, positions, orientation,  # type: ignore[arg-type]
                             spacing, seed=self.seed, rng=self.rng)
        row = ManifestRow(
            series_instance_uid=plan.series_instance_uid or "",
            study_instance_uid=study.study_instance_uid, folders=plan.folders, kind=plan.kind,
            should_be_eligible=eligible, n_files=len(files),
            transfer_syntax=str(SYNTAXES[plan.syntax]), series_number=plan.series_number,
            series_description=plan.series_description,
        )
        return row, files

    # ---- the case ---------------------------------------------------------------------------

    def write(self, distractors: bool) -> tuple[list[ManifestRow], TruthCase, list[Path]]:
        rng = self.rng
        spec = sample_spec(rng, lesion=self.lesion)
        thickness = float(rng.choice(_THICKNESSES, p=_THICKNESS_P))
        top = spec.liver_dome_z_mm + float(rng.uniform(0, 20))
        bottom = spec.iliac_crest_z_mm - float(rng.uniform(10, 100))
        # At most 240 slices (a 1 mm series stops in the upper pelvis) keeps cases quick.
        n = min(240, round((top - bottom) / thickness) + 1)
        a = spec.body_semi_mm[0] * (1 - 0.0004 * bottom)
        fov = float(np.clip(max(rng.uniform(320, 450), 2.2 * a), 320, 450))
        ps = fov / self.matrix
        phantom = render(spec, shape_kji=(n, self.matrix, self.matrix),
                         spacing_kji=(thickness, ps, ps), z_center_mm=0.5 * (top + bottom))
        self.middle_slice = phantom.hu[n // 2]
        # Scanner table coordinates: the patient is rarely at the isocentre's origin.
        offset = np.array([rng.uniform(-15, 15), rng.uniform(-40, 10), rng.uniform(-700, 100)])
        origin = np.asarray(phantom.origin_lps) + offset
        positions = [tuple(float(v) for v in origin + (0.0, 0.0, k * thickness))
                     for k in range(n)]

        study = self.study("abdomen", str(rng.choice(
            ["CT ABDOMEN PELVIS W CONTRAST", "CT ABD/PEL", "CT PANCREAS PROTOCOL",
             "CT ABDOMEN", "ABDOMEN^01_ABDOMEN_PV (Adult)"])))
        frame_uid = uid(self.seed, study.study_instance_uid, "frame")
        kernel = str(rng.choice(SOFT_KERNELS[self.vendor]))
        number = self.next_number(int(rng.integers(1, 4)))
        abdomen_uid = uid(self.seed, study.study_instance_uid, "series", number)
        plan = self.plan(
            study, "abdominal_ct", number, abdomen_uid, _abdomen_description(rng, spec.phase,
                                                                             thickness, kernel),
            frame_uid=frame_uid, syntax=_ABDOMEN_SYNTAX_CYCLE[self.case % 10],
            split=self.case == 1, kernel=kernel, slice_thickness=thickness,
            body_part=str(rng.choice(["", "ABDOMEN", "ABD_PELVIS", "ABDOMENPELVIS", "CHEST",
                                      "PANCREAS"], p=[0.3, 0.3, 0.15, 0.1, 0.1, 0.05])),
            contrast_agent="" if spec.phase is Phase.NON_CONTRAST else str(rng.choice(
                ["OMNIPAQUE 350", "Iomeron 400", "ULTRAVIST 370", "APPLIED"])),
            protocol_name=str(rng.choice(["ABDOMEN_PELVIS", "PANCREAS", "Abdomen routine", ""])),
            reverse_instance_numbers=bool(rng.random() < 0.5),
        )
        row, files = self.emit(study, plan, list(phantom.hu), positions, AXIAL, (ps, ps),
                               eligible=True)
        rows = [row]
        truth = _truth(abdomen_uid, phantom, offset)
        if self.labels_dir is not None:
            self.labels_dir.mkdir(parents=True, exist_ok=True)
            affine = phantom.affine
            affine[:3, 3] = origin
            np.savez_compressed(self.labels_dir / f"{abdomen_uid}.npz", labels=phantom.labels,
                                affine=affine)

        if distractors:
            chosen = {_DISTRACTORS[(2 * self.case) % 7], _DISTRACTORS[(2 * self.case + 1) % 7]}
            chosen |= {k for k in _DISTRACTORS if rng.random() < 0.15}
            if rng.random() < 0.6:
                chosen.add("localizer")
            for kind in _DISTRACTORS:  # a fixed order keeps the random stream reproducible
                if kind in chosen:
                    rows.append(self.distractor(kind, study, phantom, positions, frame_uid,
                                                thickness, ps, origin))
        return rows, truth, files

    def distractor(self, kind: str, study: Study, phantom: Phantom,
                   positions: list[tuple[float, float, float]], frame_uid: str,
                   thickness: float, ps: float, origin: np.ndarray) -> ManifestRow:
        rng = self.rng
        hu = phantom.hu
        n, m = hu.shape[0], hu.shape[2]
        if kind == "localizer":
            number = 1 if self.series_number > 1 else self.next_number()
            # A projection radiograph: attenuation summed front to back, shown as CT numbers.
            path_length = ((hu + 1000.0) / 1000.0).clip(0).sum(axis=1) * ps
            image = (path_length / max(float(path_length.max()), 1e-6)) * 2500.0 - 1000.0
            top = (float(origin[0]), float(origin[1] + m * ps / 2), positions[-1][2])
            plan = self.plan(study, kind, number, self.distractor_uid(study, number),
                             "Topogram 0.6 T20f" if self.vendor == "SIEMENS" else "SCOUT",
                             image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"), frame_uid=frame_uid)
            return self.emit(study, plan, [image[::-1]], [top], CORONAL, (thickness, ps))[0]
        if kind == "lung_kernel":
            number = self.next_number()
            lung = hu + 1.5 * (hu - ndimage.gaussian_filter(hu, (0, 1, 1)))
            lung += rng.normal(0, 15, size=hu.shape).astype(np.float32)
            lung_kernel = str(rng.choice(LUNG_KERNELS[self.vendor]))
            plan = self.plan(study, kind, number, self.distractor_uid(study, number),
                             f"LUNG {thickness:g}mm {lung_kernel}", frame_uid=frame_uid,
                             kernel=lung_kernel, slice_thickness=thickness)
            return self.emit(study, plan, list(lung), positions, AXIAL, (ps, ps))[0]
        if kind == "coronal_reformat":
            number = self.next_number()
            step = max(1, round(5.0 / ps))
            rows_j = range(int(0.2 * m), int(0.8 * m), step)
            images = [hu[::-1, j, :] for j in rows_j]
            places = [(float(origin[0]), float(origin[1] + j * ps), positions[-1][2])
                      for j in rows_j]
            plan = self.plan(study, kind, number, self.distractor_uid(study, number),
                             f"COR {thickness:g}mm", frame_uid=frame_uid,
                             image_type=("DERIVED", "SECONDARY", "REFORMATTED"),
                             slice_thickness=5.0)
            return self.emit(study, plan, images, places, CORONAL, (thickness, ps))[0]
        if kind in ("head_ct", "chest_ct"):
            region = "head" if kind == "head_ct" else "chest"
            other = self.study(region, "CT HEAD WO CONTRAST") if region == "head" else study
            number = self.next_number() if region == "chest" else 2
            fov = float(rng.uniform(220, 250) if region == "head" else rng.uniform(340, 420))
            step = 5.0 if region == "head" else float(rng.choice([2.5, 5.0]))
            count = int((150 if region == "head" else 300) / step)
            volume = render_region(rng, region, shape_kji=(count, m, m),
                                   spacing_kji=(step, fov / m, fov / m))
            start = np.array([-fov / 2, -fov / 2, rng.uniform(-300, 200)])
            places = [tuple(float(v) for v in start + (0.0, 0.0, k * step)) for k in range(count)]
            plan = self.plan(
                other, kind, number, uid(self.seed, other.study_instance_uid, "series", number),
                "HEAD WO 5mm" if region == "head" else f"CHEST W CON {step:g}mm",
                frame_uid=uid(self.seed, other.study_instance_uid, "frame", region),
                kernel="H30s" if region == "head" and self.vendor == "SIEMENS" else "STANDARD",
                body_part=region.upper(), slice_thickness=step)
            return self.emit(other, plan, list(volume), places, AXIAL, (fov / m, fov / m))[0]
        if kind == "mr":
            other = self.study("mr", "MR ABDOMEN")
            step = max(1, round(6.0 / thickness))
            lut = np.zeros(256, dtype=np.float32)
            for code, name in ORGAN_LABELS.items():
                lut[code] = _MR_SIGNAL.get(name, 300)
            lut[21:24] = 320  # pancreas
            images = [lut[phantom.organs[k]] + rng.normal(0, 20, size=(m, m)).astype(np.float32)
                      for k in range(0, n, step)]
            places = [positions[k] for k in range(0, n, step)]
            number = 3
            plan = self.plan(
                other, kind, number, uid(self.seed, other.study_instance_uid, "series", number),
                "T2 HASTE AX" if self.vendor == "SIEMENS" else "AX T2 SSFSE", modality="MR",
                sop=MR_IMAGE_STORAGE, image_type=("ORIGINAL", "PRIMARY", "M", "ND"),
                frame_uid=uid(self.seed, other.study_instance_uid, "frame"),
                encoding=PixelEncoding(signed=False, bits_stored=12, rescaled=False),
                body_part="ABDOMEN", slice_thickness=step * thickness,
                extra=(("MagneticFieldStrength", "1.5"), ("EchoTime", "90"),
                       ("RepetitionTime", "1200"), ("ScanningSequence", "SE"),
                       ("SequenceVariant", "SK"), ("MRAcquisitionType", "2D")))
            return self.emit(other, plan, images, places, AXIAL, (ps, ps))[0]
        if kind == "dose_report":
            number = 999 if self.vendor == "GE MEDICAL SYSTEMS" else 501
            series_uid = self.distractor_uid(study, number)
            if rng.random() < 0.5:
                plan = self.plan(study, kind, number, series_uid, "Dose Report",
                                 modality="SR", sop="1.2.840.10008.5.1.4.1.1.88.67",
                                 syntax="explicit")
                path = self.root / plan.folders[0] / f"DOSE{number}.dcm"
                write_dose_sr(path, study, plan, seed=self.seed,
                              ctdi_vol=float(rng.uniform(5, 20)), dlp=float(rng.uniform(300, 1200)))
                return ManifestRow(series_uid or "", study.study_instance_uid, plan.folders,
                                   kind, False, 1, str(SYNTAXES["explicit"]), number,
                                   plan.series_description)
            # A screen capture of the dose page, stored as a CT secondary capture.
            page = np.zeros((m, m), dtype=np.float32)
            for line in range(4, m - 4, 6):
                width = int(rng.integers(m // 4, m - 8))
                page[line:line + 3, 4:4 + width] = 220.0
            plan = self.plan(study, kind, number, series_uid, "Dose Report", modality="CT",
                             sop=SECONDARY_CAPTURE_STORAGE,
                             image_type=("DERIVED", "SECONDARY", "SCREEN SAVE"),
                             encoding=PixelEncoding(signed=False, bits_stored=8, rescaled=False),
                             extra=(("ConversionType", "WSD"),))
            return self.emit(study, plan, [page], None, None, None)[0]
        raise ValueError(f"unknown distractor kind {kind!r}")


def _abdomen_description(rng: np.random.Generator, phase: Phase, thickness: float,
                         kernel: str) -> str:
    t = f"{thickness:g}"
    options = {
        Phase.PORTAL_VENOUS: (f"ABD PEL W CON {t}mm", "PORTAL VENOUS", f"Abdomen {t} {kernel}",
                              f"PV {t}mm", "VENOUS PHASE"),
        Phase.ARTERIAL: (f"PANCREAS ART {t}mm", "ARTERIAL", f"Abdomen art {t} {kernel}",
                         "LATE ARTERIAL"),
        Phase.NON_CONTRAST: (f"ABD WO CON {t}mm", "NON CON", f"Abdomen nativ {t} {kernel}"),
    }[phase]
    return str(rng.choice(options))


def _truth(series_uid: str, phantom: Phantom, offset: np.ndarray) -> TruthCase:
    if phantom.lesion_center_lps is None:
        return TruthCase(series_uid, False)
    centre = tuple(float(v) for v in np.asarray(phantom.lesion_center_lps) + offset)
    return TruthCase(series_uid, True, centre, phantom.lesion_diameter_mm, phantom.lesion_location)  # type: ignore[arg-type]


def _write_junk(root: Path, seed: int, first_files: list[Path],
                first_hu: np.ndarray | None) -> list[ManifestRow]:
    made = [
        junk.text_file(root / "EXPORT_LOG.TXT", ["PACS export", f"job {seed}", "status: done"]),
        junk.dicomdir_file(root / "DICOMDIR", uid(seed, "fileset")),
    ]
    if first_files:
        folder = first_files[0].parent
        made.append(junk.truncated_copy(first_files[len(first_files) // 2], folder / "IM99999"))
        made.append(junk.empty_file(folder / "IM00000"))
    if first_hu is not None:
        made.append(junk.jpeg_file(root / "preview" / "IM00001.jpg", first_hu))
    return [ManifestRow("", "", (j.path.parent.relative_to(root).as_posix(),), "junk", False, 1,
                        "", None, j.what, j.path.relative_to(root).as_posix()) for j in made]


def _manifest_values(m: ManifestRow) -> list[object]:
    return [m.series_instance_uid, m.study_instance_uid, ";".join(m.folders), m.kind,
            int(m.should_be_eligible), m.n_files, m.transfer_syntax,
            "" if m.series_number is None else m.series_number, m.series_description, m.path]


def _write_csv(path: Path, columns: Sequence[str], rows: list[list[object]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as sink:
        writer = csv.writer(sink)
        writer.writerow(columns)
        writer.writerows(rows)
