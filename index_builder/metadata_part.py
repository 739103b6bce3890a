"""The build's side of document metadata (engine.metadata): the `--metadata-schema` flag, the writer every
build feeds, and the one line the CLI prints about it."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from engine import metadata as md

# Share of --memory-budget-mb the keyword dictionaries may hold (distinct values of keyword fields).
BUDGET_SHARE = 16


def schema_file(text: str) -> dict[str, str]:
    try:
        return md.load_schema_file(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_metadata_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--metadata-schema", type=schema_file, default=None, metavar="FILE",
                        help="JSON {field: type} (keyword, integer, float, boolean, keyword_list): index exactly "
                             "these metadata fields with these types (default: every top-level field of a "
                             "supported type, typed by its first value; docs/filters.md)")


def metadata_writer(staged: Path, schema: dict[str, str] | None, share_bytes: int) -> md.MetadataWriter:
    """A writer spooling into the staging directory (removed when it writes the part); `share_bytes` bounds its
    keyword dictionaries (a build's share: index_builder.memory_budget)."""
    return md.MetadataWriter(Path(staged) / "_metadata", schema, share_bytes)


def metadata_summary(manifest: dict[str, Any]) -> str:
    params = manifest.get("parts", {}).get(md.PART, {}).get("params", {})
    fields = params.get("fields", {})
    if not fields and not params.get("skipped"):
        return "metadata: none"
    line = "metadata: " + (", ".join(f"{name} ({f['type']}, {f['present']} documents)" for name, f in sorted(fields.items()))
                           or "no indexed field")
    if params.get("skipped"):
        line += "; not indexed: " + ", ".join(f"{name} ({why})" for name, why in params["skipped"].items())
    return line
