"""`screen monitor`: each sweep against a reference, from their worklists alone.

Per sweep: the score distribution (population stability index and a two-sample
Kolmogorov-Smirnov test against the reference), the flagged, pancreas-found and
content-rejection rates, and the inputs (slice thickness, kernel, contrast phase measured
from the aorta, scanner), each as a PSI against the reference. Where reviewers' decisions
are given, calibration: the share of reviewed flagged series they confirmed, by score.

PSI = sum over bins of (p - q) * ln(p / q), with p and q the shares of the sweep and of the
reference in each bin. The usual reading: below 0.1 no shift, 0.1-0.25 a moderate one, above
0.25 a shift worth a look; the threshold is an option.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from screen import tables
from screen.worklist_row import OK, columns

logger = logging.getLogger(__name__)

SCORE_BINS = np.linspace(0.0, 1.0, 11)
THICKNESS_BINS = np.array([0.0, 0.75, 1.25, 1.75, 2.25, 3.25, 4.5, 6.0, np.inf])  # mm
EPSILON = 1e-4  # a share for empty bins, so that PSI stays finite
# The worklist columns monitoring reads (those of them a sweep's worklist has: older ones lack
# the inputs).
INPUTS = columns("slice_thickness_mm", "convolution_kernel", "contrast_phase", "scanner")
COLUMNS = columns("status", "score", "flagged", "pancreas_found", "series_key", *INPUTS,
                  "aorta_hu")
DEFAULT_PSI = 0.25


@dataclass(frozen=True, slots=True)
class Sweep:
    """What monitoring reads of one sweep's worklist."""

    name: str
    written_at: str
    scores: np.ndarray
    flagged: int
    pancreas_found: int
    scored: int
    rejected_by_content: int | None  # None where the worklist does not record it
    eligible_by_tags: int | None
    inputs: dict[str, list[object]]  # column -> values of scored series
    keys: list[str]

    @property
    def flagged_rate(self) -> float | None:
        return self.flagged / self.scored if self.scored else None

    @property
    def pancreas_rate(self) -> float | None:
        return self.pancreas_found / self.scored if self.scored else None

    @property
    def rejection_rate(self) -> float | None:
        if not self.eligible_by_tags or self.rejected_by_content is None:
            return None
        return self.rejected_by_content / self.eligible_by_tags


@dataclass(frozen=True, slots=True)
class Shift:
    what: str
    psi: float


@dataclass(frozen=True, slots=True)
class SweepReport:
    name: str
    written_at: str
    scored: int
    flagged_rate: float | None
    pancreas_found_rate: float | None
    content_rejection_rate: float | None
    score_psi: float
    score_ks: float
    score_ks_p: float
    input_psi: dict[str, float]
    inputs: dict[str, dict[str, float]]  # column -> category (or thickness bin) -> share
    score_histogram: list[float]
    median_aorta_hu: float | None
    shifts: list[Shift] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Calibration:
    """Reviewed flagged series by score bin: mean score against the share confirmed."""

    bins: list[dict[str, float]]
    reviewed: int
    brier: float | None


@dataclass(frozen=True, slots=True)
class MonitorReport:
    reference: str
    psi_threshold: float
    sweeps: list[SweepReport]
    calibration: Calibration | None

    @property
    def shifted(self) -> list[tuple[str, Shift]]:
        return [(s.name, shift) for s in self.sweeps for shift in s.shifts]

    def to_dict(self) -> dict[str, object]:
        return {"reference": self.reference, "psi_threshold": self.psi_threshold,
                "sweeps": [asdict(s) for s in self.sweeps],
                "calibration": asdict(self.calibration) if self.calibration else None,
                "shifted": [{"sweep": n, "what": s.what, "psi": s.psi} for n, s in self.shifted]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=_plain)


