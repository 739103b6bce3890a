"""What a service on a network needs at its edge: an optional API key, a request-body limit, and CORS only
when origins are configured.

- `ApiKeyAuth` is a FastAPI dependency: `dependencies=[Depends(auth)]` on a route (or a router) makes it
  answer 401 in the error JSON unless `Authorization: Bearer <key>` or `X-API-Key: <key>` carries the key.
  The comparison is constant-time (`hmac.compare_digest`) so response times do not leak how much of a guess
  was right. The app keeps its instance on `app.state.service.auth`, so later routes (document writes, index
  reload) protect themselves with the same object instead of a second mechanism.
- `BodyLimitMiddleware` is pure ASGI: a declared Content-Length over the limit is refused before any body
  byte is read, and a chunked body is counted as it arrives and refused at the first byte over the limit,
  so a huge body never sits in memory whole.
"""
from __future__ import annotations

import hmac

from fastapi import FastAPI, Request
from starlette.middleware.cors import CORSMiddleware

from service.errors import ApiError, detail, error_response

BEARER_PREFIX = "bearer "


class UnauthorizedError(ApiError):
    status_code = 401
    error_type = "unauthorized"


class ForbiddenError(ApiError):
    status_code = 403
    error_type = "forbidden"


class ApiKeyAuth:
    """The API-key check; with no key configured every request passes."""

    def __init__(self, key: str | None) -> None:
        self._key = key.encode() if key else None

    @property
    def enabled(self) -> bool:
        return self._key is not None

    def presented_key(self, request: Request) -> str | None:
        """The key the client sent: `Authorization: Bearer <key>` first, else `X-API-Key`."""
        authorization = request.headers.get("authorization", "")
        if authorization[: len(BEARER_PREFIX)].lower() == BEARER_PREFIX:
            return authorization[len(BEARER_PREFIX):].strip()
        return request.headers.get("x-api-key")

    def accepts(self, presented: str | None) -> bool:
        if self._key is None:
            return True
        # compare_digest on bytes of any length: no early exit on the first differing byte.
        return presented is not None and hmac.compare_digest(presented.encode(), self._key)

    async def __call__(self, request: Request) -> None:
        presented = self.presented_key(request)
        if not self.accepts(presented):
            reason = "missing API key" if presented is None else "wrong API key"
            raise UnauthorizedError(
                f"{reason}: send it as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'",
                [detail("authorization", reason)],
                headers={"WWW-Authenticate": 'Bearer realm="splade-serve"'},
            )


class AdminAuth:
    """Admin routes (index reload) need a configured key: with none they are refused (403) rather than open."""

    def __init__(self, auth: ApiKeyAuth) -> None:
        self.auth = auth

    async def __call__(self, request: Request) -> None:
        if not self.auth.enabled:
            raise ForbiddenError("admin endpoints are off: set SPLADE_API_KEY to enable them",
                                 [detail("authorization", "no API key is configured on the server")])
        await self.auth(request)


class BodyLimitMiddleware:
    """413 for a request body over `max_bytes`, decided before the body is read in full."""

    def __init__(self, app, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self) -> object:
        return error_response(
            413, "payload_too_large", f"request body is larger than the limit of {self.max_bytes} bytes",
            [detail("body", "request body too large", self.max_bytes)],
            # The unread rest of the body would otherwise be parsed as the next request on the connection.
            headers={"Connection": "close"},
        )

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = None
                if declared is not None and declared > self.max_bytes:
                    return await self._too_large()(scope, receive, send)
        received = 0
        refused = False

        async def counting_receive():
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # Answer now and tell the app the client is gone: it stops reading, and whatever it tries
                    # to answer to that is dropped below (FastAPI would turn an exception here into a 400).
                    refused = True
                    await self._too_large()(scope, receive, send)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message):
            if not refused:
                await send(message)

        await self.app(scope, counting_receive, guarded_send)


def cors_origins(setting: str) -> list[str]:
    return [origin.strip() for origin in setting.split(",") if origin.strip()]


def install_edge(app: FastAPI, *, max_body_bytes: int, cors: str) -> None:
    """The body limit always; CORS only when origins are configured (no CORS headers otherwise)."""
    origins = cors_origins(cors)
    if origins:
        app.add_middleware(
            CORSMiddleware, allow_origins=origins, allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type"], expose_headers=["Server-Timing"],
        )
    # Added last = outermost: the limit applies before any other layer touches the body.
    app.add_middleware(BodyLimitMiddleware, max_bytes=max_body_bytes)
