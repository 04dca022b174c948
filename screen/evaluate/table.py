"""An :class:`Evaluation` as rich tables: overall results, strata, and what was missing."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text

from screen.evaluate.evaluation import Evaluation
from screen.metrics import Interval


def _fraction(value: Interval | None, numerator: int, denominator: int) -> tuple[str, str]:
    """A rate as 'k/n (xx.x %)' and its interval, or a dash when it has no value."""
    if value is None:
        return f"{numerator}/{denominator}", "-"
    return (
        f"{numerator}/{denominator} ({100 * value.estimate:.1f} %)",
        f"{100 * value.low:.1f}-{100 * value.high:.1f} %",
    )


def _auroc_text(value: Interval | None) -> tuple[str, str]:
    if value is None:
        return "-", "-"
    text = f"{value.low:.3f}-{value.high:.3f}"
    if value.skipped:
        text += f" ({value.skipped} resamples skipped)"
    return f"{value.estimate:.3f}", text


def render_table(evaluation: Evaluation) -> Group:
    """The report as rich tables: overall results, strata, and what was missing."""
    ev = evaluation
    c = ev.confusion
    overall = Table(title=f"Evaluation at {ev.operating_point}", title_justify="left")
    overall.add_column("Measure")
    overall.add_column("Value", justify="right")
    overall.add_column("95 % CI", justify="right")
    overall.add_row("Series (positive / negative)", f"{ev.n_positive} / {ev.n_negative}", "")
    overall.add_row("AUROC", *_auroc_text(ev.auroc))
    overall.add_row("Sensitivity", *_fraction(c.sensitivity, c.tp, c.tp + c.fn))
    overall.add_row("Specificity", *_fraction(c.specificity, c.tn, c.tn + c.fp))
    overall.add_row("PPV", *_fraction(c.ppv, c.tp, c.tp + c.fp))
    overall.add_row("NPV", *_fraction(c.npv, c.tn, c.tn + c.fn))
    n_flagged_pos = c.tp
    n_localised = sum(x.localised for x in ev.cases)
    overall.add_row(
        "Lesion found, of flagged positives",
        *_fraction(ev.localisation_flagged, n_localised, n_flagged_pos),
    )
    overall.add_row(
        "Lesion found, of all positives",
        *_fraction(ev.localisation_all, n_localised, ev.n_positive),
    )

    strata = Table(
        title="By lesion size (mm) and location (positives against all negatives)",
        title_justify="left",
    )
    for name in ("Stratum", "Positives", "AUROC", "Sensitivity", "Found (flagged)", "Note"):
        strata.add_column(name, justify="left" if name in ("Stratum", "Note") else "right")
    for s in ev.strata:
        label = f"{s.value} mm" if s.kind == "size" else s.value
        if s.sensitivity is None:
            strata.add_row(label, str(s.n_positive), "-", "-", "-", s.note)
            continue
        auroc_value, auroc_ci = _auroc_text(s.auroc)
        strata.add_row(
            label,
            str(s.n_positive),
            f"{auroc_value} ({auroc_ci})" if s.auroc else "-",
            " ".join(_fraction(s.sensitivity, s.n_flagged, s.n_positive)),
            _fraction(s.localisation_flagged, s.n_localised, s.n_flagged)[0],
            s.note,
        )

    parts: list[Table | Text] = [overall, strata]
    for title, uids in (
        ("missing from the worklist", ev.missing_uids),
        ("in error in the worklist", ev.error_uids),
    ):
        if uids:
            shown = ", ".join(uids[:10]) + (f" and {len(uids) - 10} more" if len(uids) > 10 else "")
            parts.append(Text(f"{len(uids)} truth series {title} (counted as misses): {shown}"))
    if ev.n_unmatched_rows:
        parts.append(Text(f"{ev.n_unmatched_rows} worklist series not in the truth (not used)"))
    return Group(*parts)
