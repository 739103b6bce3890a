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
    """Token ids and attention mask, int64 [batch, seq], right-padded to the longest text."""

    input_ids: np.ndarray
    attention_mask: np.ndarray

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    def rows(self, start: int, stop: int) -> "TokenizedBatch":
        """Rows [start, stop) with trailing all-padding columns removed (less work for the encoder)."""
        mask = self.attention_mask[start:stop]
        used = np.flatnonzero(mask.any(axis=0))
        width = int(used[-1]) + 1 if used.size else 0
        return TokenizedBatch(self.input_ids[start:stop, :width], mask[:, :width])


def load_tokenizer(path: Path, max_length: int) -> Tokenizer:
    """Load tokenizer.json configured to truncate at `max_length` tokens (special tokens included) and pad right."""
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as exc:  # tokenizers raises a bare Exception on malformed files
        raise ArtifactError(f"{path} is not a valid tokenizers file: {exc}") from exc
    tokenizer.enable_truncation(max_length=max_length)
    padding = tokenizer.padding
    if padding is not None:
        pad_id, pad_token = padding["pad_id"], padding["pad_token"]
    else:
        pad_token = next((t for t in _PAD_CANDIDATES if tokenizer.token_to_id(t) is not None), None)
        pad_id = tokenizer.token_to_id(pad_token) if pad_token else 0
        pad_token = pad_token or tokenizer.id_to_token(0)
    # The attention mask hides padding, so the pad id only has to be a valid id.
    tokenizer.enable_padding(direction="right", pad_id=pad_id, pad_token=pad_token)
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
    return TokenizedBatch(input_ids, attention_mask)
