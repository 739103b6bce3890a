r"""`python -m index_builder build`: corpus -> encoded, pruned, quantized, inverted index, written atomically.

    python -m index_builder build --model data/models/splade-tiny --corpus corpus.jsonl --out data/indexes/x \
        [--doc-max-terms N] [--max-length L] [--batch-size B] [--impact-bits 8|16] [--memory-budget-mb M] \
        [--no-bm25] [--bm25-k1 K1] [--bm25-b B] [--metadata-schema FILE] [--passage-tokens N --passage-stride S]

The corpus is a BEIR folder, a JSONL/TSV of (id, text), or pre-encoded vectors JSONL (see corpus.py). Documents
keep corpus order: document number i is the i-th document. Duplicate ids are an error (naming the id and both
positions; checked once the corpus is read, before the postings are merged); documents whose text is empty are
kept (id and store) with no postings, counted in the manifest.

Memory: `--memory-budget-mb` bounds everything that grows with the corpus and, from text, the encoder's calls
(index_builder.memory_budget divides it: postings buffers, BM25 postings buffer, id hashes for the duplicate check,
metadata keyword dictionaries, one encoder call); a budget too small to encode one document of the maximum length is refused. Ids, stored texts
and their offsets stream to disk. The rest is fixed: the interpreter, the libraries, the model and the read
window. Every build reports its peaks (`build.memory` in the manifest, a line on the CLI).
The BM25 field (an optional part, docs/hybrid.md) is built from the same texts unless --no-bm25 is given.
Every build also writes the `metadata` part (engine.metadata, docs/filters.md): the documents' filterable
fields, typed as they first appear or as `--metadata-schema FILE` declares.
`--passage-tokens N --passage-stride S` encodes each document as overlapping passages (index_builder.passages,
the `passages` part; docs/hybrid.md): the SPLADE postings are then over passages, the rest stays per document.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tqdm import tqdm

from engine import index_format
from index_builder.bm25_part import Bm25PartBuilder, add_bm25_arguments
from index_builder.corpus import FORMATS, CorpusDocument, CorpusError, count_lines, detect_format, read_corpus
from index_builder.document_vectors import WINDOW_BATCHES, encode_texts, vectors_from_tokens, windows
from index_builder.duplicate_ids import DuplicateIdCheck
from engine.inversion import ChunkedInverter, InversionResult
from index_builder.memory_budget import BudgetPlan, plan_budget
from index_builder.memory_report import MemoryMonitor, summary_line
from index_builder.metadata_part import add_metadata_arguments, metadata_writer, metadata_summary
from index_builder.passages import PassageSettings, PassageSplitter, check_corpus_format
from index_builder.vectors_file import VectorsWriter, read_sidecar
from engine.manifest import DEFAULT_SCORER
from models.sparse import SparseVector


@dataclass(frozen=True)
class EncodeSettings:
    doc_max_terms: int | None = None
    max_length: int | None = None       # document tokens; None = the model manifest's document max length
    batch_size: int = 32
    corpus_format: str = "auto"
    progress: bool = True
    max_logits_bytes: int | None = None  # cap on one encoder call's logits (set from the build's memory budget)


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def add_encode_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, type=Path, help="model artifact directory (python -m models ...)")
    parser.add_argument("--corpus", required=True, type=Path,
                        help="BEIR folder, corpus .jsonl/.tsv of id+text, or pre-encoded vectors .jsonl")
    parser.add_argument("--format", dest="corpus_format", choices=FORMATS, default="auto",
                        help="corpus format (default: detected from the path and the first line)")
    parser.add_argument("--doc-max-terms", type=positive_int, default=None,
                        help="keep each document's N highest-weighted terms (default: all non-zero terms)")
    parser.add_argument("--max-length", type=positive_int, default=None,
                        help="document max length in tokens (default: the model manifest's, 256 for SPLADE-Tiny)")
    parser.add_argument("--batch-size", type=positive_int, default=32, help="documents per encoder call (32)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def load_encoder(model_dir: Path, max_length: int | None):
    from models.runtime import RuntimeOptions, load_document_encoder

    return load_document_encoder(model_dir, RuntimeOptions(), max_length=max_length)


def model_summary(encoder) -> dict[str, Any]:
    manifest = encoder.manifest
    keys = ("kind", "source", "origin", "max_length", "files", "format_version")
    return {key: manifest[key] for key in keys if key in manifest}


def vectors_provenance(encoder, document_max_length: int | None, doc_max_terms: int | None) -> dict[str, Any]:
    """What a saved vectors file records about how it was encoded (its sidecar; read back by `build`)."""
    return {"vocab_size": encoder.vocab_size, "tokenizer_sha256": encoder.tokenizer_sha256,
            "model": model_summary(encoder), "document_max_length": document_max_length,
            "doc_max_terms": doc_max_terms}


def encoded_documents(corpus: Path, encoder, settings: EncodeSettings, splitter: PassageSplitter | None = None
                      ) -> Iterator[tuple[list[CorpusDocument], list[SparseVector]]]:
    """Windows of (documents, vectors) in corpus order, with a progress bar (ids are checked by the caller).

    With a passage `splitter`, the vectors are those of every passage of the window's documents, in order."""
    fmt = detect_format(corpus) if settings.corpus_format == "auto" else settings.corpus_format
    with tqdm(total=count_lines(corpus), unit="doc", desc="encoding" if fmt != "vectors" else "reading",
              disable=not settings.progress, mininterval=1.0, smoothing=0.05) as bar:
        for window in windows(read_corpus(corpus, fmt), settings.batch_size * WINDOW_BATCHES):
            if splitter is not None:
                vectors = splitter.encode(window, settings.batch_size, settings.doc_max_terms)
            elif fmt == "vectors":
                vectors = vectors_from_tokens(encoder, window, settings.doc_max_terms)
            else:
                vectors = encode_texts(encoder, window, settings.batch_size, settings.doc_max_terms,
                                       settings.max_logits_bytes)
            yield window, vectors
            bar.update(len(window))


