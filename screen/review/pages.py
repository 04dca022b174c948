"""The review report: one page per rendered series and an index grouped by study.

Everything a page needs lives inside the review folder: the slice stack and the scripts are
inline, images are relative links, there are no fonts or remote resources, so the report
opens offline from a file share or a USB stick. The only links out are to the site's own
viewer, where one is configured, and only when clicked. Every value is HTML-escaped: series
descriptions come from the archive and may hold anything.

A worker writes a series' page while its volume is in memory, before the sweep has ranked
it; :func:`write_index` writes every page again from the final worklist, so the page shows
the series' rank and flag and the same facts as the index.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from html import escape
from pathlib import Path

import pyarrow as pa

from screen.atomic import write_bytes_atomic
from screen.file_names import page_key
from screen.review import decisions, scripts
from screen.review.images import LESION_RGB, PANCREAS_RGB
from screen.review.stack import ALPHABET, Stack, load_stack, to_text
from screen.review.viewer import ViewerLink
from screen.tables import dicom_date
from screen.worklist_row import OK, WorklistRow, from_table

logger = logging.getLogger(__name__)

INDEX = "index.html"
SERIES_DIR = "series"
IMAGES_DIR = "images"
DISPLAY_PX = 512  # the slice viewer's longer side on screen

# Window presets (centre, width) in HU; pancreas 350/40 is the pancreatic-protocol window.
PRESETS = (("Soft tissue", 40, 400), ("Pancreas", 40, 350), ("Wide", 0, 2000))
LOCATION_WORDS = {"head": "the pancreatic head/uncinate process", "body": "the pancreatic body",
                  "tail": "the pancreatic tail"}

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif;margin:1.5em;color:#111}
h1{font-size:1.4em;margin:0 0 .3em}
p.note{color:#555;font-size:.9em;margin:.2em 0 1em}
p.finding{font-size:1.15em;margin:.4em 0}
p.why{margin:.2em 0 1em}
table{border-collapse:collapse;font-size:.9em}
th,td{border-bottom:1px solid #ddd;padding:.3em .6em;text-align:left;vertical-align:middle}
th{background:#f3f3f3;position:sticky;top:0}
tbody.study tr.head td{background:#eef2f7;font-weight:600}
tr.flagged td{background:#fff4f0}
td.num{text-align:right;font-variant-numeric:tabular-nums}
td.thumb img{display:block;width:128px;height:auto;background:#000}
.key{display:inline-block;width:1em;height:.7em;margin:0 .3em 0 .8em}
figure{display:inline-block;margin:0 1em 1em 0;vertical-align:top}
figure img{display:block;background:#000;max-width:100%;height:auto}
figcaption{font-size:.85em;color:#444}
dl{display:grid;grid-template-columns:max-content auto;gap:.2em 1em}
dt{font-weight:600}
dd{margin:0}
.error{color:#a00}
.controls{margin:.5em 0;display:flex;flex-wrap:wrap;gap:.4em 1em;align-items:center}
#frame{position:relative;display:inline-block;background:#000;cursor:ns-resize;user-select:none}
#frame canvas{display:block}
#outline{position:absolute;left:0;top:0;width:100%;height:100%;image-rendering:pixelated}
.orient{position:absolute;color:#ff0;font:600 14px monospace;text-shadow:0 0 2px #000}
.o-top{top:4px;left:50%}.o-bottom{bottom:4px;left:50%}.o-left{left:6px;top:50%}.o-right{right:6px;top:50%}
#scalebar{position:absolute;left:10px;bottom:10px;border-bottom:2px solid #ff0;color:#ff0;padding-bottom:2px;
 font:12px monospace;text-align:center;text-shadow:0 0 2px #000}
.readout{font-variant-numeric:tabular-nums;font-family:monospace}
#decision textarea{width:32em;height:4em;display:block;margin:.3em 0}
"""


