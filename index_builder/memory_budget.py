"""How a build divides `--memory-budget-mb` between what grows with the corpus and the encoder.

    share of the budget        from text                 from vectors
    encoder (one call)         1/2                       -
    SPLADE postings buffer     3/16 (5/16 --no-bm25)     3/4 (13/16 with --no-bm25)
    BM25 postings buffer       1/8                       1/16 (vectors files may carry texts)
    duplicate-id hashes        1/8                       1/8
    metadata keyword dicts     1/16                      1/16 (engine.metadata; more distinct values: an error)

They are all held at once while the corpus is read. After reading, the postings buffers are written out and
the duplicate-id merge gets everything but the encoder's share (ONNX Runtime keeps its arena until the end); each
postings merge works in ranges of its own buffer's size.

The encoder's share is its working memory for one call: ONNX Runtime's activations, the [rows, sequence, vocab]
float32 logits and its arena come to about `ENCODER_WORKING_FACTOR` x the logits (measured: a text build whose
calls held 512 MiB of logits peaked 1,571 MiB above its start). So a call's logits are capped at the share / 3
(`max_logits_bytes`, never more than the encoder's own setting), and a budget whose share cannot hold the logits
of one document of the maximum length is refused with the smallest budget that can.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

MiB = 1 << 20
ENCODER_WORKING_FACTOR = 3
ENCODER_SHARE = 1 / 2
ID_HASHES_SHARE = 1 / 8
METADATA_SHARE = 1 / 16
BM25_SHARE = {"text": 1 / 8, "vectors": 1 / 16}


class MemoryBudgetError(ValueError):
    """A --memory-budget-mb too small for what the build must hold at once."""


@dataclass(frozen=True)
class BudgetPlan:
    budget_bytes: int
    encoder_bytes: int            # one encoder call's working memory (0 when the corpus is pre-encoded vectors)
    max_logits_bytes: int | None  # the logits cap that keeps a call inside encoder_bytes (None: no encoder runs)
    postings_bytes: int
    bm25_bytes: int
    id_hashes_bytes: int
    metadata_bytes: int = 0

    @property
    def after_reading_bytes(self) -> int:
        """What the merges after reading may use: everything but the encoder's (still allocated) share."""
        return self.budget_bytes - self.encoder_bytes


def logits_bytes_per_row(max_length: int, vocab_size: int) -> int:
    """float32 logits of one document of `max_length` tokens."""
    return int(max_length) * int(vocab_size) * 4


def plan_budget(budget_bytes: int, *, encodes_text: bool, bm25: bool, vocab_size: int = 0, max_length: int = 0,
                encoder_max_logits_bytes: int | None = None) -> BudgetPlan:
    """Divide the budget; MemoryBudgetError when the encoder's share cannot hold one document of `max_length`."""
    budget_bytes = int(budget_bytes)
    id_hashes = int(budget_bytes * ID_HASHES_SHARE)
    metadata = int(budget_bytes * METADATA_SHARE)
    if not encodes_text:
        bm25_bytes = int(budget_bytes * BM25_SHARE["vectors"]) if bm25 else 0
        return BudgetPlan(budget_bytes, 0, None, budget_bytes - id_hashes - bm25_bytes - metadata, bm25_bytes,
                          id_hashes, metadata)
    share = int(budget_bytes * ENCODER_SHARE)
    max_logits = share // ENCODER_WORKING_FACTOR
    if encoder_max_logits_bytes is not None:
        max_logits = min(max_logits, int(encoder_max_logits_bytes))
    one_row = logits_bytes_per_row(max_length, vocab_size)
    if max_logits < one_row:
        smallest = math.ceil(one_row * ENCODER_WORKING_FACTOR / ENCODER_SHARE / MiB)
        raise MemoryBudgetError(
            f"--memory-budget-mb {budget_bytes // MiB} is too small to encode text: one document of {max_length} "
            f"tokens needs {one_row * ENCODER_WORKING_FACTOR / MiB:.0f} MiB of encoder memory ({ENCODER_WORKING_FACTOR}"
            f" x its {one_row / MiB:.1f} MiB of logits), and the encoder gets half the budget; give "
            f"--memory-budget-mb {smallest} or more, or a smaller --max-length")
    encoder = max_logits * ENCODER_WORKING_FACTOR
    bm25_bytes = int(budget_bytes * BM25_SHARE["text"]) if bm25 else 0
    postings = budget_bytes - share - id_hashes - bm25_bytes - metadata
    return BudgetPlan(budget_bytes, encoder, max_logits, postings, bm25_bytes, id_hashes, metadata)
