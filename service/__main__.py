"""`python -m service [--FLAG VALUE ...]`: read the settings (SPLADE_* variables, or the same as flags:
`--help` lists them), then serve them with uvicorn.

Exit codes: 0 after a normal shutdown, 2 for invalid settings, 1 when the model or index cannot be served
(missing files, or an index built with another tokenizer); the reason is printed on stderr either way.
One process, one uvicorn worker: scale out with more processes (see docs/service.md for why).
"""
from __future__ import annotations

import logging
import sys

import uvicorn

from service.shutdown import DrainingServer
from service.options import name_flags, overrides_from_argv
from service.settings import SettingsError, load_settings


def main(argv: list[str] | None = None) -> int:
    overrides = overrides_from_argv(argv)
    try:
        settings = load_settings(**overrides)
    except SettingsError as exc:
        print(f"splade-serve: {name_flags(str(exc), overrides)}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    from service.app import create_app  # after logging is set up; imports numba and onnxruntime

    failures: list[BaseException] = []
    server: uvicorn.Server | None = None

    def stop_on_failure(exc: BaseException) -> None:
        failures.append(exc)
        if server is not None:
            server.should_exit = True

    app = create_app(settings, on_startup_failure=stop_on_failure)
    config = uvicorn.Config(
        app, host=settings.host, port=settings.port, log_level=settings.log_level, access_log=False,
        lifespan="on", timeout_graceful_shutdown=settings.drain_timeout_s,
    )
    server = DrainingServer(config, on_drain=app.state.service.start_draining)
    server.run()
    if failures:
        exc = failures[0]
        print(f"splade-serve: cannot serve: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
