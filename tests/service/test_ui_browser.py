"""The workbench in a real headless Chromium against a real service (uvicorn on 127.0.0.1, small SciFact
index): what the page shows is what `POST /search` answers.

Regenerate the README screenshot (docs/images/workbench.png) with
    SPLADE_UI_SCREENSHOT=docs/images/workbench.png .venv/bin/python -m pytest tests/service/test_ui_browser.py -k equal
"""
from __future__ import annotations

import base64
import json
import os
import re
import shutil
from pathlib import Path

import httpx
import pytest
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests.support.browser import headless_chromium
from tests.support.prefix_proxy import prefix_proxy

QUERY = "vitamin D and bone fractures in older adults"
# Two configurations that really differ: all 64 query terms vs the 2 heaviest.
TERMS_A, TERMS_B = 64, 2
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# Everything the assertions need, read from the rendered DOM in one call.
READ_COLUMN = """
const column = document.querySelector(`section.column[data-config="${arguments[0]}"]`);
const error = column.querySelector('.error');
return {
  state: column.dataset.state,
  error: error.hidden ? null : error.textContent,
  terms: Array.from(column.querySelectorAll('.terms .term')).map(t => [t.dataset.token, t.dataset.expansion]),
  hits: Array.from(column.querySelectorAll('.hit')).map(h => ({
    id: h.dataset.id,
    score: Number(h.dataset.score),
    score_text: h.querySelector('.score').textContent,
    title: h.querySelector('.title').textContent,
    only_here: h.classList.contains('only-here'),
    badge: h.querySelector('.badge').textContent,
    bars: Array.from(h.querySelectorAll('.bar')).map(b => Number(b.dataset.value)),
    marks: Array.from(h.querySelectorAll('.snippet mark')).map(m => m.textContent),
  })),
};
"""


@pytest.fixture(scope="module")
def browser():
    with headless_chromium() as driver:
        yield driver


def open_page(driver, url: str) -> None:
    driver.get(url)
    WebDriverWait(driver, 30).until(lambda d: d.find_element("tag name", "body").get_attribute("data-ready") == "true")


def run_search(driver, query: str, k: str, terms_a: str, terms_b: str, compare: bool = True) -> None:
    """Fill the form as a user would, submit, and wait until this search has rendered."""
    def fill(element_id_or_css: str, value: str, css: bool = False) -> None:
        element = driver.find_element("css selector" if css else "id", element_id_or_css)
        element.clear()
        if value:
            element.send_keys(value)

    fill("query", query)
    fill("k", k)
    fill('fieldset[data-config="a"] .query-max-terms', terms_a, css=True)
    checkbox = driver.find_element("id", "compare")
    if checkbox.is_selected() != compare:
        checkbox.click()
    if compare:
        fill('fieldset[data-config="b"] .query-max-terms', terms_b, css=True)
    columns = driver.find_element("id", "columns")
    before = int(columns.get_attribute("data-run"))
    driver.find_element("id", "run").click()
    WebDriverWait(driver, 60).until(lambda d: int(columns.get_attribute("data-run")) > before)


def api_search(base_url: str, **body) -> httpx.Response:
    return httpx.post(f"{base_url}/search", json={"include_text": True, "explain": True, **body}, timeout=30)


def save_screenshot(driver, path: Path) -> None:
    """The whole page, not just the viewport (Chromium's DevTools capture beyond the viewport)."""
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
    path.write_bytes(base64.b64decode(shot["data"]))


