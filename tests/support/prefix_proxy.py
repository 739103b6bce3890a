"""A minimal reverse proxy that serves an upstream under a path prefix (as nginx `location /p/ {proxy_pass
http://up/;}` does): `/p/x` -> upstream `/x`, `/p` -> 301 to `/p/`, anything else 404.

With `api_key`, the API routes (not the page and its assets) answer 401 in the service's error shape unless
`Authorization: Bearer <api_key>` is sent, as a gateway in front of the service would. `edit_request(path,
body) -> body` and `edit_response(path, body) -> body` (bytes) let a test stand in for API features the
service does not have yet. For the workbench tests; single-purpose, not a general proxy."""
from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding", "date",
               "server"}


Edit = Callable[[str, bytes], bytes]


def _handler(prefix: str, upstream: str, api_key: str | None, edit_request: Edit | None,
             edit_response: Edit | None):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # keep the test output quiet
            pass

        def _forward(self):
            if self.path == prefix:
                self.send_response(301)
                self.send_header("Location", prefix + "/")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if not self.path.startswith(prefix + "/"):
                self.send_error(404)
                return
            path = self.path[len(prefix):]
            public = path == "/" or path.startswith("/ui/")
            if api_key is not None and not public and self.headers.get("Authorization") != f"Bearer {api_key}":
                body = json.dumps({"error": {"type": "unauthorized", "message": "missing or wrong API key",
                                             "details": []}}).encode()
                self.send_response(401)
                self.send_header("Content-Type", "application/json")
                self.send_header("WWW-Authenticate", "Bearer")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            if edit_request is not None:
                body = edit_request(path, body)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP | {"host"}}
            answer = httpx.request(self.command, upstream + path, headers=headers,
                                   content=body, timeout=30)
            self.send_response(answer.status_code)
            for key, value in answer.headers.items():
                if key.lower() not in _HOP_BY_HOP:
                    self.send_header(key, value)
            content = answer.content if edit_response is None else edit_response(path, answer.content)
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(content)

        do_GET = do_POST = do_HEAD = _forward

    return Handler


@contextlib.contextmanager
def prefix_proxy(upstream: str, prefix: str = "/splade", api_key: str | None = None,
                 edit_request: Edit | None = None, edit_response: Edit | None = None) -> Iterator[str]:
    """Yield the proxy's base URL (with the prefix, no trailing slash)."""
    handler = _handler(prefix, upstream.rstrip("/"), api_key, edit_request, edit_response)
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="prefix-proxy", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}{prefix}"
    finally:
        server.shutdown()
        server.server_close()