def image_paths(out_dir: Path, series_key: str) -> dict[str, Path]:
    key = page_key(series_key)
    folder = Path(out_dir) / IMAGES_DIR
    paths = {view: folder / f"{key}-{view}.png" for view in ("axial", "coronal", "thumb")}
    return paths | {"stack": folder / f"{key}-stack.png"}


def page_path(out_dir: Path, series_key: str) -> Path:
    return Path(out_dir) / SERIES_DIR / f"{page_key(series_key)}.html"


def _text(value: object, missing: str = "—") -> str:
    if value is None or value == "":
        return missing
    return escape(str(value))


def _number(value: object, digits: int, unit: str = "") -> str:
    if value is None:
        return "—"
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return escape(str(value))
    if math.isnan(number):
        return "—"
    return f"{number:.{digits}f}{unit}"


def _percent(value: float) -> str:
    return f"{100.0 * value:.0f}%"


def _flag(value: object) -> str:
    return "yes" if value is True else ("no" if value is False else "—")


def iso_date(value: object) -> str | None:
    """A study date as YYYY-MM-DD, from a date or DICOM's YYYYMMDD; None when it is neither."""
    day = value if isinstance(value, date) else dicom_date(value)  # type: ignore[arg-type]
    return day.isoformat() if day is not None else None


def _json_script(element_id: str, value: object) -> str:
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=True).replace("</", "<\\/")
    return f'<script id="{element_id}" type="application/json">{text}</script>'


def _document(title: str, body: str, script: str = "", decisions_src: str | None = None) -> bytes:
    loader = f'<script src="{decisions_src}"></script>' if decisions_src else ""
    tail = f"{loader}<script>{script}</script>" if script else ""
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{escape(title)}</title><style>{CSS}</style></head>\n<body>\n{body}\n{tail}"
        "</body></html>\n"
    ).encode()


def _swatch(rgb: tuple[int, int, int]) -> str:
    return f'<span class="key" style="background:rgb{rgb}"></span>'


# ------------------------------------------------------------------------------------------
# Words


def finding_sentence(row: WorklistRow) -> str:
    """The finding as a reader would say it (plain text, not yet escaped)."""
    if row.status != OK:
        return f"Not scored: {row.error or row.status or 'unknown reason'}."
    score = float(row.score)  # type: ignore[arg-type]
    if row.pancreas_found is False:
        return f"No pancreas found in this series; probability {_percent(score)}."
    location = row.lesion_location
    diameter = row.lesion_diameter_mm
    if row.lesion_x_mm is None:
        return f"No lesion candidate; probability {_percent(score)}."
    where = f" in {LOCATION_WORDS.get(str(location), str(location))}" if location else ""
    size = f", {float(diameter):.0f} mm" if diameter is not None else ""  # type: ignore[arg-type]
    return f"Suspicious region{where}{size}, probability {_percent(score)}."


def flag_reason(row: WorklistRow, stack: Stack | None, threshold: float | None) -> str:
    """Why the series was flagged (or not), including when there is no lesion candidate."""
    if row.status != OK:
        return ""
    score = float(row.score)  # type: ignore[arg-type]
    against = f" the threshold of {_percent(threshold)}" if threshold is not None else " the threshold"
    if row.flagged is True:
        reason = f"Flagged: its probability {_percent(score)} is at or above{against}."
    elif row.flagged is False:
        reason = f"Not flagged: its probability {_percent(score)} is below{against}."
    else:
        reason = ""
    peak = stack.peak if stack is not None else None
    if peak is not None and row.lesion_x_mm is None:
        # No candidate to point at: say where the detector saw the most, and how much.
        where = f" in {LOCATION_WORDS.get(peak.location, peak.location)}" if peak.location else ""
        x, y, z = peak.lps_mm
        reason += (f" No region passed the lesion threshold; the highest lesion probability, "
                   f"{_percent(peak.probability)}, lies{where} at ({x:.1f}, {y:.1f}, {z:.1f}) mm "
                   f"(LPS), slice {peak.slice + 1} of the stack.")
    return reason.strip()


