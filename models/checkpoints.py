"""Source checkpoints (local directory or Hugging Face hub id) -> model with a vocabulary head + tokenizer, validated.

Two backbones: BERT-style masked-LMs (`*ForMaskedLM`), and decoder LMs (`*ForCausalLM` with its LM head:
Mistral-SPLADE, CSPLADE, Qwen3-based models) with the pooling options of models/decoder.py.

Export-time only: imports torch and transformers.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer

from models import decoder
from models.decoder import DecoderOptions, DecoderSettings
from models.errors import CheckpointError
from models.splade_graph import SpladePooling
from models.tokenization import TokenizedBatch

# owner/name as the hub spells repository ids; anything else that does not exist locally is a missing directory.
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_HUB_FILES = ["*.json", "*.safetensors", "*.bin", "*.txt", "*.model"]


@dataclass
class Checkpoint:
    """A loaded checkpoint ready for export."""

    source: str
    revision: str | None
    path: Path
    model: torch.nn.Module
    tokenizer: Tokenizer  # padding on the model's side, no truncation (the runtime sets truncation per side)
    vocab_size: int
    max_position_embeddings: int | None  # the model's position limit (config)
    special_token_ids: list[int]
    decoder: DecoderSettings | None = None  # None: a masked-LM
    sliding_window: int | None = None

    def describe(self) -> dict:
        described = {"source": self.source, "revision": self.revision}
        if self.decoder is not None:
            described["encoder"] = self.decoder.describe()
        return described

    @property
    def input_limit(self) -> int | None:
        """How many tokens of text the model can take: echo feeds each token twice."""
        return decoder.input_positions(self.max_position_embeddings, bool(self.decoder and self.decoder.echo))

    def pooling(self) -> torch.nn.Module:
        """The traceable SPLADE head around the model (what export turns into ONNX)."""
        if self.decoder is None:
            return SpladePooling(self.model)
        return decoder.DecoderSpladePooling(self.model, self.decoder)

    def reference_weights(self, batch: TokenizedBatch) -> np.ndarray:
        """The plain PyTorch SPLADE formula on this model: what the exported graph must reproduce."""
        from models.parity import reference_dense_weights

        if self.decoder is None:
            return reference_dense_weights(self.model, batch)
        return decoder.reference_dense_weights(self.model, self.decoder, torch.from_numpy(batch.input_ids),
                                               torch.from_numpy(batch.attention_mask))


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


def load_checkpoint(source: str, revision: str | None = None, *, backbone: str = "auto",
                    decoder_options: DecoderOptions = DecoderOptions()) -> Checkpoint:
    """Load the model in float32 eval mode and its tokenizer; check the head and the vocabulary.

    `backbone` is masked-lm, causal-lm or auto (masked-lm when transformers has a masked-LM class for the
    model type, else causal-lm); `decoder_options` apply to causal-LM checkpoints only.
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()

    path = resolve_checkpoint(source, revision)
    if not (path / "config.json").is_file():
        raise CheckpointError(f"checkpoint {path} has no config.json")
    try:
        config = AutoConfig.from_pretrained(path)
    except Exception as exc:
        raise CheckpointError(f"checkpoint {path}: config.json cannot be read: {exc}") from exc
    backbone = decoder.choose_backbone(backbone, getattr(config, "model_type", ""), path)
    is_decoder = backbone == "causal-lm"
    if not is_decoder and decoder_options != DecoderOptions():
        raise CheckpointError(
            f"checkpoint {path} is a masked-LM: echo, attention, padding side and logit scale are decoder options"
        )
    auto_class, head_name, wanted = (
        (AutoModelForCausalLM, "LM head", "*ForCausalLM checkpoint with its LM head") if is_decoder
        else (AutoModelForMaskedLM, "masked-LM head", "*ForMaskedLM checkpoint")
    )
    try:
        model, info = auto_class.from_pretrained(
            path, dtype=torch.float32, attn_implementation="eager", output_loading_info=True
        )
    except (ValueError, KeyError, OSError) as exc:
        kind = "causal-LM" if is_decoder else "masked-LM"
        raise CheckpointError(f"checkpoint {path} cannot be loaded as a {kind} model: {exc}") from exc
    missing = sorted(info.get("missing_keys", []))
    if missing:
        raise CheckpointError(
            f"checkpoint {path} has no trained {head_name}: {len(missing)} weights are missing "
            f"(e.g. {', '.join(missing[:3])}); SPLADE needs a {wanted}"
        )
    head = model.get_output_embeddings()
    if not isinstance(head, torch.nn.Linear) or head.out_features != config.vocab_size:
        raise CheckpointError(f"checkpoint {path}: the {head_name} does not project to the vocabulary")
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
    positions = getattr(config, "max_position_embeddings", None)
    settings = None
    if is_decoder:
        settings = decoder.resolve_settings(decoder_options, config, model, path,
                                            has_pad_token=hf_tokenizer.pad_token_id is not None)
    # The attention mask hides padding, so without a pad token any valid id pads (the end-of-text token first).
    pad_id = next((i for i in (hf_tokenizer.pad_token_id, hf_tokenizer.eos_token_id) if i is not None), 0)
    tokenizer.enable_padding(direction=settings.padding_side if settings else "right", pad_id=pad_id,
                             pad_token=tokenizer.id_to_token(pad_id))
    return Checkpoint(
        source=source,
        revision=revision,
        path=path,
        model=model,
        tokenizer=tokenizer,
        vocab_size=int(config.vocab_size),
        max_position_embeddings=positions,
        special_token_ids=sorted(set(hf_tokenizer.all_special_ids)),
        decoder=settings,
        sliding_window=decoder.sliding_window(config) if is_decoder else None,
    )
