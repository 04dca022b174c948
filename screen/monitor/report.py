"""The monitoring page: one self-contained HTML file with inline SVG plots, nothing fetched."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from html import escape
from pathlib import Path

from screen.atomic import write_bytes_atomic
from screen.monitor.drift import INPUTS, SCORE_BINS, MonitorReport

COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")
W, H, PAD = 560, 220, 40
CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif;margin:1.5em;color:#111}
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.5em}
table{border-collapse:collapse;font-size:.85em}
th,td{border-bottom:1px solid #ddd;padding:.25em .5em;text-align:right}
th:first-child,td:first-child{text-align:left}
.shift{color:#a00;font-weight:600}
svg{background:#fafafa;border:1px solid #eee;margin:.3em 1em .3em 0}
.note{color:#555;font-size:.9em}
"""
LABELS = {"slice_thickness_mm": "slice thickness", "convolution_kernel": "kernel",
          "contrast_phase": "contrast phase (from aortic HU)", "scanner": "scanner"}


def _chart(title: str, series: Sequence[tuple[str, Sequence[float | None]]], x_labels: Sequence[str],
           *, y_max: float | None = None, line: float | None = None, percent: bool = False) -> str:
    values = [v for _, ys in series for v in ys if v is not None]
    top = y_max if y_max is not None else max([*values, line or 0.0, 1e-9]) * 1.1
    n = max(1, len(x_labels) - 1)

    def x(i: int) -> float:
        return PAD + (W - 2 * PAD) * (i / n if len(x_labels) > 1 else 0.5)

    def y(v: float) -> float:
        return H - PAD + (2 * PAD - H) * (v / top)

    parts = [f'<svg width="{W}" height="{H}" viewBox="0 0 {W} {H}" role="img" aria-label="{escape(title)}">',
             f'<text x="{PAD}" y="16" font-size="13">{escape(title)}</text>',
             f'<line x1="{PAD}" y1="{H - PAD}" x2="{W - PAD}" y2="{H - PAD}" stroke="#999"/>',
             f'<line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{H - PAD}" stroke="#999"/>',
             f'<text x="4" y="{PAD + 4}" font-size="10">{top * (100 if percent else 1):.3g}{"%" if percent else ""}</text>',
             f'<text x="4" y="{H - PAD}" font-size="10">0</text>']
    if line is not None:
        parts.append(f'<line x1="{PAD}" y1="{y(line):.1f}" x2="{W - PAD}" y2="{y(line):.1f}" '
                     'stroke="#a00" stroke-dasharray="4 3"/>')
    for i, label in enumerate(x_labels):
        if len(x_labels) <= 12 or i % max(1, len(x_labels) // 12) == 0:
            parts.append(f'<text x="{x(i):.1f}" y="{H - PAD + 14}" font-size="9" '
                         f'text-anchor="middle">{escape(label)}</text>')
    for n_series, (name, ys) in enumerate(series):
        colour = COLOURS[n_series % len(COLOURS)]
        points = [f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(ys) if v is not None]
        if points:
            parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{" ".join(points)}"/>')
            parts += [f'<circle cx="{p.split(",")[0]}" cy="{p.split(",")[1]}" r="2.5" fill="{colour}"/>' for p in points]
        parts.append(f'<text x="{W - PAD - 150}" y="{30 + 13 * n_series}" font-size="11" fill="{colour}">'
                     f"{escape(name)}</text>")
    parts.append("</svg>")
    return "".join(parts)


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


def write_html(report: MonitorReport, path: Path) -> Path:
    names = [str(n) for n in range(1, len(report.sweeps) + 1)]  # the table's # column
    rates = _chart("Rates per sweep", [
        ("flagged", [s.flagged_rate for s in report.sweeps]),
        ("pancreas found", [s.pancreas_found_rate for s in report.sweeps]),
        ("content rejected", [s.content_rejection_rate for s in report.sweeps])],
        names, y_max=1.0, percent=True)
    shifts = _chart(f"PSI against {report.reference} (dashed: {report.psi_threshold})", [
        ("score", [s.score_psi for s in report.sweeps]),
        *((LABELS[c], [s.input_psi[c] for s in report.sweeps]) for c in INPUTS)],
        names, line=report.psi_threshold)
    bins = [f"{lo:.1f}" for lo in SCORE_BINS[:-1]]
    reference = next((s for s in report.sweeps if s.name == report.reference), None)
    last = report.sweeps[-1]
    histogram = _chart("Score distribution: share of series per score bin", [
        *([(f"reference {report.reference}", reference.score_histogram)] if reference else []),
        (f"latest {last.name}", last.score_histogram)], bins)
    rows = "".join(
        f"<tr><td>{n}</td><td>{escape(s.name)}</td><td>{escape(s.written_at)}</td><td>{s.scored}</td>"
        f"<td>{_pct(s.flagged_rate)}</td><td>{_pct(s.pancreas_found_rate)}</td>"
        f"<td>{_pct(s.content_rejection_rate)}</td><td>{s.score_psi:.3f}</td>"
        f"<td>{s.score_ks:.3f} (p {s.score_ks_p:.2g})</td>"
        + "".join(f"<td>{s.input_psi[c]:.3f}</td>" for c in INPUTS)
        + f"<td>{'—' if s.median_aorta_hu is None else f'{s.median_aorta_hu:.0f}'}</td>"
        + f"<td class=\"shift\">{escape(', '.join(f'{x.what} {x.psi:.2f}' for x in s.shifts))}</td></tr>"
        for n, s in enumerate(report.sweeps, start=1))
    head = ("<tr><th>#</th><th>Sweep</th><th>Written</th><th>Scored</th><th>Flagged</th><th>Pancreas found</th>"
            "<th>Content rejected</th><th>Score PSI</th><th>Score KS</th>"
            + "".join(f"<th>{escape(LABELS[c])} PSI</th>" for c in INPUTS)
            + "<th>Median aortic HU</th><th>Shift</th></tr>")
    inputs = "".join(_input_table(report, c) for c in INPUTS)
    calibration = ""
    if report.calibration is not None:
        c = report.calibration
        calibration = ("<h2>Calibration against reviewers</h2><p class=\"note\">"
                       f"{c.reviewed} reviewed series (flagged ones, mostly: this is calibration "
                       "among what was reviewed). Brier score "
                       f"{'—' if c.brier is None else f'{c.brier:.3f}'}.</p><table><tr><th>Score bin</th>"
                       "<th>Series</th><th>Mean score</th><th>Confirmed</th></tr>"
                       + "".join(f"<tr><td>{b['low']:.1f}-{b['high']:.1f}</td><td>{b['n']:.0f}</td>"
                                 f"<td>{b['mean_score']:.2f}</td><td>{_pct(b['confirmed'])}</td></tr>"
                                 for b in c.bins) + "</table>")
    warn = (f"<p class=\"shift\">Shift beyond PSI {report.psi_threshold}: "
            + escape("; ".join(f"{n}: {s.what} {s.psi:.2f}" for n, s in report.shifted)) + "</p>"
            if report.shifted else "<p>No shift beyond the threshold.</p>")
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    body = (f"<h1>Screening quality across sweeps</h1><p class=\"note\">Reference: "
            f"{escape(report.reference)}. Written {when}.</p>{warn}{rates}{shifts}{histogram}"
            f"<h2>Sweeps</h2><table>{head}{rows}</table><h2>Inputs</h2>{inputs}{calibration}")
    html = (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Screening "
            f"quality</title><style>{CSS}</style></head><body>{body}</body></html>\n")
    return write_bytes_atomic(path, html.encode())


def _input_table(report: MonitorReport, column: str) -> str:
    categories = sorted({k for s in report.sweeps for k in s.inputs[column]})
    if len(categories) > 12:  # many scanners or kernels: the most common ones
        totals = {k: sum(s.inputs[column].get(k, 0.0) for s in report.sweeps) for k in categories}
        categories = sorted(sorted(totals, key=totals.__getitem__, reverse=True)[:12])
    head = "<tr><th>Sweep</th>" + "".join(f"<th>{escape(k)}</th>" for k in categories) + "</tr>"
    rows = "".join(f"<tr><td>{escape(s.name)}</td>"
                   + "".join(f"<td>{_pct(s.inputs[column].get(k, 0.0))}</td>" for k in categories)
                   + "</tr>" for s in report.sweeps)
    return f"<h3>{escape(LABELS[column])}</h3><table>{head}{rows}</table>"
