"""`Client`: the synchronous client (one pooled httpx.Client; thread-safe, share one per process)."""
from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel

from splade_client.errors import ApiError, SpladeConnectionError
from splade_client.models import BatchSearchResult, Health, Info, SearchResult
from splade_client.bodies import BatchQuery, batch_body, request_headers, search_body
from splade_client.retry import Attempts, RetryPolicy

DEFAULT_BASE_URL = "http://127.0.0.1:8000"
DEFAULT_TIMEOUT_S = 30.0
# Keep-alive connections are reused across calls; more than the service's concurrency buys nothing.
DEFAULT_LIMITS = httpx.Limits(max_connections=64, max_keepalive_connections=32)

Result = TypeVar("Result", bound=BaseModel)


class Client:
    """Calls a splade-serve service over HTTP.

    `retry` bounds how 503s (queue full, still loading) and refused connections are retried; 4xx never are.
    `timeout` is httpx's per-request timeout (seconds or an `httpx.Timeout`). `headers` are sent with every
    request; `api_key` is sent as `Authorization: Bearer <key>` (the service's SPLADE_API_KEY).
    `transport` is httpx's, e.g. `httpx.ASGITransport(app)` to call an app in-process.
    """

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        *,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT_S,
        retry: RetryPolicy | None = None,
        headers: Mapping[str, str] | None = None,
        api_key: str | None = None,
        limits: httpx.Limits = DEFAULT_LIMITS,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.retry = retry if retry is not None else RetryPolicy()
        self._http = httpx.Client(base_url=base_url, timeout=timeout, headers=request_headers(headers, api_key),
                                  limits=limits, transport=transport)

    @property
    def base_url(self) -> str:
        return str(self._http.base_url)

    def search(
        self,
        query: str | None = None,
        *,
        vector: Mapping[str, float] | None = None,
        k: int | None = None,
        query_max_terms: int | None = None,
        include_text: bool = False,
        explain: bool = False,
        scorer: str | None = None,
        filter: Mapping[str, Any] | None = None,
    ) -> SearchResult:
        """`POST /search` with a query text or a raw sparse `vector` ({token: weight}); `k` defaults to the
        server's SPLADE_DEFAULT_K, `query_max_terms` to its maximum."""
        body = search_body(query, vector, k, query_max_terms, include_text or None, explain or None, scorer,
                           filter)
        return self._call("POST", "/search", SearchResult, body)

    def search_batch(
        self,
        queries: Iterable[BatchQuery],
        *,
        k: int | None = None,
        query_max_terms: int | None = None,
        include_text: bool = False,
        explain: bool = False,
        scorer: str | None = None,
        filter: Mapping[str, Any] | None = None,
    ) -> BatchSearchResult:
        """`POST /search/batch`: each query is a text or a mapping of `search`'s keyword arguments (its own
        values win over the ones given here). Admitted whole or not at all, so retrying it is safe."""
        body = batch_body(queries, k=k, query_max_terms=query_max_terms, include_text=include_text or None,
                          explain=explain or None, scorer=scorer, filter=filter)
        return self._call("POST", "/search/batch", BatchSearchResult, body)

    def info(self) -> Info:
        """`GET /info`: model and index manifests, execution provider, settings."""
        return self._call("GET", "/info", Info)

    def health(self) -> Health:
        """`GET /healthz` (liveness; answers while the service is still loading). Sent once."""
        return self._call("GET", "/healthz", Health, retry=RetryPolicy.none())

    def ready(self) -> bool:
        """`GET /readyz`: True when the model and index are loaded; False while loading or after a failed
        start-up. Sent once; a service that cannot be reached raises `SpladeConnectionError`."""
        try:
            self._call("GET", "/readyz", Health, retry=RetryPolicy.none())
        except ApiError as exc:
            if exc.status_code == 503:
                return False
            raise
        return True

    def wait_until_ready(self, timeout_s: float = 120.0, poll_s: float = 0.2) -> None:
        """Block until `ready()` (refused connections count as not ready yet); TimeoutError after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if self.ready():
                    return
            except SpladeConnectionError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.base_url} not ready within {timeout_s} s")
            time.sleep(poll_s)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _call(
        self, method: str, path: str, result: type[Result], body: dict[str, Any] | None = None,
        retry: RetryPolicy | None = None,
    ) -> Result:
        attempts = Attempts(retry or self.retry, f"{method} {path}")
        while True:
            attempts.begin()
            try:
                response = self._http.request(method, path, json=body)
            except httpx.TransportError as exc:
                time.sleep(attempts.after_transport_error(exc))
                continue
            delay = attempts.after_response(response)
            if delay is None:
                return result.model_validate_json(response.content)
            time.sleep(delay)
