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
                  tokenizer_vocab_size: int | None = None, max_positions: int = 64) -> Path:
    """A randomly initialised BertForMaskedLM (or BertModel without head) saved with its tokenizer."""
    from transformers import BertConfig, BertForMaskedLM, BertModel

    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
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
