"""The review report in a real browser: offline pages, a slice viewer that scrolls and
windows, the viewer link, and decisions recorded through `screen review`.

Screenshots go to $SCREEN_SCREENSHOTS when it is set (to look at them), else to a temporary
folder.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pyarrow.parquet as pq
import pytest
from review_browser import chrome, screenshot

from screen.review.decisions import DECISIONS
from screen.review.pages import PRESETS, image_paths, page_path
from screen.review.server import ReviewServer
from screen.review.stack import load_stack

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def session():
    with chrome() as browser:
        yield browser


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = os.environ.get("SCREEN_SCREENSHOTS")
    return Path(where) if where else tmp_path_factory.mktemp("screenshots")


def _wait(session, condition, timeout: float = 10.0):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(session, timeout).until(lambda s: condition(s))


def _open_series(session, url: str) -> None:
    session.get(url)
    _wait(session, lambda s: s.find_element("tag name", "body").get_attribute("data-ready") == "yes")


def _requests(session, inside: str) -> list[str]:
    """Every URL the report's pages asked for, from the DevTools network log. The log also
    holds what the browser's own pages (chrome://, a new tab's) load: those are left out by
    the document that asked."""
    urls = []
    for entry in session.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message.get("method") == "Network.requestWillBeSent":
            params = message["params"]
            if params.get("documentURL", "").startswith(inside):
                urls.append(params["request"]["url"])
    return urls


def test_index_and_series_page_load_with_no_request_leaving_the_folder(
        session, review_report: Path, lesion_case, shots: Path) -> None:
    inside = review_report.resolve().as_uri() + "/"
    session.get_log("performance")  # start from an empty log
    session.get((review_report / "index.html").as_uri())
    _wait(session, lambda s: "Showing" in s.find_element("id", "counts").text)
    screenshot(session, shots, "index")
    _open_series(session, page_path(review_report, lesion_case.series.key).as_uri())
    screenshot(session, shots, "series")
    urls = _requests(session, inside)
    assert any(u.endswith("index.html") for u in urls) and any("/series/" in u for u in urls)
    leaving = [u for u in urls if not (u.startswith(inside) or u.startswith("data:"))]
    assert leaving == [], f"requests leaving the report: {leaving}"
    resources = session.execute_script(
        "return performance.getEntriesByType('resource').map(function (e) { return e.name; })")
    assert all(r.startswith(inside) or r.startswith("data:") for r in resources), resources
    errors = [e for e in session.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == [], errors


def test_scrolling_changes_the_slice_and_the_position_shown(session, review_report: Path,
                                                            lesion_case, shots: Path) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.actions.wheel_input import ScrollOrigin

    _open_series(session, page_path(review_report, lesion_case.series.key).as_uri())
    frame = session.find_element("id", "frame")
    stack = load_stack(image_paths(review_report, lesion_case.series.key)["stack"])
    start = int(frame.get_attribute("data-slice"))
    assert start == stack.key_slice
    assert f"{stack.positions_mm[start]:.1f} mm" in session.find_element("id", "position").text
    ActionChains(session).scroll_from_origin(ScrollOrigin.from_element(frame), 0, 120).perform()
    _wait(session, lambda s: int(frame.get_attribute("data-slice")) == start + 1)
    position = session.find_element("id", "position").text
    assert f"Slice {start + 2} of {len(stack.slices_k)}" in position
    assert f"{stack.positions_mm[start + 1]:.1f} mm" in position
    screenshot(session, shots, "scrolled")
    ActionChains(session).send_keys("\ue015\ue015\ue015").perform()  # arrow down, three times
    _wait(session, lambda s: int(frame.get_attribute("data-slice")) == start + 4)
    assert stack.positions_mm[start + 4] < stack.positions_mm[start]  # down the stack is down the patient


def _canvas(session) -> np.ndarray:
    data = session.execute_script(
        "var c = document.getElementById('slice');"
        "return Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data);")
    return np.asarray(data, dtype=np.uint8)


def test_a_window_preset_changes_the_pixels_to_the_windowed_hu(session, review_report: Path,
                                                               lesion_case, shots: Path) -> None:
    _open_series(session, page_path(review_report, lesion_case.series.key).as_uri())
    stack = load_stack(image_paths(review_report, lesion_case.series.key)["stack"])
    before = _canvas(session)
    name, centre, width = PRESETS[2]
    session.find_element("css selector", f"button.preset[data-width='{width}']").click()
    _wait(session, lambda s: s.find_element("id", "frame").get_attribute("data-window") == f"{width}/{centre}")
    after = _canvas(session)
    screenshot(session, shots, "wide-window")
    assert (before != after).mean() > 0.3, f"the {name} preset hardly changed the image"
    # The canvas shows exactly the stored HU through the window: the page decodes them losslessly.
    hu = stack.hu()[stack.key_slice].astype(np.float64)
    expected = np.clip((hu - (centre - width / 2)) * 255.0 / width, 0, 255)
    shown = after.reshape(stack.rows, stack.cols, 4)[..., 0].astype(np.float64)
    assert np.abs(shown - expected).max() <= 1.0


def test_the_viewer_link_carries_the_study_uid(session, review_report: Path, lesion_case) -> None:
    _open_series(session, page_path(review_report, lesion_case.series.key).as_uri())
    study = str(lesion_case.row.study_instance_uid)
    href = session.find_element("id", "viewer-link").get_attribute("href")
    assert href == f"https://pacs.example/viewer?StudyInstanceUIDs={quote(study, safe='')}"
    session.get((review_report / "index.html").as_uri())
    links = [a.get_attribute("href") for a in session.find_elements("css selector", "a.viewer")]
    assert any(study in link for link in links)


def test_a_decision_through_the_server_is_kept_across_a_restart(session, review_report: Path,
                                                               lesion_case, shots: Path) -> None:
    key = lesion_case.series.key
    note = "calcified duct, not a mass"
    with ReviewServer(review_report, "dr-north") as server:
        session.get(server.url)
        session.find_element("css selector", f"a[href='series/{page_path(review_report, key).name}']").click()
        _wait(session, lambda s: s.find_element("tag name", "body").get_attribute("data-ready") == "yes")
        session.find_element("id", "note").send_keys(note)
        session.find_element("css selector", "button.decide[value='disagree']").click()
        _wait(session, lambda s: s.find_element("id", "decision-state").text.startswith("Recorded"))
        screenshot(session, shots, "decided")
    rows = [r for r in pq.read_table(review_report / DECISIONS).to_pylist() if r["reviewer"] == "dr-north"]
    assert [(r["series_key"], r["decision"], r["note"]) for r in rows] == [(key, "disagree", note)]

    with ReviewServer(review_report, "dr-south") as again:  # a new server, a new token
        assert again.token != server.token
        _open_series(session, again.url.replace("index.html", f"series/{page_path(review_report, key).name}"))
        assert note in session.find_element("id", "decisions").text
    # Opened as a file, without any server, the page still shows the decision recorded.
    _open_series(session, page_path(review_report, key).as_uri())
    assert "disagree (dr-north" in session.find_element("id", "decisions").text
    assert session.find_element("css selector", "button.decide").get_attribute("disabled")
    session.get((review_report / "index.html").as_uri())
    assert note in session.find_element("css selector", f"td.decision[data-key='{key}']").text


def test_a_request_without_the_token_is_refused(review_report: Path, lesion_case) -> None:
    with ReviewServer(review_report, "dr-north") as server:
        base = f"http://127.0.0.1:{server.port}"
        for path in ("/index.html", "/", f"/{server.token[:-1]}x/index.html",
                     f"/series/{page_path(review_report, lesion_case.series.key).name}"):
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(base + path, timeout=5)
            assert refused.value.code == 403, path
        post = urllib.request.Request(base + "/decision", method="POST", data=json.dumps(
            {"series_key": lesion_case.series.key, "decision": "agree"}).encode(),
            headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(post, timeout=5)
        assert refused.value.code == 403
        with urllib.request.urlopen(server.url, timeout=5) as page:
            assert page.status == 200 and b"Pancreas screening worklist" in page.read()
        assert not (review_report / DECISIONS).exists() or all(
            r["reviewer"] != "dr-north" or r["decision"] != "agree"
            for r in pq.read_table(review_report / DECISIONS).to_pylist())


def test_the_index_groups_by_study_and_filters_and_sorts(session, review_report: Path,
                                                         lesion_case, clean_case, shots: Path) -> None:
    from selenium.webdriver.support.ui import Select

    session.get((review_report / "index.html").as_uri())
    counts = session.find_element("id", "counts")
    assert counts.text == "Showing 2 series in 2 studies."

    def shown() -> list[str]:
        return [b.get_attribute("data-date") for b in session.find_elements("css selector", "tbody.study")
                if b.is_displayed()]

    by_rank = shown()
    session.find_element("id", "flagged-only").click()
    assert counts.text == "Showing 1 series in 1 studies." and len(shown()) == 1
    session.find_element("id", "flagged-only").click()
    Select(session.find_element("id", "sort")).select_by_value("date-old")
    assert shown() == sorted(by_rank)
    Select(session.find_element("id", "sort")).select_by_value("date-new")
    assert shown() == sorted(by_rank, reverse=True)
    newest = max(by_rank)
    session.execute_script("var f = document.getElementById('from'); f.value = arguments[0];"
                           "f.dispatchEvent(new Event('change'));", newest)
    assert shown() == [newest]
    screenshot(session, shots, "index-filtered")
    session.execute_script("var f = document.getElementById('from'); f.value = '';"
                           "f.dispatchEvent(new Event('change'));")
    Select(session.find_element("id", "location")).select_by_value(str(lesion_case.row.lesion_location))
    assert shown() == [lesion_case.row.study_date.isoformat()]
