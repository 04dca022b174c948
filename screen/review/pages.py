"""The static review report: one page per rendered series and a ranked index.

Everything a page needs lives inside the review folder: images are relative links, the CSS is
inline, there are no scripts, fonts or remote resources, so the report opens offline from a
file share or a USB stick. Every value is HTML-escaped: series descriptions come from the
archive and may hold anything.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from html import escape
from pathlib import Path

import pyarrow as pa

from screen.atomic import write_bytes_atomic
from screen.file_names import page_key
from screen.review.images import LESION_RGB, PANCREAS_RGB

logger = logging.getLogger(__name__)

INDEX = "index.html"
SERIES_DIR = "series"
IMAGES_DIR = "images"
KEY_COLUMN = "series_key"

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif;margin:1.5em;color:#111}
h1{font-size:1.4em;margin:0 0 .3em}
p.note{color:#555;font-size:.9em;margin:.2em 0 1em}
table{border-collapse:collapse;font-size:.9em}
th,td{border-bottom:1px solid #ddd;padding:.3em .6em;text-align:left;vertical-align:middle}
th{background:#f3f3f3;position:sticky;top:0}
tr.flagged td{background:#fff4f0}
td.num{text-align:right;font-variant-numeric:tabular-nums}
td.thumb img{display:block;width:128px;height:auto;background:#000}
.key{display:inline-block;width:1em;height:.7em;margin:0 .3em 0 .8em}
figure{display:inline-block;margin:0 1em 1em 0}
figure img{display:block;background:#000;max-width:100%;height:auto}
figcaption{font-size:.85em;color:#444}
dl{display:grid;grid-template-columns:max-content auto;gap:.2em 1em}
dt{font-weight:600}
dd{margin:0}
.error{color:#a00}
"""


def series_key_of(row: Mapping[str, object]) -> str:
    key = row.get(KEY_COLUMN) or row.get("series_instance_uid")
    if not key:
        raise ValueError("a worklist row needs series_key or series_instance_uid to be reviewed")
    return str(key)


def image_paths(out_dir: Path, series_key: str) -> dict[str, Path]:
    key = page_key(series_key)
    folder = Path(out_dir) / IMAGES_DIR
    return {view: folder / f"{key}-{view}.png" for view in ("axial", "coronal", "thumb")}


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


def _flag(value: object) -> str:
    return "yes" if value is True else ("no" if value is False else "—")


def _document(title: str, body: str) -> bytes:
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{escape(title)}</title><style>{CSS}</style></head>\n<body>\n{body}\n</body></html>\n"
    ).encode()


def _legend() -> str:
    def swatch(rgb: tuple[int, int, int]) -> str:
        return f'<span class="key" style="background:rgb{rgb}"></span>'

    return (f"<p class=\"note\">Outlines: {swatch(PANCREAS_RGB)}pancreas"
            f"{swatch(LESION_RGB)}suspected lesion. Soft-tissue window W400/L40.</p>")


def write_series_page(out_dir: Path, row: Mapping[str, object], views: Sequence[str] = ("axial", "coronal")) -> Path:
    """The page for one series: its findings as text beside its key images."""
    key = series_key_of(row)
    path = page_path(out_dir, key)
    images = image_paths(out_dir, key)
    centre = [row.get(f"lesion_{axis}_mm") for axis in "xyz"]
    centre_text = ("—" if any(c is None for c in centre)
                   else "(" + ", ".join(_number(c, 1) for c in centre) + ") mm")
    facts = [
        ("Rank", _text(row.get("rank"))),
        ("Score", _number(row.get("score"), 3)),
        ("Flagged for review", _flag(row.get("flagged"))),
        ("Lesion location", _text(row.get("lesion_location"))),
        ("Lesion diameter", _number(row.get("lesion_diameter_mm"), 1, " mm")),
        ("Lesion centre (LPS)", centre_text),
        ("Pancreas found", _flag(row.get("pancreas_found"))),
        ("Pancreas volume", _number(row.get("pancreas_volume_ml"), 1, " ml")),
        ("Patient", _text(row.get("patient_id"))),
        ("Accession", _text(row.get("accession_number"))),
        ("Study date", _text(row.get("study_date"))),
        ("Series", _text(row.get("series_description"))),
        ("Study UID", _text(row.get("study_instance_uid"))),
        ("Series UID", _text(row.get("series_instance_uid"))),
        ("Key image (SOP Instance UID)", _text(row.get("key_sop_instance_uid"))),
        ("Model", _text(" ".join(str(row.get(c) or "") for c in ("model", "model_version")).strip())),
    ]
    figures = "".join(
        f'<figure><img src="../{IMAGES_DIR}/{escape(images[view].name)}" alt="{view} key image">'
        f"<figcaption>{view.capitalize()}</figcaption></figure>"
        for view in views
    )
    body = (
        '<p><a href="../index.html">&larr; Worklist</a></p>'
        f"<h1>Series {_text(row.get('series_description'), 'without description')}</h1>"
        "<p class=\"note\">For specialist review. The score ranks series for reading; "
        "it is not a diagnosis.</p>"
        "<dl>" + "".join(f"<dt>{name}</dt><dd>{value}</dd>" for name, value in facts) + "</dl>"
        + _legend() + figures
    )
    return write_bytes_atomic(path, _document(f"Series {key}", body))