def build_index(corpus: Path, out: Path, model_dir: Path, settings: EncodeSettings = EncodeSettings(), *,
                impact_bits: int = 8, memory_budget_mb: int = 1024, store_text: bool = True,
                save_vectors: Path | None = None, encoder=None, bm25: Bm25PartBuilder | None = None,
                impact_scale: float | None = None, metadata_schema: dict[str, str] | None = None,
                passages: PassageSettings | None = None) -> dict[str, Any]:
    """Build the index at `out` (replacing any previous one only once the new one is complete and valid).

    `bm25` (a fresh Bm25PartBuilder) also builds the BM25 field from the same texts (index_builder.bm25_part).
    `metadata_schema` ({field: type}) declares the metadata fields to index (default: every supported field).
    `passages` encodes each document as passages (index_builder.passages; the SPLADE postings' rows are then
    passages, and the `passages` part maps them to documents).
    """
    started = time.time()
    corpus, out = Path(corpus), Path(out)
    fmt = detect_format(corpus) if settings.corpus_format == "auto" else settings.corpus_format
    encoder = encoder or load_encoder(model_dir, settings.max_length)
    document_max_length = encoder.max_length
    doc_max_terms = settings.doc_max_terms
    if fmt == "vectors":
        document_max_length, doc_max_terms = _vectors_provenance(corpus, encoder, doc_max_terms)
    plan = plan_budget(memory_budget_mb << 20, encodes_text=fmt != "vectors", bm25=bm25 is not None,
                       vocab_size=encoder.vocab_size, max_length=encoder.max_length or 0,
                       encoder_max_logits_bytes=getattr(getattr(encoder, "options", None), "max_logits_bytes", None))
    settings = dataclasses.replace(settings, max_logits_bytes=plan.max_logits_bytes)
    splitter = None
    if passages is not None:
        check_corpus_format(fmt)
        if save_vectors:
            raise ValueError("--save-vectors saves one vector per document; it cannot be combined with passages")
        splitter = PassageSplitter(encoder, passages)
    writer = VectorsWriter(save_vectors, encoder) if save_vectors else None
    try:
        with MemoryMonitor() as monitor, index_format.atomic_index_dir(out) as staged:
            id_check = DuplicateIdCheck(staged / "_ids", plan.id_hashes_bytes)
            metadata = metadata_writer(staged, metadata_schema, plan.metadata_bytes)
            inverter = ChunkedInverter(staged / "_runs", encoder.vocab_size, plan.postings_bytes)
            if bm25 is not None:
                bm25.open(staged / "_bm25", plan.bm25_bytes)
            ids = index_format.StringTableWriter(staged, index_format.IDS)
            store = index_format.StringTableWriter(staged, index_format.DOCUMENTS) if store_text else None
            empty_documents, any_text = 0, False
            for window, vectors in encoded_documents(corpus, encoder, settings, splitter):
                inverter.add_documents(vectors)
                if splitter is not None:  # rows are passages; a document is empty when its first passage is
                    vectors = [vectors[first] for first in splitter.window_first_rows]
                for doc, (term_ids, weights) in zip(window, vectors):
                    ids.append(doc.id)
                    id_check.add(doc.id)
                    metadata.add(doc.id, doc.metadata)
                    if bm25 is not None:
                        bm25.add(doc.encoder_text)
                    empty_documents += len(term_ids) == 0
                    if store is not None:
                        any_text = any_text or bool(doc.title or doc.text)
                        store.append(json.dumps({"title": doc.title, "text": doc.text}, ensure_ascii=False))
                    if writer is not None:
                        writer.write(doc, term_ids, weights)
            if len(ids) == 0:
                raise CorpusError(f"{corpus}: no documents")
            ids.close()
            if store is not None:
                store.close()
                if not any_text:  # e.g. vectors without text: no store rather than a store of empty strings
                    for name in (f"{index_format.DOCUMENTS}.bin", f"{index_format.DOCUMENTS}.offsets.npy"):
                        (staged / name).unlink()
            monitor.sample()
            inverter.flush()  # the buffers go to disk before the merges need the memory
            if bm25 is not None:
                bm25.flush()
            raise_on_duplicate(corpus, id_check, staged, len(ids), plan.after_reading_bytes)
            result = inverter.finish(staged, impact_bits, impact_scale=impact_scale)
            name, info = metadata.write(staged)
            parts = {name: info.model_dump(mode="json")}
            if bm25 is not None and bm25.vocabulary:  # vectors without text: nothing to analyse, no field
                name, info = bm25.write(staged)
                parts[name] = info.model_dump(mode="json")
            elif bm25 is not None:
                bm25.discard()
            if splitter is not None:
                name, info = splitter.write(staged)
                parts[name] = info.model_dump(mode="json")
            memory = monitor.report(memory_budget_mb,
                                    budget_covers=budget_covers(plan, inverter, id_check, bm25, metadata),
                                    outside_budget=outside_budget(bm25, splitter))
            manifest = index_manifest(
                result, started, encoder.vocab_size, encoder.tokenizer_sha256, empty_documents,
                model=model_summary(encoder), document_max_length=document_max_length,
                doc_max_terms=doc_max_terms, corpus={"path": str(corpus), "format": fmt},
                document_store=bool(store is not None and any_text),
                build={"memory_budget_mb": memory_budget_mb, "inversion_runs": result.runs,
                       "duplicate_id_runs": id_check.runs, "batch_size": settings.batch_size, "memory": memory})
            manifest["parts"] = parts
            if splitter is not None:  # the postings' rows are passages; `counts.documents` stays documents
                manifest["counts"].update(documents=len(ids), passages=result.num_documents,
                                          mean_terms_per_document=round(result.num_postings / len(ids), 3),
                                          mean_terms_per_passage=round(result.num_postings / result.num_documents, 3))
            manifest = index_format.write_manifest(staged, manifest)
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    if writer is not None:
        writer.close(vectors_provenance(encoder, document_max_length, doc_max_terms))
    return manifest


