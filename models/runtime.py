"""Load exported encoders and turn texts into sparse SPLADE vectors. No torch, no transformers.

Public surface (docs/design.md, "models.runtime"): RuntimeOptions, create_session, TokenizedBatch,
load_query_encoder, load_document_encoder. Encoders are safe to call from several threads at once: ONNX
Runtime sessions are, and each encoder's tokenizer is configured once at load and only read afterwards.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from models import artifact
from models.errors import ArtifactError
from models.gpu import run_top_k
from models.providers import RuntimeOptions, create_session
from models.variants import fp16_name
from models.sparse import SparseVector, heaviest_terms
from models.tokenization import TokenizedBatch, load_tokenizer, tokenize

__all__ = [
    "RuntimeOptions",
    "create_session",
    "TokenizedBatch",
    "SparseEncoder",
    "OnnxEncoder",
    "WeightTableQueryEncoder",
    "load_query_encoder",
    "load_document_encoder",
]



def _check_max_terms(max_terms: int | None) -> None:
    if max_terms is not None and (isinstance(max_terms, bool) or not isinstance(max_terms, int) or max_terms < 1):
        raise ValueError(f"max_terms must be a positive integer or None, got {max_terms!r}")


class SparseEncoder:
    """What the query and document encoders share: manifest facts, the tokenizer and the vocabulary."""

    provider: str

    def __init__(self, artifact_dir: Path, manifest: dict[str, Any], side: str, max_length: int | None) -> None:
        self.artifact_dir = artifact_dir
        self.manifest = manifest
        self.vocab_size = int(manifest["vocab_size"])
        self.tokenizer_sha256 = str(manifest["tokenizer_sha256"])
        self.max_length = _resolve_max_length(manifest, side, max_length)
        tokenizer_path = artifact_dir / artifact.TOKENIZER
        if not tokenizer_path.is_file():
            raise ArtifactError(f"{tokenizer_path} is missing")
        actual_sha = artifact.sha256_file(tokenizer_path)
        if actual_sha != self.tokenizer_sha256:
            raise ArtifactError(
                f"{tokenizer_path}: sha256 {actual_sha} does not match the manifest's tokenizer_sha256 "
                f"{self.tokenizer_sha256}"
            )
        self._tokenizer = load_tokenizer(tokenizer_path, self.max_length)

    def tokenize(self, texts: Sequence[str]) -> TokenizedBatch:
        return tokenize(self._tokenizer, texts)

    def encode_tokenized(self, batch: TokenizedBatch, max_terms: int | None = None) -> list[SparseVector]:
        raise NotImplementedError

    def encode(self, texts: Sequence[str], max_terms: int | None = None) -> list[SparseVector]:
        _check_max_terms(max_terms)
        return self.encode_tokenized(self.tokenize(texts), max_terms)

    def token_id(self, token: str) -> int | None:
        term_id = self._tokenizer.token_to_id(token)
        return None if term_id is None or term_id >= self.vocab_size else int(term_id)

    def token(self, term_id: int) -> str:
        token = self._tokenizer.id_to_token(int(term_id)) if 0 <= int(term_id) < self.vocab_size else None
        if token is None:
            raise ValueError(f"term id {term_id} is outside the vocabulary (size {self.vocab_size})")
        return token


def _resolve_max_length(manifest: dict[str, Any], side: str, override: int | None) -> int:
    limit = manifest.get("max_position_embeddings")
    if override is None:
        return int(manifest["max_length"][side])
    if isinstance(override, bool) or not isinstance(override, int) or override < 2:
        raise ValueError(f"max_length must be an integer >= 2 (room for the special tokens), got {override!r}")
    if limit is not None and override > int(limit):
        raise ValueError(f"max_length {override} exceeds the model's position limit of {limit} tokens")
    return override


class OnnxEncoder(SparseEncoder):
    """A SPLADE encoder graph (query.onnx or doc.onnx): tokens -> top-k (term id, weight) pairs."""

    def __init__(
        self,
        artifact_dir: Path,
        manifest: dict[str, Any],
        side: str,
        onnx_name: str,
        options: RuntimeOptions,
        max_length: int | None,
    ) -> None:
        super().__init__(artifact_dir, manifest, side, max_length)
        if options.use_int8:
            onnx_name = artifact.int8_name(onnx_name)
            if not (artifact_dir / onnx_name).is_file():
                raise ArtifactError(
                    f"{artifact_dir / onnx_name} is missing: use_int8 needs an artifact exported with --int8"
                )
        if options.use_fp16:
            onnx_name = fp16_name(onnx_name)
            if not (artifact_dir / onnx_name).is_file():
                raise ArtifactError(
                    f"{artifact_dir / onnx_name} is missing: use_fp16 needs models.fp16.add_fp16_variants "
                    "(bench/gpu_checks.py --write-fp16)"
                )
        self.onnx_path = artifact_dir / onnx_name
        self.options = options
        self.session, self.provider = create_session(self.onnx_path, options)

    def rows_per_call(self, seq_len: int) -> int:
        """How many rows of length `seq_len` fit the logits memory budget (at least one)."""
        bytes_per_row = max(1, seq_len) * self.vocab_size * 4
        return max(1, self.options.max_logits_bytes // bytes_per_row)

    def encode_tokenized(self, batch: TokenizedBatch, max_terms: int | None = None) -> list[SparseVector]:
        _check_max_terms(max_terms)
        top_k = np.array(self.vocab_size if max_terms is None else min(max_terms, self.vocab_size), dtype=np.int64)
        results: list[SparseVector] = []
        step = self.rows_per_call(batch.input_ids.shape[1] if len(batch) else 0)
        for start in range(0, len(batch), step):
            chunk = batch.rows(start, start + step)
            # On CUDA through IO binding: only the top-k pairs come back to the host (models/gpu.py).
            term_ids, weights = run_top_k(
                self.session,
                {"input_ids": chunk.input_ids, "attention_mask": chunk.attention_mask, "top_k": top_k},
                self.provider,
            )
            for row_ids, row_weights in zip(term_ids, weights):
                # Weights come sorted descending, so the non-zero ones are a prefix.
                keep = int(np.count_nonzero(row_weights > 0))
                results.append((row_ids[:keep].astype(np.int32), row_weights[:keep].astype(np.float32)))
        return results


class WeightTableQueryEncoder(SparseEncoder):
    """Inference-free query side: each distinct query token weighs what the table says; no model runs."""

    provider = "lookup"

    def __init__(self, artifact_dir: Path, manifest: dict[str, Any], max_length: int | None) -> None:
        super().__init__(artifact_dir, manifest, "query", max_length)
        path = artifact_dir / artifact.QUERY_WEIGHTS
        if not path.is_file():
            raise ArtifactError(f"{path} is missing (needed by kind=inference-free)")
        table = np.load(path, allow_pickle=False)
        if table.dtype != np.float32 or table.shape != (self.vocab_size,):
            raise ArtifactError(
                f"{path}: expected float32 [{self.vocab_size}], got {table.dtype} {list(table.shape)}"
            )
        self.weights_table = table

    def encode_tokenized(self, batch: TokenizedBatch, max_terms: int | None = None) -> list[SparseVector]:
        _check_max_terms(max_terms)
        results: list[SparseVector] = []
        for row_ids, row_mask in zip(batch.input_ids, batch.attention_mask):
            term_ids = np.unique(row_ids[row_mask.astype(bool)])
            weights = self.weights_table[term_ids]
            keep = weights > 0
            results.append(heaviest_terms(term_ids[keep], weights[keep], max_terms))
        return results


def load_query_encoder(
    artifact_dir: Path | str, options: RuntimeOptions = RuntimeOptions(), *, max_length: int | None = None
) -> SparseEncoder:
    """The query encoder of an artifact; `max_length` overrides the manifest's query max length."""
    artifact_dir = Path(artifact_dir)
    manifest = artifact.read_manifest(artifact_dir)
    if manifest["kind"] == "inference-free":
        return WeightTableQueryEncoder(artifact_dir, manifest, max_length)
    return OnnxEncoder(artifact_dir, manifest, "query", artifact.QUERY_ONNX, options, max_length)


def load_document_encoder(
    artifact_dir: Path | str, options: RuntimeOptions = RuntimeOptions(), *, max_length: int | None = None
) -> OnnxEncoder:
    """The document encoder of an artifact; `max_length` overrides the manifest's document max length."""
    artifact_dir = Path(artifact_dir)
    manifest = artifact.read_manifest(artifact_dir)
    return OnnxEncoder(artifact_dir, manifest, "document", artifact.DOC_ONNX, options, max_length)