# ------------------------------------------------------------------------------------------
# Series page


def write_series_page(out_dir: Path, row: WorklistRow, *, viewer: ViewerLink | None = None,
                      threshold: float | None = None) -> Path:
    """The page for one series: the finding in words, its slices to scroll and window, its
    facts, a link to the site's viewer and the reviewers' decisions."""
    key = row.series_key
    path = page_path(out_dir, key)
    images = image_paths(out_dir, key)
    stack = load_stack(images["stack"])
    centre = [row.lesion_x_mm, row.lesion_y_mm, row.lesion_z_mm]
    centre_text = ("—" if any(c is None for c in centre)
                   else "(" + ", ".join(_number(c, 1) for c in centre) + ") mm")
    facts = [
        ("Rank", _text(row.rank)),
        ("Score", _number(row.score, 3)),
        ("Flagged for review", _flag(row.flagged)),
        ("Lesion location", _text(row.lesion_location)),
        ("Lesion diameter", _number(row.lesion_diameter_mm, 1, " mm")),
        ("Lesion centre (LPS)", centre_text),
        ("Pancreas found", _flag(row.pancreas_found)),
        ("Pancreas volume", _number(row.pancreas_volume_ml, 1, " ml")),
        ("Patient", _text(row.patient_id)),
        ("Accession", _text(row.accession_number)),
        ("Study date", _text(iso_date(row.study_date) or row.study_date)),
        ("Series", _text(row.series_description)),
        ("Study UID", _text(row.study_instance_uid)),
        ("Series UID", _text(row.series_instance_uid)),
        ("Key image (SOP Instance UID)", _text(row.key_sop_instance_uid)),
        ("Model", _text(f"{row.model or ''} {row.model_version or ''}".strip())),
    ]
    link = viewer.url(row.as_dict()) if viewer is not None else None
    open_link = (f'<p><a id="viewer-link" href="{escape(link)}" target="_blank" rel="noopener">'
                 "Open the study in the viewer</a></p>" if link else "")
    body = (
        '<p><a href="../index.html">&larr; Worklist</a></p>'
        f"<h1>Series {_text(row.series_description, 'without description')}</h1>"
        f'<p class="finding" id="finding">{escape(finding_sentence(row))}</p>'
        f'<p class="why" id="why">{escape(flag_reason(row, stack, threshold))}</p>'
        f"{open_link}"
        "<p class=\"note\">For specialist review. The probability ranks series for reading; "
        "it is not a diagnosis.</p>"
        + (_viewer_html(stack) if stack is not None else "")
        + "<dl>" + "".join(f"<dt>{name}</dt><dd>{value}</dd>" for name, value in facts) + "</dl>"
        + _key_images(images, with_axial=stack is None)
        + _decision_html(key)
    )
    script = scripts.DECISIONS_JS + (scripts.VIEWER_JS if stack is not None else "") + \
        scripts.DECISION_FORM_JS
    return write_bytes_atomic(path, _document(f"Series {key}", body, script,
                                              decisions_src=f"../{decisions.DECISIONS_JS}"))