def raise_on_duplicate(corpus: Path, id_check: DuplicateIdCheck, table_dir: Path, count: int, budget: int) -> None:
    """CorpusError naming the first duplicate id and both document numbers, as a dictionary of seen ids would."""
    table = index_format.StringTable(table_dir, index_format.IDS, count)
    try:
        duplicate = id_check.find_duplicate(table.get, budget)
    finally:
        table.close()
    if duplicate is not None:
        raise CorpusError(f"{corpus}: duplicate document id {duplicate.id!r} (documents #{duplicate.first} "
                          f"and #{duplicate.second})")


def budget_covers(plan: BudgetPlan, inverter: ChunkedInverter, id_check: DuplicateIdCheck,
                  bm25: Bm25PartBuilder | None, metadata=None) -> dict[str, int]:
    """What the budget bounded, by part (index_builder.memory_budget)."""
    covers = {"postings buffer": inverter.memory_budget_bytes}
    if bm25 is not None:
        covers["bm25 postings buffer"] = bm25.memory_budget_bytes
    covers["duplicate-id hashes"] = id_check.memory_budget_bytes
    if metadata is not None:
        covers["metadata keyword dictionaries"] = metadata.memory_budget_bytes
    if plan.max_logits_bytes is not None:
        covers[f"encoder call (3 x max_logits_bytes {plan.max_logits_bytes / 2**20:.1f} MiB)"] = plan.encoder_bytes
    covers["duplicate-id merge after reading"] = plan.after_reading_bytes
    return covers


