"""Seeded English-like texts for BM25 builds: Zipf-distributed made-up words, stop words, case and punctuation.

What matters for the BM25 field's build is the shape of its input: a skewed term frequency (a few words in most
texts, a long tail), repeated words within a text (term counts above 1), stop words and case the analyser
removes, and some empty texts (documents without postings).
"""
from __future__ import annotations

import numpy as np

SYLLABLES = ("pro", "tein", "ka", "lo", "ment", "ri", "zu", "bel", "dor", "ax", "ion", "te", "mu", "san", "vex")
STOP_WORDS = ("the", "of", "and", "in", "is", "to", "with")


def word_list(size: int, seed: int = 0) -> list[str]:
    """`size` distinct made-up words of two to four syllables."""
    rng = np.random.default_rng(seed)
    words: dict[str, None] = {}
    while len(words) < size:
        words["".join(rng.choice(SYLLABLES, size=int(rng.integers(2, 5))))] = None
    return list(words)


def generated_texts(num_texts: int, words_per_text: int = 40, vocabulary: int = 5000, empty_every: int = 97,
                    seed: int = 0) -> list[str]:
    """`num_texts` texts of about `words_per_text` words; every `empty_every`-th one is empty."""
    rng = np.random.default_rng(seed)
    words = np.array([w.upper() for w in STOP_WORDS] + word_list(vocabulary, seed), dtype=object)
    popularity = 1.0 / np.arange(1, len(words) + 1, dtype=np.float64)
    popularity /= popularity.sum()
    lengths = rng.integers(words_per_text // 2, words_per_text * 3 // 2, size=num_texts)
    if empty_every:
        lengths[empty_every - 1::empty_every] = 0
    drawn = rng.choice(len(words), size=int(lengths.sum()), p=popularity)  # one draw: fast at 100k texts
    texts, start = [], 0
    for length in lengths.tolist():
        text = " ".join(words[drawn[start:start + length]].tolist())
        texts.append(text.capitalize() + "." if text else "")
        start += length
    return texts
