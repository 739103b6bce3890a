"""The service's edge: API key (401 on search, batch and info; health, readiness and metrics open), the
request-body limit (413 before the body is read whole), CORS off unless configured, secrets never shown."""
from __future__ import annotations

import json
import select
import socket
import time

import httpx
import pytest

from service.settings import Settings
from tests.service.conftest import sum_metric

pytestmark = pytest.mark.anyio

KEY = "k3y-For-Tests-0123456789"
SEARCH = {"query": "vitamin d deficiency", "k": 3}
BATCH = {"queries": [SEARCH, {"query": "p53 mutations"}]}


async def _protected_calls(client: httpx.AsyncClient, headers: dict) -> dict[str, int]:
    return {
        "search": (await client.post("/search", json=SEARCH, headers=headers)).status_code,
        "batch": (await client.post("/search/batch", json=BATCH, headers=headers)).status_code,
        "info": (await client.get("/info", headers=headers)).status_code,
    }


async def test_missing_or_wrong_key_gets_401_while_health_readiness_and_metrics_answer(in_process):
    async with in_process(api_key=KEY) as client:
        missing = await _protected_calls(client, {})
        wrong = await _protected_calls(client, {"Authorization": f"Bearer {KEY}x"})
        wrong_header = await _protected_calls(client, {"X-API-Key": KEY[:-1]})
        body = (await client.post("/search", json=SEARCH)).json()
        www = (await client.post("/search", json=SEARCH)).headers.get("www-authenticate")
        open_routes = {path: (await client.get(path)).status_code for path in ("/healthz", "/readyz", "/metrics")}
        invalid_and_unauthenticated = (await client.post("/search", json={"k": -1})).status_code

    assert missing == wrong == wrong_header == {"search": 401, "batch": 401, "info": 401}
    assert body["error"]["type"] == "unauthorized" and "missing API key" in body["error"]["message"]
    assert www and www.startswith("Bearer")
    assert open_routes == {"/healthz": 200, "/readyz": 200, "/metrics": 200}
    assert invalid_and_unauthenticated == 401  # the key is checked before the body is judged


async def test_the_key_is_accepted_as_bearer_or_x_api_key(in_process):
    async with in_process(api_key=KEY) as client:
        bearer = await _protected_calls(client, {"Authorization": f"Bearer {KEY}"})
        lower_scheme = await _protected_calls(client, {"Authorization": f"bearer {KEY}"})
        x_api_key = await _protected_calls(client, {"X-API-Key": KEY})
    assert bearer == lower_scheme == x_api_key == {"search": 200, "batch": 200, "info": 200}


async def test_without_a_key_setting_every_route_is_open(in_process):
    async with in_process() as client:
        assert await _protected_calls(client, {}) == {"search": 200, "batch": 200, "info": 200}


async def test_info_and_public_settings_never_show_the_key(in_process):
    async with in_process(api_key=KEY) as client:
        info = await client.get("/info", headers={"X-API-Key": KEY})
    assert info.status_code == 200
    assert KEY not in info.text
    assert info.json()["settings"]["api_key"] == "set"
    assert KEY not in json.dumps(Settings(api_key=KEY).public_dict())
    assert Settings().public_dict()["api_key"] is None


async def test_a_declared_body_over_the_limit_gets_413_naming_the_limit(in_process, metric_value):
    async with in_process(max_body_bytes=4096) as client:
        big = {"query": "x" * 10_000}
        response = await client.post("/search", json=big)
        small = await client.post("/search", json=SEARCH)
        exposition = (await client.get("/metrics")).text
    assert response.status_code == 413
    error = response.json()["error"]
    assert error["type"] == "payload_too_large"
    assert error["details"] == [{"field": "body", "message": "request body too large", "limit": 4096}]
    assert small.status_code == 200
    assert metric_value(exposition, "splade_request_duration_seconds_count", {"status": "413"}) == 1