def outside_budget(bm25: Bm25PartBuilder | None = None, splitter=None) -> dict[str, int]:
    """Memory the budget does not bound (the interpreter, libraries and model are `anonymous_at_start`): fixed
    buffers, and the BM25 vocabulary, which grows with the distinct analysed words (not with the documents)."""
    fixed = {"string table blocks": 2 * index_format.StringTableWriter.OFFSETS_BLOCK * 8,
             "validation chunk": index_format.VERIFY_CHUNK * 24}
    if bm25 is not None:
        fixed["bm25 vocabulary (grows with distinct words)"] = bm25.vocabulary_bytes()
    if splitter is not None:
        fixed["passage map (grows with the corpus: 20 bytes a passage)"] = int(splitter.buffered_bytes())
    return fixed


def index_manifest(result: InversionResult, started: float, vocab_size: int, tokenizer_sha256: str,
                   empty_documents: int, **fields: Any) -> dict[str, Any]:
    """The manifest fields every index has; `fields` adds model, corpus and build facts."""
    return {
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "build_seconds": round(time.time() - started, 3),
        "vocab_size": int(vocab_size),
        "tokenizer_sha256": tokenizer_sha256,
        "counts": {
            "documents": result.num_documents,
            "postings": result.num_postings,
            "terms_with_postings": result.terms_with_postings,
            "empty_documents": int(empty_documents),
            "mean_terms_per_document": round(result.num_postings / max(result.num_documents, 1), 3),
        },
        "quantization": result.quantization.to_manifest(),
        "document_store": False,
        "parts": {},
        "default_scorer": DEFAULT_SCORER,
        **fields,
    }


