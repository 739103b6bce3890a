"""`python -m splade_ray build`: encode a corpus with Ray Data on whatever CPUs or GPUs the cluster has, then
build the index and split it into N document-range shards, each step atomic as in `python -m index_builder build`.

    python -m splade_ray build --model data/models/splade-tiny --corpus scifact/ --out data/indexes/scifact \
        --shards 4 [--concurrency 4] [--encoder-cpus 1] [--encoder-gpus 0] [--address auto] [build flags ...]

The corpus is cut into the builder's own windows (`--batch-size` x 16 documents, in corpus order); Ray Data maps
an encoder class over the windows (`map_batches`, one window per call, `--concurrency` encoder actors), and each
window is encoded by the builder's own function (index_builder.document_vectors.encode_texts: length-sorted
batches), so every vector is the one a single-machine build computes. The vectors are written in corpus order
(the builder's vectors format), the index is built from them on this machine (inversion is cheap next to
encoding: ~27 s per million documents) and split into shards (`<out>.shards-<N>`, the directory
`python -m splade_ray serve --index <out> --shards N` serves). The result equals a single-machine build of
the same corpus: same documents, ids, postings and impacts (tested).

Not done here: a distributed inversion (each shard inverted on its own node). The corpus is read on the driver,
so its text passes through the driver's memory once, one window at a time into Ray's object store.
"""
from __future__ import annotations

import argparse
import pickle
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from index_builder.bm25_part import Bm25PartBuilder
from index_builder.build import EncodeSettings, build_index, load_encoder, settings_from_args, vectors_provenance
from index_builder.build import add_arguments as add_build_arguments
from index_builder.corpus import CorpusDocument, CorpusError, detect_format, read_corpus
from index_builder.document_vectors import WINDOW_BATCHES, encode_texts, windows
from index_builder.shard import split_index
from index_builder.vectors_file import VectorsWriter


class WindowEncoder:
    """Ray Data's encoder class: one actor loads the document encoder once and encodes whole windows."""

    def __init__(self, model_dir: str, max_length: int | None, batch_size: int, doc_max_terms: int | None) -> None:
        import os

        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        self.encoder = load_encoder(Path(model_dir), max_length)
        self.batch_size = batch_size
        self.doc_max_terms = doc_max_terms

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        payloads = []
        for ids, titles, texts in zip(batch["ids"], batch["titles"], batch["texts"]):
            docs = [CorpusDocument(str(i), str(t), str(x)) for i, t, x in zip(ids, titles, texts)]
            vectors = encode_texts(self.encoder, docs, self.batch_size, self.doc_max_terms)
            payloads.append(pickle.dumps([(np.asarray(t, np.int32), np.asarray(w, np.float32)) for t, w in vectors]))
        return {"window": np.asarray(batch["window"]), "vectors": np.array(payloads, dtype=object)}


def ray_encode(corpus: Path, vectors_out: Path, model_dir: Path, settings: EncodeSettings, *, concurrency: int = 1,
               encoder_cpus: float = 1.0, encoder_gpus: float = 0.0) -> int:
    """Encode `corpus` on the Ray cluster (ray.init already called) into a vectors JSONL; the documents written."""
    import ray

    fmt = detect_format(corpus) if settings.corpus_format == "auto" else settings.corpus_format
    if fmt == "vectors":
        raise CorpusError(f"{corpus}: already encoded (a vectors file): build it with `python -m index_builder build`")
    rows, documents = [], []
    for number, window in enumerate(windows(read_corpus(corpus, fmt), settings.batch_size * WINDOW_BATCHES)):
        documents.append(window)
        rows.append({"window": number, "ids": [d.id for d in window], "titles": [d.title for d in window],
                     "texts": [d.text for d in window]})
    if not rows:
        raise CorpusError(f"{corpus}: no documents")
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True
    context.enable_progress_bars = settings.progress
    gpus = {"num_gpus": encoder_gpus} if encoder_gpus > 0 else {}
    dataset = ray.data.from_items(rows).map_batches(
        WindowEncoder, fn_constructor_args=(str(model_dir), settings.max_length, settings.batch_size,
                                            settings.doc_max_terms),
        batch_size=1, compute=ray.data.ActorPoolStrategy(size=concurrency), num_cpus=encoder_cpus, **gpus)
    encoder = load_encoder(model_dir, settings.max_length)  # for the vectors file's tokens and provenance
    writer = VectorsWriter(vectors_out, encoder)
    try:
        waiting: dict[int, Any] = {}
        next_window = 0
        for row in dataset.iter_rows():
            waiting[int(row["window"])] = row["vectors"]
            while next_window in waiting:  # corpus order, whatever order windows finish in
                for doc, (term_ids, weights) in zip(documents[next_window], pickle.loads(waiting.pop(next_window))):
                    writer.write(doc, term_ids, weights)
                next_window += 1
        if next_window != len(rows):
            raise RuntimeError(f"Ray Data returned {next_window} of {len(rows)} windows")
    except BaseException:
        writer.abort()
        raise
    writer.close(vectors_provenance(encoder, encoder.max_length, settings.doc_max_terms))
    return writer.count


