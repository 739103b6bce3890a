"""Export a checkpoint (siamese, separate query/doc, or inference-free) into a model artifact directory.

Imports torch and transformers; the service never imports this module.
"""
from __future__ import annotations

import datetime as dt
import functools
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer

from models import artifact
from models.checkpoints import Checkpoint, load_checkpoint
from models.decoder import DecoderOptions
from models.errors import CheckpointError
from models.parity import measure_export_parity, measure_onnx_pair
from models.quantization import quantize_int8
from models.splade_graph import export_encoder_onnx
from models.weight_table import read_weight_table

DEFAULT_OPSET = 17


def _truncating(tokenizer: Tokenizer, max_length: int) -> Tokenizer:
    copy = Tokenizer.from_str(tokenizer.to_str())
    copy.enable_truncation(max_length=max_length)
    return copy


def _check_lengths(query_max_length: int, doc_max_length: int, checkpoints: list[Checkpoint]) -> None:
    for name, value in (("query max length", query_max_length), ("document max length", doc_max_length)):
        if value < 2:
            raise CheckpointError(f"{name} must be >= 2 tokens (room for the special tokens), got {value}")
        for checkpoint in checkpoints:
            limit = checkpoint.max_position_embeddings
            echo = checkpoint.decoder is not None and checkpoint.decoder.echo
            if echo and limit is not None and 2 * value > limit:
                raise CheckpointError(
                    f"echo repeats the text: {name} {value} needs {2 * value} positions but {checkpoint.source} "
                    f"has a position limit of {limit} tokens (use a {name} <= {checkpoint.input_limit} or no echo)"
                )
            if limit is not None and value > limit:
                raise CheckpointError(f"{name} {value} exceeds {checkpoint.source}'s position limit of {limit} tokens")
            window = checkpoint.sliding_window
            if window is not None and value * (2 if echo else 1) > window:
                raise CheckpointError(
                    f"{name} {value}{' with echo' if echo else ''} exceeds {checkpoint.source}'s sliding attention "
                    f"window of {window} tokens, which the exported graph does not implement"
                )