def _vectors_provenance(corpus: Path, encoder, doc_max_terms: int | None) -> tuple[int | None, int | None]:
    """Document max length and max terms of saved vectors, from their sidecar (checked against the model)."""
    sidecar = read_sidecar(corpus)
    if sidecar is None:
        return None, doc_max_terms
    if sidecar.get("tokenizer_sha256") != encoder.tokenizer_sha256 or sidecar.get("vocab_size") != encoder.vocab_size:
        raise CorpusError(f"{corpus}: the vectors were encoded with another vocabulary than the model's "
                          f"(tokenizer_sha256/vocab_size in the sidecar differ)")
    saved_terms = sidecar.get("doc_max_terms")
    if saved_terms is not None and (doc_max_terms is None or doc_max_terms > saved_terms):
        doc_max_terms = saved_terms
    return sidecar.get("document_max_length"), doc_max_terms


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_encode_arguments(parser)
    parser.add_argument("--out", required=True, type=Path, help="index directory to create or replace")
    parser.add_argument("--impact-bits", type=int, choices=(8, 16), default=8,
                        help="bits per stored impact: 8 (default, compact) or 16 (near-float precision)")
    parser.add_argument("--impact-scale", type=float, default=None,
                        help="fix the quantization scale (weight = impact x scale) instead of deriving it from the "
                             "largest weight; larger weights saturate at the top impact (counted). Gives the "
                             "impacts of a segmented index's added segments, whose scale is the index's")
    parser.add_argument("--memory-budget-mb", type=positive_int, default=1024,
                        help="memory for what grows with the corpus (postings buffers, duplicate-id check, merges)"
                             " and, from text, the encoder's calls, in MiB (1024); the interpreter and the model "
                             "come on top")
    parser.add_argument("--no-text", action="store_true", help="do not store titles and texts")
    parser.add_argument("--save-vectors", type=Path, default=None,
                        help="also write the encoded vectors as JSONL (rebuild later without encoding)")
    parser.add_argument("--no-bm25", action="store_true",
                        help="do not build the BM25 field (built by default from the documents' text)")
    add_bm25_arguments(parser)
    add_metadata_arguments(parser)
    parser.add_argument("--passage-tokens", type=positive_int, default=None,
                        help="encode each document as overlapping passages of at most N tokens (special tokens "
                             "included; at most the document max length); a document scores its best passage")
    parser.add_argument("--passage-stride", type=positive_int, default=None,
                        help="tokens between the starts of two passages (default: 3/4 of a passage's text "
                             "tokens); needs --passage-tokens")


def settings_from_args(args: argparse.Namespace) -> EncodeSettings:
    return EncodeSettings(doc_max_terms=args.doc_max_terms, max_length=args.max_length, batch_size=args.batch_size,
                          corpus_format=args.corpus_format, progress=not args.no_progress)


def passage_settings(args: argparse.Namespace) -> PassageSettings | None:
    if args.passage_tokens is None:
        if args.passage_stride is not None:
            raise ValueError("--passage-stride needs --passage-tokens")
        return None
    return PassageSettings(args.passage_tokens, args.passage_stride or max(1, (args.passage_tokens - 2) * 3 // 4))


def run(args: argparse.Namespace) -> int:
    manifest = build_index(args.corpus, args.out, args.model, settings_from_args(args), impact_bits=args.impact_bits,
                           memory_budget_mb=args.memory_budget_mb, store_text=not args.no_text,
                           save_vectors=args.save_vectors,
                           bm25=None if args.no_bm25 else Bm25PartBuilder(args.bm25_k1, args.bm25_b),
                           impact_scale=args.impact_scale, metadata_schema=args.metadata_schema,
                           passages=passage_settings(args))
    counts, quant = manifest["counts"], manifest["quantization"]
    size = sum(entry["size"] for entry in manifest["files"].values())
    print(f"built {args.out}: {counts['documents']} documents ({counts['empty_documents']} empty), "
          f"{counts['postings']} postings, {quant['dtype']} impacts (scale {quant['scale']:.6g}), "
          f"{size / 2**20:.1f} MiB, {manifest['build_seconds']:.1f} s")
    print(summary_line(manifest["build"]["memory"]))
    print(metadata_summary(manifest))
    return 0
