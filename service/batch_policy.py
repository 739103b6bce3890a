"""How big an encoder batch may be: a budget of padded tokens (texts x the longest text), as
text-embeddings-inference bounds its batches with `max_batch_tokens`, rather than a count of texts.

Why a token budget and why the CPU default is small (measurements in docs/service.md, "Micro-batching"):
for SPLADE-Tiny the vocabulary projection (128 x 30,522 per token) is nearly all of an encoder call's work
and grows linearly with tokens, so on a CPU a batch saves little; past a few hundred padded tokens the
[batch, tokens, vocabulary] logits leave the caches and padding adds work, and the batched path loses
throughput against encoding one query at a time. A GPU is the opposite: the wider the call, the better the
device is used, so its default budget is large.

Token counts are estimated from the text (about 4 characters per word piece, measured on SciFact queries:
mean estimate / real = 1.12), because tokenizing on the event loop to count would cost more than it saves.
"""
from __future__ import annotations

import math

# Measured with bench/service.py on 2 shared vCPUs (docs/service.md): see the table there.
CPU_BATCH_TOKENS = 256
CUDA_BATCH_TOKENS = 16384
CHARS_PER_TOKEN = 4.0
SPECIAL_TOKENS = 2  # [CLS] and [SEP]


def batch_token_budget(setting: int, provider: str) -> int:
    """`SPLADE_ENCODER_MAX_BATCH_TOKENS` when set (> 0), else the default of the device the encoder runs on."""
    if setting > 0:
        return setting
    return CUDA_BATCH_TOKENS if provider == "CUDAExecutionProvider" else CPU_BATCH_TOKENS


def estimated_tokens(text: str, max_length: int) -> int:
    """Word pieces of `text` with the special tokens, at most the encoder's `max_length` (truncation)."""
    return min(max_length, SPECIAL_TOKENS + math.ceil(len(text) / CHARS_PER_TOKEN))


def warm_up_batch_shapes(encoder, max_batch_tokens_setting: int, max_batch_size: int) -> int:
    """On CUDA, run the batch shapes the batcher can produce once at start-up (CUDA sets up per shape, so
    the first request of each shape would otherwise be slow); a no-op elsewhere. Returns the shapes run."""
    from models.gpu import uses_io_binding, warm_up, warm_up_shapes

    session = getattr(encoder, "session", None)
    if session is None or not uses_io_binding(encoder.provider):
        return 0
    budget = batch_token_budget(max_batch_tokens_setting, encoder.provider)
    return warm_up(session, encoder.provider, warm_up_shapes(budget, encoder.max_length, max_batch_size))
