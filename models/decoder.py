"""Decoder-LM SPLADE encoders (Mistral-SPLADE, CSPLADE, Qwen3-based): the pooling options and the traceable head.

A decoder checkpoint is a `*ForCausalLM` whose LM head projects to the vocabulary, like a masked-LM's decoder.
What differs is how the text is fed and which positions are pooled:

- echo: the token sequence is repeated and only the second copy is pooled, so every pooled token has seen
  the whole text through causal attention (Echo-Mistral-SPLADE, CSPLADE). Done inside the graph: callers
  tokenize as usual.
- attention: causal (the model as trained for generation) or bidirectional (every real token sees every
  real token; the checkpoint says so with `"bidirectional": true` or `"is_causal": false` in config.json).
- padding side: left or right, as the tokenizer says. Position ids are counted over real tokens only, so a
  text's weights do not depend on how much padding its batch adds, on either side.
- logit scale: a positive factor on the logits before log1p(relu(.)), when the checkpoint declares one the
  model itself does not apply.

Export-time only: imports torch and transformers.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from models.errors import CheckpointError
from models.splade_graph import MaxPooledProjection, module_path

BACKBONES = ("auto", "masked-lm", "causal-lm")
ATTENTIONS = ("causal", "bidirectional")
PADDING_SIDES = ("left", "right")


@dataclass(frozen=True)
class DecoderOptions:
    """What the user asked for on the command line; None means "as the checkpoint says"."""

    echo: bool = False
    attention: str | None = None
    padding_side: str | None = None
    logit_scale: float | None = None


@dataclass(frozen=True)
class DecoderSettings:
    """The pooling options in force for one decoder checkpoint, recorded in the artifact manifest."""

    echo: bool
    attention: str
    padding_side: str
    logit_scale: float

    def describe(self) -> dict:
        return {"backbone": "causal-lm", **asdict(self)}


def choose_backbone(requested: str, model_type: str, path: Path) -> str:
    """masked-lm when transformers has a masked-LM class for this model type (BERT-style), else causal-lm."""
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )

    if requested not in BACKBONES:
        raise CheckpointError(f"backbone must be one of {', '.join(BACKBONES)}, got {requested!r}")
    if requested != "auto":
        return requested
    if model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES:
        return "masked-lm"
    if model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        return "causal-lm"
    raise CheckpointError(
        f"checkpoint {path}: model_type {model_type!r} has neither a masked-LM nor a causal-LM class in "
        "transformers; SPLADE needs a vocabulary projection head"
    )


def stated_padding_side(path: Path, config) -> str | None:
    """The padding side the checkpoint states: tokenizer_config.json first, then config.json (naver's
    splade-code models keep it there)."""
    tokenizer_config = path / "tokenizer_config.json"
    if tokenizer_config.is_file():
        try:
            side = json.loads(tokenizer_config.read_text(encoding="utf-8")).get("padding_side")
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CheckpointError(f"{tokenizer_config} is not valid JSON: {exc}") from exc
        if side is not None:
            return side
    return getattr(config, "padding_side", None)


def resolve_settings(options: DecoderOptions, config, model: torch.nn.Module, path: Path, *,
                     has_pad_token: bool) -> DecoderSettings:
    """Command-line options first, then what the checkpoint states; refuse what cannot be decided."""
    attention = options.attention
    if attention is None:
        asks_bidirectional = (getattr(config, "bidirectional", False) is True
                              or getattr(config, "is_causal", True) is False)
        attention = "bidirectional" if asks_bidirectional else "causal"
    if attention not in ATTENTIONS:
        raise CheckpointError(f"attention must be one of {', '.join(ATTENTIONS)}, got {attention!r}")

    padding_side = options.padding_side or stated_padding_side(path, config)
    if padding_side is None:
        if not has_pad_token:
            raise CheckpointError(
                f"checkpoint {path}: the tokenizer has no pad token and states no padding side "
                "(tokenizer_config.json has no padding_side); pass --padding-side left or right"
            )
        padding_side = "right"
    if padding_side not in PADDING_SIDES:
        raise CheckpointError(f"padding side must be left or right, got {padding_side!r}")

    logit_scale = options.logit_scale
    if logit_scale is None:
        declared = getattr(config, "logit_scale", None)
        # Cohere-style models multiply their logits by config.logit_scale themselves (the head pools the
        # model's own logits, so it is already in); apply it here only when the model does not.
        logit_scale = 1.0 if declared is None or hasattr(model, "logit_scale") else declared
    if isinstance(logit_scale, bool) or not isinstance(logit_scale, (int, float)) or not math.isfinite(logit_scale) \
            or logit_scale <= 0:
        raise CheckpointError(f"logit scale must be a finite number > 0, got {logit_scale!r}")
    return DecoderSettings(bool(options.echo), attention, padding_side, float(logit_scale))


def input_positions(max_position_embeddings: int | None, echo: bool) -> int | None:
    """How many input tokens the model can take: echo feeds every token twice."""
    if max_position_embeddings is None:
        return None
    return max_position_embeddings // 2 if echo else max_position_embeddings


def sliding_window(config) -> int | None:
    """The attention window the model was trained with, if any (Mistral v0.1: 4096)."""
    if getattr(config, "use_sliding_window", True) is False:
        return None
    return getattr(config, "sliding_window", None)


def additive_attention_mask(mask: torch.Tensor, bidirectional: bool) -> torch.Tensor:
    """[batch, seq] 0/1 -> [batch, 1, seq, seq] float: 0 where query i may attend key j, the float32 minimum
    elsewhere (padding keys always; later keys too when causal). Padding may sit anywhere in a row (left,
    right, or between the two echo copies): only real keys count."""
    keys = mask[:, None, None, :].to(torch.bool)
    if not bidirectional:
        index = torch.ones_like(mask[0]).cumsum(0) - 1  # 0..seq-1, traced with a dynamic length
        keys = keys & (index[None, :] <= index[:, None])[None, None, :, :]
    zero = torch.zeros((), dtype=torch.float32)
    return torch.where(keys, zero, torch.tensor(torch.finfo(torch.float32).min))


class DecoderSpladePooling(torch.nn.Module):
    """input_ids, attention_mask -> dense SPLADE weights [batch, vocab] of a causal LM with its LM head."""

    def __init__(self, causal_lm: torch.nn.Module, settings: DecoderSettings) -> None:
        super().__init__()
        self.causal_lm = causal_lm
        self.settings = settings
        self.output_layer = causal_lm.get_output_embeddings()
        self._parent, self._attribute = module_path(causal_lm, self.output_layer)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        pooled_mask = attention_mask
        pooled_from = 0
        if self.settings.echo:
            pooled_from = input_ids.shape[1]
            input_ids = torch.cat([input_ids, input_ids], dim=1)
            attention_mask = torch.cat([attention_mask, attention_mask], dim=1)
        # Positions count real tokens only: the same text gets the same positions whatever padding surrounds it.
        position_ids = (attention_mask.cumsum(1) - 1).clamp(min=0)
        attention = additive_attention_mask(attention_mask, self.settings.attention == "bidirectional")
        # Only the pooled copy is projected: with echo the [batch, seq, vocab] scores stay as large as without.
        projection = MaxPooledProjection(self.output_layer, pooled_mask, pooled_from=pooled_from)
        setattr(self._parent, self._attribute, projection)
        try:
            scores = self.causal_lm(input_ids=input_ids, attention_mask=attention, position_ids=position_ids,
                                    use_cache=False).logits
        finally:
            setattr(self._parent, self._attribute, self.output_layer)
        scores = scores.squeeze(1)
        if self.settings.logit_scale != 1.0:
            scores = scores * self.settings.logit_scale
        return torch.log1p(torch.relu(scores))


def reference_dense_weights(causal_lm: torch.nn.Module, settings: DecoderSettings, input_ids, attention_mask):
    """The textbook formula, one text at a time without padding: echo by repeating the real tokens, attention
    causal (transformers' own mask) or full, max over the pooled positions of log1p(relu(scale * logits))."""
    rows = []
    with torch.no_grad():
        for ids, mask in zip(input_ids, attention_mask):
            tokens = ids[mask.to(torch.bool)]
            vocab = causal_lm.get_output_embeddings().out_features
            if len(tokens) == 0:
                rows.append(torch.zeros(vocab))
                continue
            sequence = torch.cat([tokens, tokens]) if settings.echo else tokens
            full = torch.zeros((1, 1, len(sequence), len(sequence))) if settings.attention == "bidirectional" else None
            logits = causal_lm(input_ids=sequence[None, :], attention_mask=full, use_cache=False).logits[0]
            pooled = logits[len(tokens):] if settings.echo else logits
            rows.append(torch.log1p(torch.relu(pooled * settings.logit_scale)).amax(dim=0))
    return torch.stack(rows).numpy()