def test_page_hits_equal_the_api_bars_sum_to_scores_and_differences_are_marked(browser, live_service, tmp_path):
    open_page(browser, live_service + "/")
    run_search(browser, QUERY, "10", str(TERMS_A), str(TERMS_B))
    shown = {side: browser.execute_script(READ_COLUMN, side) for side in ("a", "b")}
    expected = {
        "a": api_search(live_service, query=QUERY, k=10, query_max_terms=TERMS_A).json(),
        "b": api_search(live_service, query=QUERY, k=10, query_max_terms=TERMS_B).json(),
    }

    for side in ("a", "b"):
        page, api = shown[side], expected[side]
        assert page["state"] == "done" and page["error"] is None
        # Same hits, same order, same scores (identical texts are encoded identically) and titles.
        assert [h["id"] for h in page["hits"]] == [h["id"] for h in api["hits"]]
        assert [h["title"] for h in page["hits"]] == [h["title"] for h in api["hits"]]
        for hit, want in zip(page["hits"], api["hits"]):
            assert hit["score"] == pytest.approx(want["score"], rel=1e-4)
            assert float(hit["score_text"]) == pytest.approx(want["score"], abs=1e-4)
        assert [t for t, _ in page["terms"]] == [t for t, _ in api["query_terms"]]

    # The first hit's contribution bars add up to its score.
    first = shown["a"]["hits"][0]
    assert len(first["bars"]) >= 2
    assert sum(first["bars"]) == pytest.approx(first["score"], rel=1e-4)
    assert first["marks"], "the snippet highlights no matched term"

    # Side by side: exactly the hits missing from the other column are marked, and the overlap is shown.
    ids = {side: [h["id"] for h in expected[side]["hits"]] for side in ("a", "b")}
    for side, other in (("a", "b"), ("b", "a")):
        marked = [h["id"] for h in shown[side]["hits"] if h["only_here"]]
        assert marked == [i for i in ids[side] if i not in ids[other]]
    assert any(h["only_here"] for h in shown["a"]["hits"]), "pick configurations whose hits differ"
    shared = len(set(ids["a"]) & set(ids["b"]))
    overlap = browser.find_element("id", "overlap").text
    assert f"overlap@10: {shared} of 10" in overlap

    # Expansion marks: a marked term is not a word of the query; at least one term is marked.
    words = set(re.findall(r"\w+", QUERY.lower()))
    expansions = [token for token, flag in shown["a"]["terms"] if flag == "true"]
    assert expansions and all(token not in words for token in expansions)
    assert all(flag == "false" for token, flag in shown["a"]["terms"] if token in words)

    shot = tmp_path / "workbench.png"
    save_screenshot(browser, shot)
    assert shot.read_bytes()[:8] == PNG_SIGNATURE and shot.stat().st_size > 20_000
    target = os.environ.get("SPLADE_UI_SCREENSHOT")
    if target:
        shutil.copyfile(shot, target)


@pytest.mark.parametrize(
    "query, k, terms_b, field",
    [("", "10", "8", "query"), ("vitamin D", "5000", "8", "k"), ("vitamin D", "0", "8", "k")],
    ids=["empty-query", "k-above-max", "k-zero"],
)
def test_bad_input_shows_the_api_error_message(browser, live_service, query, k, terms_b, field):
    open_page(browser, live_service + "/")
    run_search(browser, query, k, str(TERMS_A), terms_b)
    api = api_search(live_service, query=query, k=int(k), query_max_terms=TERMS_A)
    assert api.status_code == 422
    message = api.json()["error"]["message"]
    for side in ("a", "b"):
        shown = browser.execute_script(READ_COLUMN, side)
        assert shown["state"] == "error" and shown["hits"] == []
        assert message in shown["error"]
        assert field in shown["error"]


def test_one_bad_configuration_errors_only_its_own_column(browser, live_service):
    open_page(browser, live_service + "/")
    run_search(browser, QUERY, "5", str(TERMS_A), "65")  # above SPLADE_MAX_QUERY_TERMS=64
    a, b = (browser.execute_script(READ_COLUMN, side) for side in ("a", "b"))
    api = api_search(live_service, query=QUERY, k=5, query_max_terms=65)
    assert a["state"] == "done" and len(a["hits"]) == 5
    assert b["state"] == "error" and api.json()["error"]["message"] in b["error"]


def test_page_works_behind_a_path_prefix(browser, live_service):
    with prefix_proxy(live_service, "/splade") as base:
        open_page(browser, base)  # no trailing slash: the proxy redirects, as nginx does
        assert browser.current_url == base + "/"
        run_search(browser, QUERY, "3", str(TERMS_A), "", compare=False)
        shown = browser.execute_script(READ_COLUMN, "a")
    api = api_search(live_service, query=QUERY, k=3, query_max_terms=TERMS_A).json()
    assert [h["id"] for h in shown["hits"]] == [h["id"] for h in api["hits"]]
    assert "documents" in browser.find_element("id", "info").text  # GET info went through the prefix too


