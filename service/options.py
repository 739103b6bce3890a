"""Command-line flags of `python -m service`: one per setting, generated from `Settings`, so a flag and its
`SPLADE_*` variable can never drift apart. A flag given wins over the variable; neither given, the default.

Kept free of FastAPI, numba and onnxruntime: `--help` answers at once, even where the model cannot load.
"""
from __future__ import annotations

import argparse

from service.settings import ENV_PREFIX, Settings

DESCRIPTION = (
    "Serve an index with the query encoder of a model artifact (FastAPI on uvicorn, one worker). Every flag can "
    f"also be set by the {ENV_PREFIX}* variable named in its help; a flag given wins over the variable."
)
EPILOG = (
    "Exit status: 0 after a normal shutdown, 2 for invalid settings (the variable or flag and the limit are "
    "named), 1 when the model or index cannot be served. See docs/service.md."
)


def flag_name(field: str) -> str:
    return "--" + field.replace("_", "-")


def env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


def build_parser(prog: str = "python -m service") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=DESCRIPTION, epilog=EPILOG)
    for field, info in Settings.model_fields.items():
        default = info.default
        default_text = str(default) if default is not None else "none"
        parser.add_argument(
            flag_name(field), dest=field, default=None, metavar=field.upper(),
            # Values stay text: pydantic converts and validates them exactly as it does the variables.
            help=f"{info.description} (env {env_name(field)}; default {default_text})",
        )
    return parser


def overrides_from_argv(argv: list[str] | None, prog: str = "python -m service") -> dict[str, str]:
    """The settings given as flags (exits 0 after `--help`, 2 for an unknown flag, as argparse does)."""
    args = build_parser(prog).parse_args(argv)
    return {field: value for field, value in vars(args).items() if value is not None}


def name_flags(message: str, overrides: dict[str, str]) -> str:
    """A settings error names the variable; for a value given as a flag, name the flag too."""
    for field in overrides:
        message = message.replace(f"{env_name(field)}:", f"{flag_name(field)} ({env_name(field)}):")
    return message
