"""Source checkpoints (local directory or Hugging Face hub id) -> masked-LM model + tokenizer, validated.

Export-time only: imports torch and transformers.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer

from models.errors import CheckpointError

# owner/name as the hub spells repository ids; anything else that does not exist locally is a missing directory.
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_HUB_FILES = ["*.json", "*.safetensors", "*.bin", "*.txt", "*.model"]


@dataclass
class Checkpoint:
    """A loaded masked-LM checkpoint ready for export."""

    source: str
    revision: str | None
    path: Path
    model: torch.nn.Module
    tokenizer: Tokenizer  # padding right, no truncation (the runtime sets truncation per side)
    vocab_size: int
    max_position_embeddings: int | None
    special_token_ids: list[int]

    def describe(self) -> dict:
        return {"source": self.source, "revision": self.revision}


def resolve_checkpoint(source: str, revision: str | None = None) -> Path:
    """A local directory, or a hub id downloaded into the Hugging Face cache."""
    path = Path(source).expanduser()
    if path.exists():
        if not path.is_dir():
            raise CheckpointError(f"checkpoint {source} is a file, expected a directory with config.json")
        return path
    if not _HUB_ID.match(source):
        raise CheckpointError(f"checkpoint directory {source} does not exist")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id=source, revision=revision, allow_patterns=_HUB_FILES))
    except Exception as exc:  # network, auth, offline mode, missing repo: all end the same way for the user
        raise CheckpointError(
            f"checkpoint {source!r} is not a local directory and could not be fetched from the Hugging Face Hub "
            f"({type(exc).__name__}: {exc}); pass a local checkpoint directory instead"
        ) from exc


def load_checkpoint(source: str, revision: str | None = None) -> Checkpoint:
    """Load a masked-LM model in float32 eval mode and its tokenizer; check head and vocabulary."""
    from transformers import AutoConfig, AutoModelForMaskedLM, AutoTokenizer
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()

    path = resolve_checkpoint(source, revision)
    if not (path / "config.json").is_file():
        raise CheckpointError(f"checkpoint {path} has no config.json")
    try:
        config = AutoConfig.from_pretrained(path)
    except Exception as exc:
        raise CheckpointError(f"checkpoint {path}: config.json cannot be read: {exc}") from exc
    try:
        model, info = AutoModelForMaskedLM.from_pretrained(
            path, dtype=torch.float32, attn_implementation="eager", output_loading_info=True
        )
    except (ValueError, KeyError, OSError) as exc:
        raise CheckpointError(f"checkpoint {path} cannot be loaded as a masked-LM model: {exc}") from exc
    missing = sorted(info.get("missing_keys", []))
    if missing:
        raise CheckpointError(
            f"checkpoint {path} has no trained masked-LM head: {len(missing)} weights are missing "
            f"(e.g. {', '.join(missing[:3])}); SPLADE needs a *ForMaskedLM checkpoint"
        )
    head = model.get_output_embeddings()
    if not isinstance(head, torch.nn.Linear) or head.out_features != config.vocab_size:
        raise CheckpointError(f"checkpoint {path}: the masked-LM output layer does not project to the vocabulary")
    model.eval()

    try:
        hf_tokenizer = AutoTokenizer.from_pretrained(path)
        tokenizer = Tokenizer.from_str(hf_tokenizer.backend_tokenizer.to_str())
    except Exception as exc:
        raise CheckpointError(f"checkpoint {path} has no usable fast tokenizer (tokenizer.json): {exc}") from exc
    tokenizer_vocab = tokenizer.get_vocab_size(with_added_tokens=True)
    if tokenizer_vocab != config.vocab_size:
        raise CheckpointError(
            f"checkpoint {path}: the tokenizer has {tokenizer_vocab} tokens but the model's vocab_size is "
            f"{config.vocab_size}; they must be the same vocabulary"
        )
    tokenizer.no_truncation()
    pad_id = hf_tokenizer.pad_token_id if hf_tokenizer.pad_token_id is not None else 0
    tokenizer.enable_padding(direction="right", pad_id=pad_id, pad_token=tokenizer.id_to_token(pad_id))
    return Checkpoint(
        source=source,
        revision=revision,
        path=path,
        model=model,
        tokenizer=tokenizer,
        vocab_size=int(config.vocab_size),
        max_position_embeddings=getattr(config, "max_position_embeddings", None),
        special_token_ids=sorted(set(hf_tokenizer.all_special_ids)),
    )