async def test_cors_is_off_unless_origins_are_configured(in_process):
    preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}
    async with in_process() as client:
        off = await client.post("/search", json=SEARCH, headers={"Origin": "https://app.example"})
        off_preflight = await client.options("/search", headers=preflight)
    async with in_process(cors_origins="https://app.example, https://other.example") as client:
        on = await client.post("/search", json=SEARCH, headers={"Origin": "https://app.example"})
        on_preflight = await client.options("/search", headers=preflight)
        stranger = await client.post("/search", json=SEARCH, headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in off.headers
    assert off_preflight.status_code != 200 and "access-control-allow-origin" not in off_preflight.headers
    assert on.headers["access-control-allow-origin"] == "https://app.example"
    assert on_preflight.status_code == 200
    assert "authorization" in on_preflight.headers["access-control-allow-headers"].lower()
    assert "access-control-allow-origin" not in stranger.headers


async def test_an_unexpected_error_answers_without_a_stack_trace(searcher, service_settings):
    from service.app import create_app

    app = create_app(service_settings(), searcher=searcher)

    @app.get("/boom")
    async def boom():
        raise RuntimeError("secret internals /path/to/file.py line 42")

    # Starlette re-raises after answering (for the server's log); the client must see only the answer.
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://service.test") as client:
        response = await client.get("/boom")
    assert response.status_code == 500
    assert response.json()["error"]["type"] == "internal_error"
    assert "Traceback" not in response.text and "secret internals" not in response.text


def _resident_bytes(base_url: str) -> float:
    return sum_metric(httpx.get(f"{base_url}/metrics").text, "process_resident_memory_bytes")


def _send_chunked(base_url: str, path: str, total_bytes: int, chunk_bytes: int = 1 << 20) -> tuple[bytes, int]:
    """POST a chunked body of `total_bytes` (never declaring a length); stop sending as soon as the server
    answers or closes. Returns (what the server answered, bytes sent)."""
    host, port = base_url.removeprefix("http://").split(":")
    sent = 0
    answer = b""
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                     "Transfer-Encoding: chunked\r\n\r\n".encode())
        chunk = f"{chunk_bytes:x}\r\n".encode() + b"[" * chunk_bytes + b"\r\n"
        try:
            while sent < total_bytes:
                if select.select([sock], [], [], 0)[0]:
                    break  # the server has answered (or closed): stop sending
                sock.sendall(chunk)
                sent += chunk_bytes
            else:
                sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        deadline = time.monotonic() + 10
        try:
            while time.monotonic() < deadline and b"\r\n\r\n" not in answer:
                data = sock.recv(65536)
                if not data:
                    break
                answer += data
        except ConnectionResetError:
            pass
    return answer, sent


def test_a_chunked_body_over_the_limit_is_refused_without_being_read_whole(default_model_dir, small_index_dir):
    from tests.support.server import running_service

    limit = 1 << 20
    total = 256 << 20  # 256 MiB offered, 1 MiB allowed
    env = {"SPLADE_DEVICE": "cpu", "SPLADE_INTRA_OP_THREADS": "1", "SPLADE_LOG_LEVEL": "warning",
           "SPLADE_MAX_BODY_BYTES": str(limit)}
    with running_service(default_model_dir, small_index_dir, env) as base_url:
        before = _resident_bytes(base_url)
        answer, sent = _send_chunked(base_url, "/search", total)
        after = _resident_bytes(base_url)
        still_serving = httpx.post(f"{base_url}/search", json=SEARCH).status_code

    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 413"), answer[:300]
    assert sent < total / 4, f"the client could push {sent} bytes before the refusal"
    assert after - before < 64 << 20, f"server memory grew by {(after - before) / 2**20:.0f} MiB"
    assert still_serving == 200


def test_an_empty_key_setting_means_no_key():
    # compose passes SPLADE_API_KEY=${SPLADE_API_KEY:-}: unset there must not become "the empty key".
    assert Settings(api_key="").api_key is None
    assert Settings(api_key="  ").public_dict()["api_key"] is None


async def test_admin_reload_needs_a_configured_key(in_process):
    async with in_process() as client:  # no key configured: admin is off, not open
        off = await client.post("/admin/reload")
    async with in_process(api_key=KEY) as client:
        missing = (await client.post("/admin/reload")).status_code
        wrong = (await client.post("/admin/reload", headers={"X-API-Key": KEY + "x"})).status_code
        good = await client.post("/admin/reload", headers={"Authorization": f"Bearer {KEY}"})
    assert off.status_code == 403 and "SPLADE_API_KEY" in off.json()["error"]["message"]
    assert missing == wrong == 401
    assert good.status_code == 200 and good.json()["last_outcome"] == "unchanged"
