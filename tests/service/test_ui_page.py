"""The workbench page as the service serves it (in-process): static, no inline scripts or secrets, relative
URLs only (so it works behind a path prefix), and off with SPLADE_UI=false."""
from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from service.app import create_app
from service.workbench import UI_DIR

pytestmark = pytest.mark.anyio

SECRET = "sk-test-do-not-leak-0123456789"


class _Tags(HTMLParser):
    """Every start tag with its attributes, and the text inside each <script>."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.script_bodies: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag == "script":
            self._in_script = True
            self.script_bodies.append("")

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.script_bodies[-1] += data


async def test_root_serves_the_packaged_page_without_inline_scripts_or_secrets(
    searcher, service_settings, serve_app, monkeypatch
):
    # A secret-looking variable in the environment must not reach the page (the page is a static file).
    monkeypatch.setenv("SPLADE_API_KEY", SECRET)
    app = create_app(service_settings(), searcher=searcher)
    async with serve_app(app) as client:
        page = await client.get("/")
        assets = {name: await client.get(f"/ui/{name}") for name in ("app.js", "style.css")}

    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert page.content == (UI_DIR / "index.html").read_bytes()
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert assets["app.js"].status_code == 200 and "javascript" in assets["app.js"].headers["content-type"]
    assert assets["style.css"].status_code == 200 and assets["style.css"].headers["content-type"].startswith("text/css")

    parser = _Tags()
    parser.feed(page.text)
    scripts = [attrs for tag, attrs in parser.tags if tag == "script"]
    assert scripts and all(attrs.get("src") for attrs in scripts)
    assert all(not body.strip() for body in parser.script_bodies), "inline script in the page"
    assert not any(name.startswith("on") for _, attrs in parser.tags for name in attrs), "inline event handler"
    # Relative URLs only: a leading slash or an absolute URL would break the page behind a path prefix.
    urls = [attrs[key] for _, attrs in parser.tags for key in ("src", "href", "action") if attrs.get(key)]
    assert urls and all(not re.match(r"^(/|[a-z]+://)", url) or url.startswith("data:") for url in urls), urls
    script = assets["app.js"].text
    assert re.findall(r'callApi\("([^"]+)"', script) and all(
        not path.startswith("/") for path in re.findall(r'callApi\("([^"]+)"', script)
    )
    for body in (page.text, script, assets["style.css"].text):
        assert SECRET not in body
        assert not re.search(r"Bearer [A-Za-z0-9._-]{8,}", body), "a literal bearer token"


async def test_ui_false_turns_the_page_off(searcher, service_settings, serve_app):
    app = create_app(service_settings(ui=False), searcher=searcher)
    async with serve_app(app) as client:
        page = await client.get("/")
        script = await client.get("/ui/app.js")
        search = await client.post("/search", json={"query": "cells", "k": 1})
    assert page.status_code == 404 and page.json()["error"]["type"] == "not_found"
    assert script.status_code == 404
    assert search.status_code == 200  # the API itself is unaffected


def test_the_ui_setting_reads_splade_ui_from_the_environment(monkeypatch):
    from service.settings import load_settings

    monkeypatch.setenv("SPLADE_UI", "false")
    assert load_settings().ui is False
    monkeypatch.setenv("SPLADE_UI", "true")
    assert load_settings().ui is True
