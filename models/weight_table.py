"""Inference-free query weights: an OpenSearch-style `idf.json` ({token: weight}) -> float32 [vocab] table."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from models.errors import CheckpointError


def read_weight_table(path: Path | str, tokenizer: Tokenizer, vocab_size: int, special_token_ids=()) -> np.ndarray:
    """Tokens absent from the file weigh 0 (never query terms); special tokens ([CLS], [SEP]...) are forced to 0
    because they carry no query meaning. Unknown tokens or bad weights are errors naming them."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"query weight table {path} does not exist")
    try:
        table = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"query weight table {path} is not valid JSON: {exc}") from exc
    if not isinstance(table, dict) or not table:
        raise CheckpointError(f"query weight table {path} must be a non-empty JSON object {{token: weight}}")
    weights = np.zeros(vocab_size, dtype=np.float32)
    unknown = []
    for token, weight in table.items():
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) or weight < 0:
            raise CheckpointError(
                f"query weight table {path}: weight of {token!r} must be a finite number >= 0, got {weight!r}"
            )
        term_id = tokenizer.token_to_id(token)
        if term_id is None or term_id >= vocab_size:
            unknown.append(token)
            continue
        weights[term_id] = weight
    if unknown:
        shown = ", ".join(repr(token) for token in unknown[:5])
        raise CheckpointError(
            f"query weight table {path} has {len(unknown)} tokens unknown to the tokenizer vocabulary "
            f"(e.g. {shown}): it was made for a different tokenizer"
        )
    weights[list(special_token_ids)] = 0.0
    return weights
