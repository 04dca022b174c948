"""The static report: every link resolves inside the folder, and a real browser shows it."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import pytest
from PIL import Image

from screen.review import page_key, render_series, write_index
from screen.worklist_row import WorklistRow, to_table


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.images: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("href", "src") and value is not None:
                self.links.append(value)
                if tag == "img":
                    self.images.append(value)


def _parse(page: Path) -> _Links:
    parser = _Links()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser


def _error_row(clean_row: WorklistRow) -> WorklistRow:
    return replace(clean_row, series_key="derived-unreadable/with slash", rank=None, flagged=None,
                   status="error", error="could not be loaded: <no pixel data>",
                   score=None, series_description="<script>alert(1)</script>")


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory, lesion_case, clean_case) -> Path:
    """A report with one rendered (flagged) series, one scored but not rendered, one error."""
    folder = tmp_path_factory.mktemp("pages")
    render_series(folder, lesion_case.series, lesion_case.volume, lesion_case.analysis,
                  lesion_case.row)
    rows = [lesion_case.row, clean_case.row, _error_row(clean_case.row)]
    write_index(folder, to_table(rows))
    return folder


def test_every_link_resolves_inside_the_report(report: Path) -> None:
    pages = sorted(report.rglob("*.html"))
    assert report / "index.html" in pages and len(pages) == 2
    for page in pages:
        for link in _parse(page).links:
            parsed = urlparse(link)
            assert not parsed.scheme and not parsed.netloc, f"{page.name} links outside: {link}"
            target = (page.parent / unquote(parsed.path)).resolve()
            assert target.is_relative_to(report.resolve()), f"{link} leaves the report"
            assert target.is_file(), f"{page.name} links to a missing file: {link}"


def test_the_index_lists_every_row_and_shows_thumbnails_only_for_rendered_series(
        report: Path, lesion_case, clean_case) -> None:
    index = report / "index.html"
    text = index.read_text(encoding="utf-8")
    assert text.count('<tr class="series') == 3
    assert text.count('<tbody class="study"') == 2  # the error row shares the clean row's study
    images = _parse(index).images
    assert images == [f"images/{lesion_case.series.key}-thumb.png"]
    assert clean_case.row.patient_id in text and "0.040" in text
    assert "could not be loaded: &lt;no pixel data&gt;" in text
    assert "<script>alert" not in text and "&lt;script&gt;alert" in text
    assert not re.search(r"https?:|//", text.replace("<!DOCTYPE html>", ""))


def test_the_series_page_writes_the_findings_as_text(report: Path, lesion_case) -> None:
    page = (report / "series" / f"{lesion_case.series.key}.html").read_text(encoding="utf-8")
    assert "0.910" in page and "body" in page and "20.0 mm" in page
    assert str(lesion_case.row.key_sop_instance_uid) in page


def test_page_keys_are_file_names() -> None:
    uid = "1.2.826.0.1.3680043.8.498.1"
    assert page_key(uid) == uid
    unsafe = page_key("derived-../../etc/passwd")
    assert re.fullmatch(r"s-[0-9a-f]{24}", unsafe)
    with pytest.raises(ValueError, match="non-empty string"):
        page_key("")


def test_write_index_needs_a_table(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="pyarrow Table"):
        write_index(tmp_path, [{"rank": 1}])  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------
# A real headless browser, offline.

_PROBE = """<script>
window.addEventListener('load', function () {
  var imgs = document.querySelectorAll('img'), bad = [];
  for (var n = 0; n < imgs.length; n++) {
    if (!(imgs[n].complete && imgs[n].naturalWidth > 0)) bad.push(imgs[n].getAttribute('src'));
  }
  document.body.setAttribute('data-images', String(imgs.length));
  document.body.setAttribute('data-broken', bad.join(' '));
  document.body.setAttribute('data-probed', 'yes');
});
</script>"""


def _browser() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("no Chromium found (Debian: apt-get install chromium)")


def _run_browser(browser: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--window-size=1200,900",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--no-first-run", f"--user-data-dir={profile}", "--virtual-time-budget=5000"]
    return subprocess.run([browser, *flags, *args], capture_output=True, text=True, timeout=120,
                          check=False)


@pytest.mark.slow
def test_a_headless_browser_shows_the_report_with_every_image(report: Path, tmp_path_factory) -> None:
    browser = _browser()
    profile = tmp_path_factory.mktemp("browser-profile")
    index = report / "index.html"
    series_page = next((report / "series").glob("*.html"))
    for page in (index, series_page):
        probe = page.with_name("probe.html")
        probe.write_text(page.read_text(encoding="utf-8").replace("</body>", _PROBE + "</body>"),
                         encoding="utf-8")
        done = _run_browser(browser, profile, "--dump-dom", probe.as_uri())
        assert done.returncode == 0, done.stderr[-2000:]
        body = re.search(r"<body([^>]*)>", done.stdout)
        assert body and 'data-probed="yes"' in body.group(1), done.stdout[:2000]
        assert 'data-broken=""' in body.group(1), f"images that did not load: {body.group(1)}"
        assert not re.search(r'data-images="0"', body.group(1))
        probe.unlink()

    shot = tmp_path_factory.mktemp("shot") / "index.png"
    done = _run_browser(browser, profile, f"--screenshot={shot}", index.as_uri())
    assert done.returncode == 0 and shot.is_file(), done.stderr[-2000:]
    with Image.open(shot) as image:
        pixels = np.asarray(image.convert("L"), dtype=np.float32)
    assert image.size == (1200, 900)
    assert pixels.std() > 10.0, "the screenshot is blank"
    assert (pixels < 64).sum() > 1000, "no dark image content (thumbnails) in the screenshot"
