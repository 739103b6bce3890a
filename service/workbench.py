"""The relevance workbench: static files in `service/ui/`, served at `/` (off with `SPLADE_UI=false`).

The page is a client of the public HTTP API like any other (GET info, POST search with `explain`), so this
module only serves files: nothing is rendered or injected server-side, and the page holds no secrets. Its
URLs are relative, so it works unchanged behind a path prefix (open it with the trailing slash).
"""
from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from starlette.responses import Response
from starlette.staticfiles import StaticFiles

UI_DIR = Path(__file__).resolve().parent / "ui"

# Scripts, styles and requests from this origin only; no inline scripts (the page has none).
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def install_workbench(app: FastAPI) -> None:
    """Serve the page at `/` and its assets under `/ui/`."""
    page = (UI_DIR / "index.html").read_bytes()

    @app.get("/", include_in_schema=False)
    async def workbench() -> Response:
        return Response(page, media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)

    app.mount("/ui", StaticFiles(directory=UI_DIR), name="ui")