def write_index(out_dir: Path, worklist: pa.Table) -> Path:
    """``index.html``: the ranked worklist with thumbnails and links to each series' page.

    Series without a rendered page (not flagged, not among the first N) are listed without
    thumbnail or link, so that every link in the report leads to a file that exists.
    """
    if not isinstance(worklist, pa.Table):
        raise TypeError(f"write_index needs a pyarrow Table, got {type(worklist).__name__}")
    out_dir = Path(out_dir)
    rows = worklist.to_pylist()
    header = ("<tr><th>Rank</th><th>Key image</th><th>Score</th><th>Flagged</th><th>Location</th>"
              "<th>Diameter</th><th>Patient</th><th>Accession</th><th>Study date</th>"
              "<th>Series</th><th>Status</th></tr>")
    lines = [_index_row(out_dir, row) for row in rows]
    ok = [r for r in rows if r.get("status") == "ok"]
    flagged = sum(1 for r in ok if r.get("flagged") is True)
    models = sorted({f"{r.get('model') or ''} {r.get('model_version') or ''}".strip() for r in ok} - {""})
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    body = (
        "<h1>Pancreas screening worklist</h1>"
        f"<p class=\"note\">{len(ok)} series scored, {flagged} flagged for review, "
        f"{len(rows) - len(ok)} could not be scored. Model: {_text(', '.join(models))}. "
        f"Written {when}. The score ranks series for reading; it is not a diagnosis.</p>"
        f"<table><thead>{header}</thead><tbody>\n" + "\n".join(lines) + "\n</tbody></table>"
    )
    return write_bytes_atomic(out_dir / INDEX, _document("Pancreas screening worklist", body))


def _index_row(out_dir: Path, row: Mapping[str, object]) -> str:
    key = series_key_of(row)
    page = page_path(out_dir, key)
    thumb = image_paths(out_dir, key)["thumb"]
    has_page = page.is_file()
    link_open = f'<a href="{SERIES_DIR}/{escape(page.name)}">' if has_page else ""
    link_close = "</a>" if has_page else ""
    picture = (f'{link_open}<img src="{IMAGES_DIR}/{escape(thumb.name)}" alt="key image">{link_close}'
               if has_page and thumb.is_file() else "")
    status = row.get("status")
    status_text = ("ok" if status == "ok"
                   else f'<span class="error">{_text(status)}: {_text(row.get("error"))}</span>')
    description = _text(row.get("series_description"), "(no description)")
    css = ' class="flagged"' if row.get("flagged") is True else ""
    return (
        f"<tr{css}><td class=\"num\">{_text(row.get('rank'))}</td><td class=\"thumb\">{picture}</td>"
        f"<td class=\"num\">{_number(row.get('score'), 3)}</td><td>{_flag(row.get('flagged'))}</td>"
        f"<td>{_text(row.get('lesion_location'))}</td>"
        f"<td class=\"num\">{_number(row.get('lesion_diameter_mm'), 1, ' mm')}</td>"
        f"<td>{_text(row.get('patient_id'))}</td><td>{_text(row.get('accession_number'))}</td>"
        f"<td>{_text(row.get('study_date'))}</td>"
        f"<td>{link_open}{description}{link_close}</td><td>{status_text}</td></tr>"
    )
