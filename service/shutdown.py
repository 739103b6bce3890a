"""Graceful shutdown: on SIGTERM (or SIGINT) readiness fails at once, new connections are refused, requests
already in flight get up to `SPLADE_DRAIN_TIMEOUT_S` to finish, then the process exits 0.

uvicorn already stops listening, closes idle keep-alive connections, answers in-flight requests with
`Connection: close` and bounds the wait by `timeout_graceful_shutdown`; what it cannot know is our readiness,
so `DrainingServer` flips it before uvicorn starts closing. A load balancer that probes `/readyz` on an open
connection sees 503, and one that opens new connections sees them refused: either way no new work arrives.
Under Kubernetes put a short preStop sleep before the SIGTERM so the endpoint is removed first, and keep
terminationGracePeriodSeconds above preStop + drain (docs/service.md, "Shutdown").
"""
from __future__ import annotations

import logging
import signal
from collections.abc import Callable

import uvicorn

logger = logging.getLogger("service")


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, on_drain: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_drain = on_drain

    def handle_exit(self, sig, frame) -> None:
        if not self.should_exit:
            logger.info("signal %s: readiness off, draining requests in flight (at most %.1f s)",
                        sig, self.config.timeout_graceful_shutdown)
            self._on_drain()
        super().handle_exit(sig, frame)
        # uvicorn re-raises captured signals after its graceful shutdown, so the process would die "by
        # SIGTERM" (status 143) even after a clean drain; a drained SIGTERM is a normal stop: exit 0.
        captured = getattr(self, "_captured_signals", None)
        if sig == signal.SIGTERM and captured and captured[-1] == sig:
            captured.pop()
