"""Build the demo corpus: the docstrings of the Python standard library installed on this machine.

    python -m index_builder.demo_corpus --out data/corpora/python-docs.jsonl [--max-docs 3000]

Writes a BEIR-style JSONL (`_id`, `title`, `text`), one document per public module, class, function and
method with a real docstring. Nothing is downloaded: the collection is made from the interpreter that runs
this command, so a user gets a searchable demo ("search the Python docs") on a fresh machine. The output is
deterministic for a given interpreter: the same ids, order and texts on every run.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import inspect
import io
import json
import os
import pkgutil
import sys
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

DEFAULT_MAX_DOCS = 3000
MIN_TEXT_CHARS = 40
MIN_TEXT_WORDS = 6

# Modules never imported: side effects on import (a browser, prints, GUI), test suites, codec tables,
# or deprecated modules (PEP 594, removed in 3.13) whose docs would only be noise in a demo.
SKIPPED_MODULES = frozenset(
    {
        "antigravity", "this", "idlelib", "turtle", "turtledemo", "tkinter", "test", "lib2to3", "ensurepip",
        "pydoc_data", "encodings", "distutils", "xxsubtype", "xxlimited", "xxlimited_35", "readline",
        "sre_compile", "sre_constants", "sre_parse",
        "aifc", "asynchat", "asyncore", "audioop", "cgi", "cgitb", "chunk", "crypt", "imghdr", "imp", "mailcap",
        "msilib", "nis", "nntplib", "ossaudiodev", "pipes", "smtpd", "sndhdr", "spwd", "sunau", "telnetlib",
        "uu", "xdrlib",
    }
)
SKIPPED_SUBMODULE_NAMES = frozenset({"test", "tests", "idle_test", "__main__"})


@dataclass(frozen=True)
class Document:
    id: str
    title: str
    text: str
    tier: int  # 0 module, 1 module-level class or function, 2 method: what is kept first under a cap

    def to_json(self) -> str:
        return json.dumps({"_id": self.id, "title": self.title, "text": self.text}, ensure_ascii=False)


def clean_docstring(obj: object) -> str | None:
    """The object's own docstring (never an inherited one), dedented; None when absent or too short."""
    try:
        raw = obj.__doc__
    except Exception:  # some C objects raise on attribute access
        return None
    if not isinstance(raw, str):
        return None
    text = inspect.cleandoc(raw).strip()
    if len(text) < MIN_TEXT_CHARS or len(text.split()) < MIN_TEXT_WORDS:
        return None
    return text


def is_public(name: str) -> bool:
    return not name.startswith("_")


def stdlib_module_names() -> list[str]:
    """Public top-level standard-library modules and their public submodules, sorted."""
    names: set[str] = set()
    for top in sorted(sys.stdlib_module_names):
        if not is_public(top) or top in SKIPPED_MODULES:
            continue
        module = import_quietly(top)
        if module is None:
            continue
        names.add(top)
        if hasattr(module, "__path__"):  # a package: walk its public submodules
            for info in pkgutil.walk_packages(module.__path__, prefix=top + ".", onerror=lambda _name: None):
                parts = info.name.split(".")
                if all(is_public(p) and p not in SKIPPED_SUBMODULE_NAMES for p in parts[1:]):
                    names.add(info.name)
    return sorted(names)