def _viewer_html(stack: Stack) -> str:
    scale = DISPLAY_PX / max(stack.rows, stack.cols)
    width, height = round(stack.cols * scale), round(stack.rows * scale)
    presets = "".join(
        f'<button type="button" class="preset" data-centre="{c}" data-width="{w}">'
        f"{escape(name)} W{w}/L{c}</button>" for name, c, w in PRESETS)
    toggles = (
        f'<label><input type="checkbox" class="outline" data-bit="1" checked>{_swatch(PANCREAS_RGB)}'
        "pancreas</label>"
        f'<label><input type="checkbox" class="outline" data-bit="2" checked>{_swatch(LESION_RGB)}'
        "suspected lesion</label>")
    return (
        '<section id="viewer">'
        f'<div class="controls">{presets}<span class="readout" id="window"></span></div>'
        f'<div id="frame"><canvas id="slice" style="width:{width}px;height:{height}px"></canvas>'
        '<canvas id="outline"></canvas>'
        '<span class="orient o-top">A</span><span class="orient o-bottom">P</span>'
        '<span class="orient o-left">R</span><span class="orient o-right">L</span>'
        '<div id="scalebar"></div></div>'
        f'<div class="controls">{toggles}<span class="readout" id="position"></span>'
        '<span class="readout" id="hu"></span></div>'
        '<p class="note">Scroll with the mouse wheel or the arrow keys; drag on the image to '
        "change the window (left-right: width, up-down: level).</p>"
        f"{_json_script('stack', stack.metadata() | {'png_bytes': len(stack.png), 'alphabet': ALPHABET})}"
        f'<script id="stack-png" type="text/plain">{to_text(stack.png)}</script></section>'
    )


def _key_images(images: Mapping[str, Path], with_axial: bool) -> str:
    views = ("axial", "coronal") if with_axial else ("coronal",)
    return "".join(
        f'<figure><img src="../{IMAGES_DIR}/{escape(images[view].name)}" alt="{view} key image">'
        f"<figcaption>{view.capitalize()} through the key point, soft-tissue window</figcaption>"
        "</figure>"
        for view in views if images[view].is_file())


def _decision_html(key: str) -> str:
    buttons = "".join(f'<button type="button" class="decide" value="{v}">{v.capitalize()}</button> '
                      for v in ("agree", "disagree", "unsure"))
    return (
        f'<section id="decision" data-key="{escape(key)}"><h2>Review</h2>'
        '<textarea id="note" placeholder="Note (optional)"></textarea>'
        f'{buttons}<span id="decision-state"></span>'
        "<h3>Decisions recorded</h3><ul id=\"decisions\"></ul></section>"
    )


# ------------------------------------------------------------------------------------------
# Index


def write_index(out_dir: Path, worklist: pa.Table, *, viewer: ViewerLink | None = None,
                threshold: float | None = None) -> Path:
    """``index.html``: the worklist grouped by study, to sort and filter, with links to each
    series' page; every rendered series' page is written again from its final row.

    Series without a rendered page (not flagged, not among the first N) are listed without
    thumbnail or link, so that every link in the report leads to a file that exists.
    """
    if not isinstance(worklist, pa.Table):
        raise TypeError(f"write_index needs a pyarrow Table, got {type(worklist).__name__}")
    out_dir = Path(out_dir)
    rows = from_table(worklist)
    for row in rows:
        if page_path(out_dir, row.series_key).is_file():
            write_series_page(out_dir, row, viewer=viewer, threshold=threshold)
    if not (out_dir / decisions.DECISIONS_JS).is_file():
        decisions.write_js(out_dir)

    studies: dict[str, list[WorklistRow]] = {}
    for row in rows:
        studies.setdefault(str(row.study_instance_uid or row.series_key), []).append(row)
    groups = [_study_group(out_dir, members, viewer) for members in studies.values()]
    ok = [r for r in rows if r.status == OK]
    flagged = sum(1 for r in ok if r.flagged is True)
    models = sorted({f"{r.model or ''} {r.model_version or ''}".strip() for r in ok} - {""})
    locations = sorted({str(r.lesion_location) for r in ok if r.lesion_location})
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    header = ("<tr><th>Rank</th><th>Key image</th><th>Score</th><th>Flagged</th><th>Location</th>"
              "<th>Diameter</th><th>Study date</th><th>Series</th><th>Status</th><th>Review</th>"
              "<th>Viewer</th></tr>")
    options = "".join(f'<option value="{escape(v)}">{escape(v)}</option>' for v in locations)
    controls = (
        '<div class="controls">'
        '<label><input type="checkbox" id="flagged-only"> flagged only</label>'
        f'<label>Location <select id="location"><option value="">any</option>{options}</select></label>'
        '<label>From <input type="date" id="from"></label><label>to <input type="date" id="to"></label>'
        '<label>Sort <select id="sort"><option value="rank">by rank</option>'
        '<option value="date-new">newest first</option><option value="date-old">oldest first</option>'
        '</select></label><span id="counts"></span></div>')
    body = (
        "<h1>Pancreas screening worklist</h1>"
        f"<p class=\"note\">{len(ok)} series scored in {len(studies)} studies, {flagged} flagged for "
        f"review, {len(rows) - len(ok)} could not be scored. Model: {_text(', '.join(models))}. "
        f"Written {when}. The score ranks series for reading; it is not a diagnosis.</p>"
        f"{controls}<table id=\"worklist\"><thead>{header}</thead>\n" + "\n".join(groups)
        + "\n</table>"
    )
    return write_bytes_atomic(out_dir / INDEX, _document(
        "Pancreas screening worklist", body, scripts.INDEX_JS, decisions_src=decisions.DECISIONS_JS))


