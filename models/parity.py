"""Parity figures recorded at export: the exported graph against the PyTorch SPLADE reference.

The reference is the textbook formula, max over positions of log(1 + relu(logits)) * mask, computed in torch
on the transformers model, so any drift of the reformulated graph shows up here.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnxruntime
import torch
from tokenizers import Tokenizer

from models.tokenization import TokenizedBatch, tokenize

# Varied on purpose: short, long (truncated), punctuation, digits, non-ASCII, empty-ish.
PARITY_TEXTS = [
    "what is splade",
    "a",
    "?",
    "How do I read a file line by line in Python?",
    "COVID-19 vaccines reduce hospitalisation; do they reduce transmission?",
    "Über die Relativitätstheorie — ein Überblick (1916).",
    "東京は日本の首都です。",
    "naïve café résumé coöperate",
    "x = f(y) + 2 * z ** 3 / (a - b) % c",
    "emoji test 🙂🚀 with symbols #hashtag @mention",
    "The quick brown fox jumps over the lazy dog. " * 3,
    "Inverted indexes map each term to the list of documents containing it, with impacts. " * 12,
    "Learned sparse retrieval expands queries and documents with related vocabulary terms. " * 40,
    "p53 mutations are found in about half of human cancers",
    "What are the side effects of aspirin?",
    "email: someone@example.com, url: https://example.org/a?b=c&d=e",
    "    leading and trailing spaces    ",
    "UPPER CASE AND lower case And Mixed",
    "numbers 3.14159 2,718 1e-10 -42",
    "Ελληνικά κείμενα και русский текст",
]


def dense_from_top_k(term_ids: np.ndarray, weights: np.ndarray, vocab_size: int) -> np.ndarray:
    dense = np.zeros((term_ids.shape[0], vocab_size), dtype=np.float32)
    np.put_along_axis(dense, term_ids, weights, axis=1)
    return dense


def onnx_dense_weights(session: onnxruntime.InferenceSession, batch: TokenizedBatch, vocab_size: int) -> np.ndarray:
    """All weights (top_k = vocabulary size: no pruning) scattered into [batch, vocab]."""
    term_ids, weights = session.run(
        ["term_ids", "weights"],
        {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask,
         "top_k": np.array(vocab_size, dtype=np.int64)},
    )
    return dense_from_top_k(term_ids, weights, vocab_size)


def reference_dense_weights(masked_lm: torch.nn.Module, batch: TokenizedBatch) -> np.ndarray:
    input_ids = torch.from_numpy(batch.input_ids)
    mask = torch.from_numpy(batch.attention_mask)
    with torch.no_grad():
        logits = masked_lm(input_ids=input_ids, attention_mask=mask).logits
        weights = torch.log1p(torch.relu(logits)) * mask[:, :, None].to(logits.dtype)
        return weights.amax(dim=1).numpy()


def _top(weights: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest weights (any order); argpartition, as full sorts of 100k-term rows add up."""
    return np.argpartition(-weights, k - 1)[:k]


def top_k_sets_agree(reference: np.ndarray, candidate: np.ndarray, k: int, tolerance: float = 1e-4) -> bool:
    """Same top-k non-zero terms, ties aside: a term in only one set must weigh (in the reference) within
    `tolerance` of the reference's k-th weight."""
    k = min(k, int(np.count_nonzero(reference > 0)))
    if k == 0:
        return int(np.count_nonzero(candidate > tolerance)) == 0
    ref_top = set(_top(reference, k).tolist())
    cand_top = set(_top(candidate, k).tolist())
    kth = reference[_top(reference, k)].min()
    return all(abs(reference[term] - kth) <= tolerance for term in ref_top ^ cand_top)


def compare(reference: np.ndarray, candidate: np.ndarray, k: int = 64) -> dict:
    agree = [top_k_sets_agree(r, c, k) for r, c in zip(reference, candidate)]
    overlaps = []
    for r, c in zip(reference, candidate):
        kk = min(10, int(np.count_nonzero(r > 0))) or 1
        overlaps.append(len(set(_top(r, kk).tolist()) & set(_top(c, kk).tolist())) / kk)
    return {
        "texts": int(reference.shape[0]),
        "max_abs_diff": float(np.abs(reference - candidate).max()) if reference.size else 0.0,
        f"top{k}_sets_agree": float(np.mean(agree)) if agree else 1.0,
        "top10_overlap": float(np.mean(overlaps)) if overlaps else 1.0,
    }


def batches(tokenizer: Tokenizer, texts: list[str], singles: int = 6, size: int = 8):
    """The first `singles` texts one by one (no padding), then all texts in padded batches of `size`."""
    for text in texts[:singles]:
        yield tokenize(tokenizer, [text])
    for start in range(0, len(texts), size):
        yield tokenize(tokenizer, texts[start:start + size])


def measure_export_parity(reference_weights: Callable[[TokenizedBatch], np.ndarray], onnx_path,
                          tokenizer: Tokenizer, vocab_size: int) -> dict:
    """`reference_weights`: the checkpoint's PyTorch reference (`Checkpoint.reference_weights`)."""
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    reference, candidate = [], []
    for batch in batches(tokenizer, PARITY_TEXTS):
        reference.append(reference_weights(batch))
        candidate.append(onnx_dense_weights(session, batch, vocab_size))
    return compare(np.concatenate(reference), np.concatenate(candidate))


def measure_onnx_pair(fp32_path, int8_path, tokenizer: Tokenizer, vocab_size: int) -> dict:
    """int8 against fp32, both in ONNX Runtime: what quantization costs."""
    fp32 = onnxruntime.InferenceSession(str(fp32_path), providers=["CPUExecutionProvider"])
    int8 = onnxruntime.InferenceSession(str(int8_path), providers=["CPUExecutionProvider"])
    reference, candidate = [], []
    for batch in batches(tokenizer, PARITY_TEXTS, singles=0):
        reference.append(onnx_dense_weights(fp32, batch, vocab_size))
        candidate.append(onnx_dense_weights(int8, batch, vocab_size))
    return compare(np.concatenate(reference), np.concatenate(candidate))
