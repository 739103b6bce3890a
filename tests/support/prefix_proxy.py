"""A minimal reverse proxy that serves an upstream under a path prefix (as nginx `location /p/ {proxy_pass
http://up/;}` does): `/p/x` -> upstream `/x`, `/p` -> 301 to `/p/`, anything else 404. For the test that the
workbench works behind a prefix; single-purpose, not a general proxy."""
from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding", "date",
               "server"}


def _handler(prefix: str, upstream: str):
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
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP | {"host"}}
            answer = httpx.request(self.command, upstream + self.path[len(prefix):], headers=headers,
                                   content=body, timeout=30)
            self.send_response(answer.status_code)
            for key, value in answer.headers.items():
                if key.lower() not in _HOP_BY_HOP:
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(answer.content)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(answer.content)

        do_GET = do_POST = do_HEAD = _forward

    return Handler


@contextlib.contextmanager
def prefix_proxy(upstream: str, prefix: str = "/splade") -> Iterator[str]:
    """Yield the proxy's base URL (with the prefix, no trailing slash)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(prefix, upstream.rstrip("/")))
    thread = threading.Thread(target=server.serve_forever, name="prefix-proxy", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}{prefix}"
    finally:
        server.shutdown()
        server.server_close()