def ray_build(corpus: Path, out: Path, model_dir: Path, settings: EncodeSettings, shards: int,
              shards_out: Path | None = None, *, bm25: Bm25PartBuilder | None = None, build_options: dict | None = None,
              save_vectors: Path | None = None, **encode_options: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Ray-encode, build `out` from the vectors, split it into `shards` (at `shards_out`, default
    `<out>.shards-<N>`); (the index manifest, the shard layout)."""
    out = Path(out)
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.vectors-", dir=out.absolute().parent) as scratch:
        vectors = save_vectors or Path(scratch) / "vectors.jsonl"
        ray_encode(Path(corpus), vectors, model_dir, settings, **encode_options)
        from_vectors = EncodeSettings(doc_max_terms=settings.doc_max_terms, max_length=settings.max_length,
                                      batch_size=settings.batch_size, corpus_format="vectors",
                                      progress=settings.progress)
        manifest = build_index(vectors, out, model_dir, from_vectors, bm25=bm25, **(build_options or {}))
    layout = split_index(out, shards_out or out.with_name(f"{out.name}.shards-{shards}"), shards)
    return manifest, layout


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_build_arguments(parser)
    ray = parser.add_argument_group("Ray")
    ray.add_argument("--shards", type=int, required=True, help="document-range shards to write (>= 1)")
    ray.add_argument("--shards-out", type=Path, default=None, help="where the shards go (default <out>.shards-<N>)")
    ray.add_argument("--address", default=None, help="Ray cluster to join (default: start a local one)")
    ray.add_argument("--num-cpus", type=float, default=None, help="CPUs of a local cluster (default: all)")
    ray.add_argument("--concurrency", type=int, default=1, help="encoder actors (one model copy each)")
    ray.add_argument("--encoder-cpus", type=float, default=1.0, help="CPUs Ray reserves per encoder actor")
    ray.add_argument("--encoder-gpus", type=float, default=0.0, help="GPUs per encoder actor (0: CPU)")


def run(args: argparse.Namespace) -> int:
    import ray

    if args.shards < 1 or args.concurrency < 1:
        raise ValueError(f"--shards and --concurrency must be >= 1, got {args.shards} and {args.concurrency}")
    ray.init(address=args.address, num_cpus=None if args.address else args.num_cpus, include_dashboard=False,
             log_to_driver=False)
    try:
        manifest, layout = ray_build(
            args.corpus, args.out, args.model, settings_from_args(args), args.shards, args.shards_out,
            bm25=None if args.no_bm25 else Bm25PartBuilder(args.bm25_k1, args.bm25_b),
            build_options={"impact_bits": args.impact_bits, "memory_budget_mb": args.memory_budget_mb,
                           "store_text": not args.no_text},
            save_vectors=args.save_vectors, concurrency=args.concurrency, encoder_cpus=args.encoder_cpus,
            encoder_gpus=args.encoder_gpus)
    finally:
        ray.shutdown()
    sizes = ", ".join(str(entry["documents"]) for entry in layout["shards"])
    print(f"built {args.out}: {manifest['counts']['documents']} documents, {manifest['counts']['postings']} postings; "
          f"{layout['count']} shards (documents per shard: {sizes})")
    return 0