def _versions() -> dict[str, str]:
    import onnx
    import onnxruntime
    import torch
    import transformers

    return {"torch": torch.__version__, "transformers": transformers.__version__, "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__}


def _load_sources(kind, model, query_model, doc_model, query_weights, revision, backbone, decoder_options):
    """(query checkpoint or None, document checkpoint, query weight table or None) for `kind`, validated."""
    load = functools.partial(load_checkpoint, backbone=backbone, decoder_options=decoder_options)
    table = None
    if kind == "siamese":
        if not model:
            raise CheckpointError("kind=siamese needs --model (a checkpoint directory or hub id)")
        doc = query = load(model, revision)
    elif kind == "separate":
        if not (query_model and doc_model):
            raise CheckpointError("kind=separate needs both --query-model and --doc-model")
        query, doc = load(query_model, revision), load(doc_model, revision)
        if query.tokenizer.to_str() != doc.tokenizer.to_str():
            raise CheckpointError(
                f"the query checkpoint {query_model} and the document checkpoint {doc_model} use different "
                "tokenizers; an index needs one vocabulary for both sides"
            )
    elif kind == "inference-free":
        if not (doc_model and query_weights):
            raise CheckpointError("kind=inference-free needs --doc-model and --query-weights (an idf.json table)")
        doc, query = load(doc_model, revision), None
        # Checked before any export work, so a bad table fails in seconds.
        table = read_weight_table(query_weights, doc.tokenizer, doc.vocab_size, doc.special_token_ids)
    else:
        raise CheckpointError(f"kind must be one of {', '.join(artifact.KINDS)}, got {kind!r}")
    return query, doc, table


def _add_int8_variants(staging: Path, tokenizer: Tokenizer, vocab_size: int, max_lengths: dict) -> dict:
    """Quantize each encoder graph and measure what it costs against fp32."""
    figures = {}
    for name, side in ((artifact.QUERY_ONNX, "query"), (artifact.DOC_ONNX, "document")):
        if not (staging / name).exists():
            continue
        quantized = staging / artifact.int8_name(name)
        quantize_int8(staging / name, quantized)
        loss = measure_onnx_pair(staging / name, quantized, _truncating(tokenizer, max_lengths[side]), vocab_size)
        loss["bytes_fp32"] = (staging / name).stat().st_size
        loss["bytes_int8"] = quantized.stat().st_size
        figures[artifact.int8_name(name)] = loss
    return figures


def export_artifact(
    kind: str,
    out: Path | str,
    *,
    model: str | None = None,
    query_model: str | None = None,
    doc_model: str | None = None,
    query_weights: Path | str | None = None,
    revision: str | None = None,
    query_max_length: int = artifact.DEFAULT_QUERY_MAX_LENGTH,
    doc_max_length: int = artifact.DEFAULT_DOC_MAX_LENGTH,
    opset: int = DEFAULT_OPSET,
    int8: bool = False,
    origin: dict[str, Any] | None = None,
    source_label: str | None = None,
    backbone: str = "auto",
    decoder_options: DecoderOptions = DecoderOptions(),
) -> dict[str, Any]:
    """Write the artifact atomically to `out` and return its manifest.

    `origin` records where a fetched checkpoint came from; `source_label` replaces a temporary source path
    in the manifest with that name. `backbone` and `decoder_options`: see models.checkpoints.load_checkpoint.
    """
    artifact.check_replaceable(out)  # before minutes of work, not after
    query, doc, table = _load_sources(kind, model, query_model, doc_model, query_weights, revision, backbone,
                                      decoder_options)
    checkpoints = [doc] + ([query] if query is not None and query is not doc else [])
    _check_lengths(query_max_length, doc_max_length, checkpoints)

    if source_label is not None:
        for checkpoint in checkpoints:
            checkpoint.source = source_label
    source: dict[str, Any] = {"document": doc.describe()}
    parity: dict[str, Any] = {}
    quantization: dict[str, Any] | None = None
    with artifact.atomic_directory(out) as staging:
        doc.tokenizer.save(str(staging / artifact.TOKENIZER))
        export_encoder_onnx(doc.pooling(), staging / artifact.DOC_ONNX, opset)
        parity["document"] = measure_export_parity(
            doc.reference_weights, staging / artifact.DOC_ONNX, _truncating(doc.tokenizer, doc_max_length),
            doc.vocab_size,
        )
        if kind == "inference-free":
            np.save(staging / artifact.QUERY_WEIGHTS, table)
            source["query"] = {"weights": str(query_weights), "sha256": artifact.sha256_file(Path(query_weights))}
            parity["query"] = {"lookup": True, "non_zero_terms": int(np.count_nonzero(table))}
        else:
            if query is doc:
                # (a graph with external data refers to doc.onnx.data by name: the copy shares that file)
                shutil.copyfile(staging / artifact.DOC_ONNX, staging / artifact.QUERY_ONNX)
            else:
                export_encoder_onnx(query.pooling(), staging / artifact.QUERY_ONNX, opset)
            source["query"] = query.describe()
            parity["query"] = measure_export_parity(
                query.reference_weights, staging / artifact.QUERY_ONNX, _truncating(query.tokenizer, query_max_length),
                query.vocab_size,
            )
        if int8:
            quantization = _add_int8_variants(
                staging, doc.tokenizer, doc.vocab_size, {"query": query_max_length, "document": doc_max_length}
            )
        limits = [c.input_limit for c in checkpoints if c.input_limit is not None]
        manifest = {
            "format_version": artifact.FORMAT_VERSION,
            "kind": kind,
            "source": source,
            "origin": origin,
            "vocab_size": doc.vocab_size,
            "tokenizer_sha256": artifact.sha256_file(staging / artifact.TOKENIZER),
            "max_length": {"query": query_max_length, "document": doc_max_length},
            "max_position_embeddings": min(limits) if limits else None,
            "opset": opset,
            "graph_version": artifact.GRAPH_VERSION,
            "files": {path.name: artifact.sha256_file(path) for path in sorted(staging.iterdir())},
            "parity": parity,
            "quantization": quantization,
            "exporter": _versions(),
            "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        }
        artifact.write_json(staging / artifact.MANIFEST, manifest)
    return manifest