def test_page_asks_for_the_api_key_when_the_api_answers_401(browser, live_service):
    key = "test-key-for-the-workbench"
    with prefix_proxy(live_service, "/splade", api_key=key) as base:
        browser.get(base + "/")
        panel = browser.find_element("id", "auth-panel")
        WebDriverWait(browser, 30).until(lambda d: panel.is_displayed())
        assert "missing or wrong API key" in browser.find_element("id", "info").text
        browser.find_element("id", "api-key").send_keys(key)
        browser.find_element("id", "save-key").click()
        WebDriverWait(browser, 30).until(
            lambda d: d.find_element("tag name", "body").get_attribute("data-ready") == "true")
        assert not panel.is_displayed()
        assert browser.execute_script("return sessionStorage.getItem('splade-api-key')") == key
        run_search(browser, QUERY, "3", str(TERMS_A), "", compare=False)
        shown = browser.execute_script(READ_COLUMN, "a")
        browser.execute_script("sessionStorage.clear()")
    assert shown["state"] == "done" and len(shown["hits"]) == 3


def test_scorer_and_mode_controls_appear_when_info_lists_them(browser, live_service):
    """`/info` lists `scorers` (and, with hybrid retrieval, `modes`) and a search may carry `scorer` / `mode`.
    This index serves one scorer and no modes, so a proxy adds choices to `/info` and takes them off requests."""
    sent: list[dict] = []

    def add_choices(path: str, body: bytes) -> bytes:
        if path != "/info":
            return body
        info = json.loads(body)
        info["scorers"] = {"default": "exact", "available": ["exact", "pruned"]}
        info["modes"] = ["splade", "bm25", "hybrid"]
        return json.dumps(info).encode()

    def record_and_strip(path: str, body: bytes) -> bytes:
        if path != "/search":
            return body
        request = json.loads(body)
        sent.append(request)
        return json.dumps({k: v for k, v in request.items() if k not in ("scorer", "mode")}).encode()

    with prefix_proxy(live_service, edit_request=record_and_strip, edit_response=add_choices) as base:
        open_page(browser, base + "/")
        fieldset_b = 'fieldset[data-config="b"]'
        assert browser.find_element("css selector", f"{fieldset_b} .scorer").is_displayed()
        assert browser.find_element("css selector", f"{fieldset_b} .mode").is_displayed()
        Select(browser.find_element("css selector", f"{fieldset_b} .scorer")).select_by_value("pruned")
        Select(browser.find_element("css selector", f"{fieldset_b} .mode")).select_by_value("hybrid")
        run_search(browser, QUERY, "3", str(TERMS_A), str(TERMS_A))
    by_config = {(r["scorer"], r["mode"]) for r in sent}
    assert by_config == {("exact", "splade"), ("pruned", "hybrid")}


def test_scorer_and_mode_controls_show_what_info_lists(browser, live_service):
    """The small index serves two scorers (`exact`, `exact-blocked`: no index part needed) and, with its BM25
    field, three modes (docs/hybrid.md): both controls show them, the server's defaults first."""
    open_page(browser, live_service + "/")
    for side in ("a", "b"):
        fieldset = f'fieldset[data-config="{side}"]'
        scorer = Select(browser.find_element("css selector", f"{fieldset} .scorer"))
        assert browser.find_element("css selector", f"{fieldset} .scorer").is_displayed()
        assert [o.get_attribute("value") for o in scorer.options] == ["exact", "exact-blocked"]
        assert scorer.first_selected_option.get_attribute("value") == "exact"
        assert browser.find_element("css selector", f"{fieldset} .mode").is_displayed()
        options = Select(browser.find_element("css selector", f"{fieldset} .mode")).options
        assert [o.get_attribute("value") for o in options] == ["splade", "bm25", "hybrid"]