def _plain(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def read_sweep(path: Path) -> Sweep:
    """One sweep's worklist, checked: one clear line when it is not a worklist."""
    path = Path(path)
    try:
        names = pq.read_schema(path).names
    except (OSError, pa.ArrowInvalid) as exc:
        raise ValueError(f"cannot read sweep {path}: {exc}") from None
    if "score" not in names or "status" not in names:
        raise ValueError(f"{path} is not a worklist: it has no score or status column")
    present = [c for c in COLUMNS if c in names]
    table = pq.read_table(path, columns=present)
    ok = table.filter(pc.equal(table["status"], OK))
    provenance = tables.read_provenance(path)
    scores = ok["score"].to_numpy(zero_copy_only=False).astype(np.float64)

    def count(column: str) -> int:
        return int(pc.sum(ok[column].cast(pa.int64())).as_py() or 0) if column in present else 0

    inputs = {c: ok[c].to_pylist() if c in present else [None] * ok.num_rows for c in INPUTS}
    aorta = ok["aorta_hu"].to_pylist() if "aorta_hu" in present else []
    inputs["aorta_hu"] = aorta
    return Sweep(name=path.name if path.stem != "worklist" else f"{path.parent.name}/{path.name}",
                 written_at=str(provenance.get("written_at", "")), scores=scores,
                 flagged=count("flagged"), pancreas_found=count("pancreas_found"),
                 scored=ok.num_rows,
                 rejected_by_content=_int(provenance.get("rejected_by_content")),
                 eligible_by_tags=_int(provenance.get("eligible_by_tags")), inputs=inputs,
                 keys=ok["series_key"].to_pylist() if "series_key" in present else [])


def _int(value: object) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def psi(sweep: np.ndarray, reference: np.ndarray) -> float:
    """Population stability index of two share vectors over the same bins."""
    p = np.clip(np.asarray(sweep, float), EPSILON, None)
    q = np.clip(np.asarray(reference, float), EPSILON, None)
    p, q = p / p.sum(), q / q.sum()
    return float(np.sum((p - q) * np.log(p / q)))


def _shares_numeric(values: np.ndarray, bins: np.ndarray) -> np.ndarray:
    counts, _ = np.histogram(values, bins=bins)
    return counts / max(1, counts.sum())


def _shares_categorical(values: Sequence[object]) -> dict[str, float]:
    labels = ["(none)" if v is None or v == "" else str(v) for v in values]
    if not labels:
        return {}
    unique, counts = np.unique(np.asarray(labels, dtype=object), return_counts=True)
    return {str(u): float(c) / len(labels) for u, c in zip(unique, counts, strict=True)}


def _thickness_label(lo: float, hi: float) -> str:
    return f"{lo:g}-{hi:g} mm" if math.isfinite(hi) else f">{lo:g} mm"


def _input_shares(sweep: Sweep) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for column in INPUTS:
        values = sweep.inputs[column]
        if column == "slice_thickness_mm":
            numbers = np.asarray([v for v in values if v is not None], dtype=np.float64)
            shares = _shares_numeric(numbers, THICKNESS_BINS)
            out[column] = {_thickness_label(lo, hi): float(s) for lo, hi, s in
                           zip(THICKNESS_BINS[:-1], THICKNESS_BINS[1:], shares, strict=True)}
        else:
            out[column] = _shares_categorical(values)
    return out


def _categorical_psi(sweep: dict[str, float], reference: dict[str, float]) -> float:
    labels = sorted(set(sweep) | set(reference))
    if not labels:
        return 0.0
    return psi(np.array([sweep.get(k, 0.0) for k in labels]),
               np.array([reference.get(k, 0.0) for k in labels]))


def monitor(sweeps: Sequence[Path], reference: Path | None = None, *,
            decisions: Sequence[Path] = (), psi_threshold: float = DEFAULT_PSI) -> MonitorReport:
    """Every sweep against ``reference`` (default: the first sweep)."""
    from scipy import stats

    if not sweeps:
        raise ValueError("monitoring needs at least one sweep")
    if not psi_threshold > 0:
        raise ValueError(f"the PSI threshold must be positive, got {psi_threshold}")
    read = [read_sweep(p) for p in sweeps]
    ref = read_sweep(reference) if reference is not None else read[0]
    if ref.scored == 0:
        raise ValueError(f"the reference {ref.name} has no scored series")
    ref_hist = _shares_numeric(ref.scores, SCORE_BINS)
    ref_inputs = _input_shares(ref)
    reports = []
    for sweep in read:
        if sweep.scored == 0:
            raise ValueError(f"sweep {sweep.name} has no scored series")
        hist = _shares_numeric(sweep.scores, SCORE_BINS)
        shares = _input_shares(sweep)
        ks = stats.ks_2samp(sweep.scores, ref.scores)
        input_psi = {c: _categorical_psi(shares[c], ref_inputs[c]) for c in INPUTS}
        score_psi = psi(hist, ref_hist)
        shifts = [Shift("score", round(score_psi, 4))] if score_psi > psi_threshold else []
        shifts += [Shift(c, round(v, 4)) for c, v in input_psi.items() if v > psi_threshold]
        aorta = [v for v in sweep.inputs["aorta_hu"] if v is not None]
        reports.append(SweepReport(
            name=sweep.name, written_at=sweep.written_at, scored=sweep.scored,
            flagged_rate=sweep.flagged_rate, pancreas_found_rate=sweep.pancreas_rate,
            content_rejection_rate=sweep.rejection_rate, score_psi=round(score_psi, 4),
            score_ks=round(float(ks.statistic), 4), score_ks_p=float(ks.pvalue),
            input_psi={c: round(v, 4) for c, v in input_psi.items()}, inputs=shares,
            score_histogram=[round(float(h), 4) for h in hist],
            median_aorta_hu=round(float(np.median(aorta)), 1) if aorta else None, shifts=shifts))
    calibration = _calibration(read, decisions) if decisions else None
    return MonitorReport(ref.name, psi_threshold, reports, calibration)


def _calibration(sweeps: Sequence[Sweep], decision_files: Sequence[Path]) -> Calibration:
    from screen.review import decisions as decision_table

    verdicts: dict[str, list[str]] = {}
    for path in decision_files:
        for d in decision_table.read(path).sort_by("time").to_pylist():
            verdicts.setdefault(d["series_key"], []).append(d["decision"])
    pairs = []  # (score, confirmed) of reviewed series: the latest decision that was not unsure
    for sweep in sweeps:
        for key, score in zip(sweep.keys, sweep.scores, strict=False):
            said = [v for v in verdicts.get(key, []) if v != "unsure"]
            if said:
                pairs.append((float(score), said[-1] == "agree"))
    if not pairs:
        return Calibration([], 0, None)
    scores = np.array([p[0] for p in pairs])
    confirmed = np.array([p[1] for p in pairs], dtype=float)
    bins = []
    for lo, hi in zip(SCORE_BINS[:-1], SCORE_BINS[1:], strict=True):
        inside = (scores >= lo) & ((scores < hi) | (hi == 1.0))
        if inside.any():
            bins.append({"low": float(lo), "high": float(hi), "n": int(inside.sum()),
                         "mean_score": float(scores[inside].mean()),
                         "confirmed": float(confirmed[inside].mean())})
    return Calibration(bins, len(pairs), float(np.mean((scores - confirmed) ** 2)))