def _study_group(out_dir: Path, members: Sequence[WorklistRow],
                 viewer: ViewerLink | None) -> str:
    first = members[0]
    ranks = [r.rank for r in members if r.rank is not None]
    day = iso_date(first.study_date) or ""
    n_flagged = sum(1 for r in members if r.flagged is True)
    head = (
        f'<tr class="head"><td colspan="11">Study {_text(day, "(no date)")} · patient '
        f"{_text(first.patient_id)} · accession {_text(first.accession_number)} · "
        f"{len(members)} series, {n_flagged} flagged</td></tr>")
    return (f'<tbody class="study" data-date="{escape(day)}" '
            f'data-rank="{min(ranks) if ranks else 10**9}">{head}'
            + "".join(_index_row(out_dir, r, viewer) for r in members) + "</tbody>")


def _index_row(out_dir: Path, row: WorklistRow, viewer: ViewerLink | None) -> str:
    key = row.series_key
    page = page_path(out_dir, key)
    thumb = image_paths(out_dir, key)["thumb"]
    has_page = page.is_file()
    link_open = f'<a href="{SERIES_DIR}/{escape(page.name)}">' if has_page else ""
    link_close = "</a>" if has_page else ""
    picture = (f'{link_open}<img src="{IMAGES_DIR}/{escape(thumb.name)}" alt="key image">{link_close}'
               if has_page and thumb.is_file() else "")
    status = row.status
    status_text = ("ok" if status == OK
                   else f'<span class="error">{_text(status)}: {_text(row.error)}</span>')
    description = _text(row.series_description, "(no description)")
    flagged = row.flagged is True
    link = viewer.url(row.as_dict()) if viewer is not None else None
    open_link = f'<a class="viewer" href="{escape(link)}" target="_blank" rel="noopener">open</a>' if link else ""
    return (
        f'<tr class="series{" flagged" if flagged else ""}" data-flagged="{"yes" if flagged else "no"}" '
        f'data-location="{escape(str(row.lesion_location or ""))}">'
        f"<td class=\"num\">{_text(row.rank)}</td><td class=\"thumb\">{picture}</td>"
        f"<td class=\"num\">{_number(row.score, 3)}</td><td>{_flag(row.flagged)}</td>"
        f"<td>{_text(row.lesion_location)}</td>"
        f"<td class=\"num\">{_number(row.lesion_diameter_mm, 1, ' mm')}</td>"
        f"<td>{_text(iso_date(row.study_date) or row.study_date)}</td>"
        f"<td>{link_open}{description}{link_close}</td><td>{status_text}</td>"
        f'<td class="decision" data-key="{escape(key)}"></td><td>{open_link}</td></tr>'
    )
