"""A small, typed Python client for the splade-serve HTTP API.

    from splade_client import Client

    with Client("http://127.0.0.1:8000") as client:
        result = client.search("parse command line arguments", k=3)
        for hit in result.hits:
            print(hit.id, hit.score)

It imports only httpx and pydantic (no numpy, numba, onnxruntime or torch), so it installs anywhere the
service is called from. `AsyncClient` has the same methods as coroutines. Errors are raised as `ApiError`
subclasses carrying the server's error type, message, field and limit; 503s are retried as `RetryPolicy`
says (honouring `Retry-After`), 4xx never. See docs/client.md.
"""
from splade_client.async_client import AsyncClient
from splade_client.client import Client
from splade_client.errors import (
    ApiError,
    AuthenticationError,
    InvalidRequestError,
    NotFoundError,
    NotReadyError,
    QueueFullError,
    RequestTimeoutError,
    ServiceUnavailableError,
    SpladeClientError,
    SpladeConnectionError,
)
from splade_client.models import BatchSearchResult, ErrorDetail, Health, Hit, Info, SearchResult, Timings
from splade_client.retry import RetryPolicy

__all__ = [
    "ApiError",
    "AuthenticationError",
    "AsyncClient",
    "BatchSearchResult",
    "Client",
    "ErrorDetail",
    "Health",
    "Hit",
    "Info",
    "InvalidRequestError",
    "NotFoundError",
    "NotReadyError",
    "QueueFullError",
    "RequestTimeoutError",
    "RetryPolicy",
    "SearchResult",
    "ServiceUnavailableError",
    "SpladeClientError",
    "SpladeConnectionError",
    "Timings",
]
