"""Build small real checkpoints inside the tests: random-initialised BERT masked-LMs with WordPiece
tokenizers over synthetic vocabularies of any size (100,000 terms for the large-vocabulary case)."""
from __future__ import annotations

import itertools
import json
import string
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def synthetic_vocab(size: int) -> list[str]:
    """Specials, single characters and their ## continuations, then made-up words and word pieces."""
    chars = list(string.ascii_lowercase + string.digits) + list(string.punctuation)
    syllables = [c + v for c in "bcdfghjklmnprstvwz" for v in "aeiou"]
    english = ("what is the how do read file line by python retrieval sparse index query document cell gene "
               "vaccine cancer protein model weight term memory thread batch token").split()
    tokens = dict.fromkeys(
        SPECIALS + chars + ["##" + c for c in string.ascii_lowercase + string.digits]
        + ["##" + s for s in syllables] + english
    )
    for length in itertools.count(2):
        for combo in itertools.product(syllables, repeat=length):
            if len(tokens) >= size:
                return list(tokens)[:size]
            tokens.setdefault("".join(combo))
    raise AssertionError("unreachable")


def wordpiece_tokenizer(vocab: list[str]) -> Tokenizer:
    tokenizer = Tokenizer(models.WordPiece({t: i for i, t in enumerate(vocab)}, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    cls_id, sep_id = vocab.index("[CLS]"), vocab.index("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    tokenizer.decoder = decoders.WordPiece()
    return tokenizer


def save_tokenizer(tokenizer: Tokenizer, out: Path) -> None:
    from transformers import PreTrainedTokenizerFast

    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]",
        mask_token="[MASK]", model_max_length=512,
    )
    fast.save_pretrained(str(out))


def tiny_bert_mlm(out: Path, vocab_size: int, seed: int, *, with_head: bool = True,
                  tokenizer_vocab_size: int | None = None, max_positions: int = 64, hidden_size: int = 32) -> Path:
    """A randomly initialised BertForMaskedLM (or BertModel without head) saved with its tokenizer."""
    from transformers import BertConfig, BertForMaskedLM, BertModel

    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=vocab_size, hidden_size=hidden_size, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=2 * hidden_size,
        max_position_embeddings=max_positions, pad_token_id=0,
    )
    model = (BertForMaskedLM if with_head else BertModel)(config)
    with torch.no_grad():
        # Larger-than-default weights so SPLADE weights are spread out (default init gives near-zero logits).
        for parameter in model.parameters():
            if parameter.dim() == 2:
                parameter.normal_(0.0, 0.2)
    model.save_pretrained(str(out))
    save_tokenizer(wordpiece_tokenizer(synthetic_vocab(tokenizer_vocab_size or vocab_size)), out)
    return out


def write_idf(path: Path, vocab: list[str], seed: int, count: int = 3000) -> dict[str, float]:
    """An OpenSearch-style idf.json over `count` tokens of `vocab` (specials included, as real tables do)."""
    import random

    rng = random.Random(seed)
    chosen = SPECIALS[:4] + rng.sample(vocab[len(SPECIALS):], count)
    table = {token: round(rng.uniform(0.0, 8.0), 4) for token in chosen}
    table[chosen[-1]] = 0.0  # a zero weight must never become a query term
    path.write_text(json.dumps(table), encoding="utf-8")
    return table


# Decoder LMs: the special tokens of the real families, so tokenizer handling (BOS added or not, pad token or
# not, padding side) follows them. Qwen3's vocabulary size is the one of its configs.
MISTRAL_VOCAB = 32_000
QWEN3_VOCAB = 151_936
MISTRAL_SPECIALS = {"unk_token": "<unk>", "bos_token": "<s>", "eos_token": "</s>"}
QWEN_SPECIALS = {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "unk_token": "<|unk|>"}


def decoder_vocab(size: int, specials: list[str]) -> list[str]:
    """The family's special tokens first, then the synthetic words and pieces."""
    rest = [token for token in synthetic_vocab(size + len(SPECIALS)) if token not in SPECIALS]
    return (list(dict.fromkeys(specials)) + rest)[:size]


