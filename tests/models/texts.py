"""Varied parity texts: short, long (truncated), punctuation, digits, non-ASCII, whitespace oddities."""
from __future__ import annotations

import random

_BASE = [
    "what is splade",
    "a",
    "?",
    "",
    "How do I read a file line by line in Python?",
    "COVID-19 vaccines reduce hospitalisation; do they reduce transmission?",
    "Über die Relativitätstheorie — ein Überblick (1916).",
    "東京は日本の首都です。",
    "naïve café résumé coöperate",
    "x = f(y) + 2 * z ** 3 / (a - b) % c",
    "emoji test 🙂🚀 with symbols #hashtag @mention",
    "p53 mutations are found in about half of human cancers",
    "What are the side effects of aspirin?",
    "email: someone@example.com, url: https://example.org/a?b=c&d=e",
    "    leading and trailing spaces    ",
    "UPPER CASE AND lower case And Mixed",
    "numbers 3.14159 2,718 1e-10 -42",
    "Ελληνικά κείμενα και русский текст",
    "tabs\tand\nnewlines\r\nmixed",
    "!!!???...;;;:::",
    "السلام عليكم",
    "한국어 문장입니다",
    "a b c d e f g h i j k l m n o p q r s t u v w x y z",
    "The mitochondria is the powerhouse of the cell.",
    "dict.get(key, default) returns default when key is missing",
]
_WORDS = (
    "retrieval sparse learned index query document vocabulary expansion weight term inverted posting "
    "transformer encoder protein cell gene vaccine cancer therapy python file thread memory latency "
    "throughput batch token model export graph runtime provider"
).split()


def parity_texts(count: int = 60, seed: int = 7) -> list[str]:
    """`count` texts: the fixed varied ones, then random sentences from 3 to 400 words (long ones truncate)."""
    rng = random.Random(seed)
    texts = list(_BASE)
    while len(texts) < count:
        length = rng.choice([3, 8, 20, 60, 150, 400])
        words = [rng.choice(_WORDS) for _ in range(length)]
        if rng.random() < 0.5:
            words.insert(rng.randrange(len(words)), rng.choice(["(ß)", "—", "«quoted»", "3.5%", "C++", "naïve"]))
        texts.append(" ".join(words) + rng.choice([".", "?", "!", ""]))
    return texts[:count]