@contextlib.contextmanager
def quietly() -> Iterator[None]:
    """Keep the warnings (deprecations) and prints that importing and inspecting modules produce away from the user."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


def import_quietly(name: str):
    """Import a module quietly; None if it cannot be imported here (winreg, a missing C library, ...)."""
    with quietly():
        try:
            return importlib.import_module(name)
        except BaseException:  # noqa: BLE001 - an import may even raise SystemExit; the module is just skipped
            return None


def module_documents(module_name: str) -> Iterator[Document]:
    """The module's docstring, then its own public classes and functions, then those classes' methods."""
    module = import_quietly(module_name)
    if module is None:
        return
    text = clean_docstring(module)
    if text:
        yield Document(module_name, module_name, text, tier=0)
    for name, obj in sorted(vars(module).items()):
        # Only objects defined here: re-exports (os.path -> posixpath, asyncio -> asyncio.tasks) are documented
        # once, under the module that defines them.
        if not is_public(name) or getattr(obj, "__module__", None) != module_name:
            continue
        if inspect.isclass(obj):
            yield from class_documents(module_name, name, obj)
        elif inspect.isroutine(obj):
            text = clean_docstring(obj)
            if text:
                yield Document(f"{module_name}.{name}", f"{module_name}.{name}", text, tier=1)


def class_documents(module_name: str, class_name: str, cls: type) -> Iterator[Document]:
    qualified = f"{module_name}.{class_name}"
    text = clean_docstring(cls)
    if text:
        yield Document(qualified, qualified, text, tier=1)
    for name, member in sorted(vars(cls).items()):  # own members only: inherited methods belong to the base
        if not is_public(name):
            continue
        if isinstance(member, (staticmethod, classmethod)):
            member = member.__func__
        if inspect.isroutine(member) or isinstance(member, property):
            text = clean_docstring(member)
            if text:
                yield Document(f"{qualified}.{name}", f"{qualified}.{name}", text, tier=2)


def collect_documents(max_docs: int) -> list[Document]:
    """Every documented public object, deduplicated, capped at max_docs keeping whole tiers first.

    When a tier does not fit, evenly spaced documents of it are kept, so the cap thins every module a little
    instead of dropping the modules late in the alphabet.
    """
    seen_ids: set[str] = set()
    seen_texts: set[str] = set()
    by_tier: dict[int, list[Document]] = {0: [], 1: [], 2: []}
    with quietly():
        found = [doc for module_name in stdlib_module_names() for doc in module_documents(module_name)]
    for doc in found:
        # Identical texts (aliases, shared docstrings) would be indistinguishable results.
        if doc.id in seen_ids or doc.text in seen_texts:
            continue
        seen_ids.add(doc.id)
        seen_texts.add(doc.text)
        by_tier[doc.tier].append(doc)
    kept: list[Document] = []
    for tier in sorted(by_tier):
        room = max_docs - len(kept)
        docs = by_tier[tier]
        if room <= 0:
            break
        if len(docs) > room:
            docs = [docs[(i * len(docs)) // room] for i in range(room)]
        kept.extend(docs)
    return sorted(kept, key=lambda d: d.id)


def write_jsonl_atomically(docs: list[Document], out: Path) -> None:
    """Write to a temporary file beside `out`, then rename: a crash never leaves a half-written corpus."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            for doc in docs:
                handle.write(doc.to_json() + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, out)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise


def positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {number}")
    return number


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m index_builder.demo_corpus",
        description="Write a BEIR-style corpus.jsonl made from the docstrings of the installed Python standard library.",
    )
    parser.add_argument("--out", type=Path, required=True, help="output JSONL file (parent directories are created)")
    parser.add_argument(
        "--max-docs", type=positive_int, default=DEFAULT_MAX_DOCS,
        help=f"keep at most this many documents (default {DEFAULT_MAX_DOCS}: the demo index builds in about a minute on 2 cores)",
    )
    args = parser.parse_args(argv)
    if args.out.exists() and args.out.is_dir():
        parser.error(f"--out: {args.out} is a directory; give a file path such as {args.out / 'corpus.jsonl'}")
    docs = collect_documents(args.max_docs)
    if not docs:
        print("error: no documented standard-library objects found", file=sys.stderr)
        return 1
    write_jsonl_atomically(docs, args.out)
    modules = len({d.id for d in docs if d.tier == 0})
    print(
        f"wrote {len(docs)} documents ({modules} modules, Python {sys.version.split()[0]}) to {args.out}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