def decoder_tokenizer(vocab: list[str], bos_token: str | None, unk_token: str) -> Tokenizer:
    """WordPiece over the synthetic vocabulary; Mistral-style tokenizers prepend BOS, Qwen-style add nothing."""
    tokenizer = Tokenizer(models.WordPiece({t: i for i, t in enumerate(vocab)}, unk_token=unk_token))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    if bos_token is not None:
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{bos_token} $A", pair=f"{bos_token} $A $B:1",
            special_tokens=[(bos_token, vocab.index(bos_token))],
        )
    tokenizer.decoder = decoders.WordPiece()
    return tokenizer


def save_decoder_tokenizer(out: Path, vocab_size: int, specials: dict[str, str], padding_side: str | None) -> None:
    """tokenizer.json + tokenizer_config.json; `padding_side=None` leaves the side unstated in the config."""
    from transformers import PreTrainedTokenizerFast

    vocab = decoder_vocab(vocab_size, list(specials.values()))
    tokenizer = decoder_tokenizer(vocab, specials.get("bos_token"), specials["unk_token"])
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, model_max_length=512,
                                   padding_side=padding_side or "right", **specials)
    fast.save_pretrained(str(out))
    config_path = out / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    if padding_side is None:
        config.pop("padding_side", None)
    else:
        config["padding_side"] = padding_side
    config_path.write_text(json.dumps(config, indent=2))


def _spread_weights(model, seed: int) -> None:
    """Larger-than-default weights so SPLADE weights are spread out (default init gives near-zero logits)."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() == 2:
                parameter.normal_(0.0, 0.2)


def tiny_mistral(out: Path, seed: int, *, vocab_size: int = MISTRAL_VOCAB, max_positions: int = 128,
                 with_head: bool = True, padding_side: str | None = "right", config_extra: dict | None = None) -> Path:
    """A random MistralForCausalLM (untied LM head, no pad token, as Mistral's tokenizer) or a MistralModel."""
    from transformers import MistralConfig, MistralForCausalLM, MistralModel

    torch.manual_seed(seed)
    config = MistralConfig(
        vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=8, max_position_embeddings=max_positions, sliding_window=None,
        tie_word_embeddings=False, bos_token_id=1, eos_token_id=2, pad_token_id=None, **(config_extra or {}),
    )
    model = (MistralForCausalLM if with_head else MistralModel)(config)
    _spread_weights(model, seed)
    model.save_pretrained(str(out))
    save_decoder_tokenizer(out, vocab_size, MISTRAL_SPECIALS, padding_side)
    return out


def tiny_qwen3(out: Path, seed: int, *, vocab_size: int = QWEN3_VOCAB, max_positions: int = 128,
               padding_side: str | None = "left", config_extra: dict | None = None, lexical: bool = False) -> Path:
    """A random Qwen3ForCausalLM (tied embeddings, as Qwen3-0.6B) with a left-padding tokenizer that adds no BOS.

    `lexical`: wider (64) and with small attention/MLP outputs, so each position's hidden state stays close to
    its token's embedding and, the head being tied, a text's own tokens are among its heaviest SPLADE terms, as
    in trained SPLADE models (what a retrieval test needs; random weights alone would rank terms at random)."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(seed)
    config = Qwen3Config(
        vocab_size=vocab_size, hidden_size=64 if lexical else 32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=8, max_position_embeddings=max_positions,
        tie_word_embeddings=True, use_sliding_window=False, pad_token_id=1, eos_token_id=0, **(config_extra or {}),
    )
    model = Qwen3ForCausalLM(config)
    _spread_weights(model, seed)
    if lexical:
        with torch.no_grad():
            for name, parameter in model.named_parameters():
                if name.endswith(("o_proj.weight", "down_proj.weight")):
                    parameter.mul_(0.05)
    model.save_pretrained(str(out))
    save_decoder_tokenizer(out, vocab_size, QWEN_SPECIALS, padding_side)
    return out
