r"""Offline writes to an existing index (plain or segmented): `add`, `update`, `delete`, `merge`.

    python -m index_builder add    --index DIR --model MODEL --corpus NEW [--format F] [--no-merge]
    python -m index_builder update --index DIR --model MODEL --corpus CHANGED      # re-add by id
    python -m index_builder delete --index DIR (--ids ID [ID ...] | --ids-file FILE) [--strict]
    python -m index_builder merge  --index DIR [--max-segments N]
    python -m index_builder verify --index DIR                                     # every segment, checksummed

Each verb is one commit (engine.lifecycle.IndexWriter): all of it becomes visible at once, or, if it fails or is
killed, none of it. `add` and `update` read any corpus format `build` reads, encoded with the index's own model:
a model whose vocabulary or tokenizer differs from the index's is refused. `add` refuses an id the index already
has; `update` replaces it (the old version is deleted in the same commit; an id the index lacks is added).
After a commit the merge policy runs (docs/lifecycle.md) unless `--no-merge`. `--memory-budget-mb` bounds the
documents buffered before a segment is cut, the merge's term ranges, and is what the id map (16 bytes per live
document) is reported against.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from types import SimpleNamespace

from engine.commit import read_commit
from engine.errors import IncompatibleArtifactsError
from engine.segments import base_manifest
from engine.lifecycle import IndexWriter, NewDocument, WriteReport
from engine.merge_policy import LogMergePolicy
from index_builder.build import EncodeSettings, encoded_documents, load_encoder, positive_int
from index_builder.corpus import FORMATS, CorpusError


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--index", required=True, type=Path, help="index directory (plain or segmented)")
    parser.add_argument("--memory-budget-mb", type=positive_int, default=256,
                        help="buffered documents before a segment is cut, merge ranges (MiB, 256)")
    parser.add_argument("--merge-factor", type=positive_int, default=10,
                        help="merge policy: this many adjacent segments of one size level are merged (10)")


def add_write_arguments(parser: argparse.ArgumentParser) -> None:
    _common(parser)
    parser.add_argument("--model", required=True, type=Path, help="the index's model artifact directory")
    parser.add_argument("--corpus", required=True, type=Path,
                        help="BEIR folder, corpus .jsonl/.tsv of id+text, or pre-encoded vectors .jsonl")
    parser.add_argument("--format", dest="corpus_format", choices=FORMATS, default="auto")
    parser.add_argument("--doc-max-terms", type=positive_int, default=None,
                        help="terms kept per document (default: what the index was built with)")
    parser.add_argument("--max-length", type=positive_int, default=None,
                        help="document tokens (default: what the index was built with)")
    parser.add_argument("--batch-size", type=positive_int, default=32, help="documents per encoder call (32)")
    parser.add_argument("--no-merge", action="store_true", help="do not run the merge policy after the commit")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_delete_arguments(parser: argparse.ArgumentParser) -> None:
    _common(parser)
    parser.add_argument("--ids", nargs="+", default=[], metavar="ID", help="ids to delete")
    parser.add_argument("--ids-file", type=Path, default=None, help="a file of ids to delete, one per line")
    parser.add_argument("--strict", action="store_true", help="an unknown id is an error (nothing is deleted)")


def add_merge_arguments(parser: argparse.ArgumentParser) -> None:
    _common(parser)
    parser.add_argument("--max-segments", type=positive_int, default=None,
                        help="full compaction: at most N segments, no deleted documents left "
                             "(default: only what the merge policy asks for)")


def _check_model(index_dir: Path, encoder) -> None:
    manifest = base_manifest(index_dir)
    problems = []
    if manifest["vocab_size"] != encoder.vocab_size:
        problems.append(f"vocab_size {manifest['vocab_size']} (index) != {encoder.vocab_size} (model)")
    if manifest["tokenizer_sha256"] != encoder.tokenizer_sha256:
        problems.append("tokenizer_sha256 differs")
    if problems:
        raise IncompatibleArtifactsError(f"--model: {index_dir} was built with another vocabulary or tokenizer "
                                         f"than this model ({'; '.join(problems)}); encode with the index's model")


def _writer(args: argparse.Namespace) -> IndexWriter:
    # New segments get the index's BM25 field by default (engine.lifecycle); metadata under the index's schema.
    return IndexWriter(args.index, memory_budget_mb=args.memory_budget_mb,
                       merge_policy=LogMergePolicy(merge_factor=max(args.merge_factor, 2)))


def _print_report(verb: str, args: argparse.Namespace, report: WriteReport, merges: list[WriteReport]) -> None:
    commit = read_commit(args.index)
    print(f"{verb} {args.index}: generation {commit.generation}, {report.added} added, {report.replaced} replaced, "
          f"{report.deleted} deleted; {len(commit.segments)} segments, {commit.documents} documents "
          f"({commit.deleted} deleted kept until a merge)")
    if report.saturated_postings:
        print(f"note: {report.saturated_postings} postings weigh more than the index's impact scale holds "
              f"(scale {commit.impact_scale:.6g}); they were stored at the largest impact")
    for merge in merges:
        print(f"merged {', '.join(merge.segments_merged)} -> {', '.join(merge.segments_written) or '(nothing left)'}"
              f" (generation {merge.generation})")


def run_write(args: argparse.Namespace, replace: bool) -> int:
    manifest = base_manifest(args.index)
    max_length = args.max_length or manifest.get("document_max_length")
    doc_max_terms = args.doc_max_terms or manifest.get("doc_max_terms")
    encoder = load_encoder(args.model, max_length)
    _check_model(args.index, encoder)
    settings = EncodeSettings(doc_max_terms=doc_max_terms, max_length=max_length, batch_size=args.batch_size,
                              corpus_format=args.corpus_format, progress=not args.no_progress)
    seen: set[str] = set()
    with _writer(args) as writer:
        for window, vectors in encoded_documents(args.corpus, encoder, settings):
            batch = []
            for doc, (term_ids, weights) in zip(window, vectors):
                if doc.id in seen:
                    raise CorpusError(f"{args.corpus}: duplicate document id {doc.id!r}")
                seen.add(doc.id)
                batch.append(NewDocument(doc.id, term_ids, weights, title=doc.title, text=doc.text))
            writer.add(batch, replace=replace)
        if not seen:
            raise CorpusError(f"{args.corpus}: no documents")
        report = writer.pending
        writer.commit()
        merges = [] if args.no_merge else writer.maybe_merge()
    _print_report("update" if replace else "add", args, report, merges)
    return 0


def run_delete(args: argparse.Namespace) -> int:
    ids = list(args.ids)
    if args.ids_file is not None:
        try:
            ids += [line.strip() for line in args.ids_file.read_text(encoding="utf-8").splitlines() if line.strip()]
        except OSError as exc:
            raise CorpusError(f"--ids-file: {exc}") from None
    if not ids:
        raise CorpusError("give the ids to delete: --ids ID [ID ...] or --ids-file FILE")
    with _writer(args) as writer:
        unknown = writer.delete(ids)
        if unknown:
            shown = ", ".join(repr(i) for i in unknown[:10]) + (" ..." if len(unknown) > 10 else "")
            print(f"{len(unknown)} unknown id(s) (no live document): {shown}", file=sys.stderr)
            if args.strict:
                print("error: --strict: nothing deleted", file=sys.stderr)
                return 1
        report = writer.pending
        writer.commit()
        merges = writer.maybe_merge()
    _print_report("delete", args, report, merges)
    return 0


def run_merge(args: argparse.Namespace) -> int:
    with _writer(args) as writer:
        merges = writer.force_merge(args.max_segments) if args.max_segments else writer.maybe_merge()
    _print_report("merge", args, WriteReport(), merges)
    if not merges:
        print("nothing to merge")
    return 0


def _verb(add_arguments, run) -> SimpleNamespace:
    return SimpleNamespace(add_arguments=add_arguments, run=run, __doc__=__doc__)


VERBS = {
    "add": (_verb(add_write_arguments, lambda args: run_write(args, replace=False)),
            "add new documents to an index (one commit; encoded with the index's model)"),
    "update": (_verb(add_write_arguments, lambda args: run_write(args, replace=True)),
               "re-add documents by id (the old versions are deleted in the same commit)"),
    "delete": (_verb(add_delete_arguments, run_delete), "delete documents by id (one commit)"),
    "merge": (_verb(add_merge_arguments, run_merge), "merge segments (the merge policy, or --max-segments N)"),
}
