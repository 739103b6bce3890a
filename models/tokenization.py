"""Tokenizer loading and batching with the Rust `tokenizers` library (no transformers at run time).

Thread safety: a `tokenizers.Tokenizer` may be used from several threads for encoding, but changing its
truncation/padding while another thread encodes fails ("Already borrowed"). So each encoder configures its
own tokenizer once, at load, and never mutates it afterwards.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from models.errors import ArtifactError

_PAD_CANDIDATES = ("[PAD]", "<pad>")


@dataclass(frozen=True)
class TokenizedBatch:
    """Token ids and attention mask, int64 [batch, seq], padded to the longest text on the tokenizer's side
    (right for BERT-style models; left for decoders whose tokenizer says so)."""

    input_ids: np.ndarray
    attention_mask: np.ndarray

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    def rows(self, start: int, stop: int) -> "TokenizedBatch":
        """Rows [start, stop) with all-padding columns removed at either end (less work for the encoder); at
        least one column stays, so rows of texts without any token still reach the encoder (and weigh 0)."""
        mask = self.attention_mask[start:stop]
        used = np.flatnonzero(mask.any(axis=0))
        first, last = (int(used[0]), int(used[-1]) + 1) if used.size else (0, min(1, mask.shape[1]))
        return TokenizedBatch(self.input_ids[start:stop, first:last], mask[:, first:last])


def load_tokenizer(path: Path, max_length: int) -> Tokenizer:
    """Load tokenizer.json configured to truncate at `max_length` tokens (special tokens included) and pad on
    the side export recorded in it (right when it records none)."""
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as exc:  # tokenizers raises a bare Exception on malformed files
        raise ArtifactError(f"{path} is not a valid tokenizers file: {exc}") from exc
    tokenizer.enable_truncation(max_length=max_length)
    padding = tokenizer.padding
    direction = "right"
    if padding is not None:
        pad_id, pad_token, direction = padding["pad_id"], padding["pad_token"], padding["direction"]
    else:
        pad_token = next((t for t in _PAD_CANDIDATES if tokenizer.token_to_id(t) is not None), None)
        pad_id = tokenizer.token_to_id(pad_token) if pad_token else 0
        pad_token = pad_token or tokenizer.id_to_token(0)
    # The attention mask hides padding, so the pad id only has to be a valid id.
    tokenizer.enable_padding(direction=direction, pad_id=pad_id, pad_token=pad_token)
    return tokenizer


def tokenize(tokenizer: Tokenizer, texts: Sequence[str]) -> TokenizedBatch:
    """Tokenize `texts` into one padded batch; a non-string item is a TypeError naming its position."""
    if isinstance(texts, str):
        raise TypeError("texts must be a sequence of strings, not a single string")
    texts = list(texts)
    for position, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"texts[{position}] must be a string, got {type(text).__name__}")
    if not texts:
        empty = np.zeros((0, 0), dtype=np.int64)
        return TokenizedBatch(empty, empty.copy())
    encodings = tokenizer.encode_batch(texts)
    input_ids = np.array([encoding.ids for encoding in encodings], dtype=np.int64)
    attention_mask = np.array([encoding.attention_mask for encoding in encodings], dtype=np.int64)
    if input_ids.shape[1] == 0:
        # Only texts without any token (tokenizers that add no BOS/CLS): one padding column, so the encoder
        # runs on a valid shape and returns empty vectors.
        pad_id = (tokenizer.padding or {}).get("pad_id", 0)
        input_ids = np.full((len(texts), 1), pad_id, dtype=np.int64)
        attention_mask = np.zeros((len(texts), 1), dtype=np.int64)
    return TokenizedBatch(input_ids, attention_mask)
