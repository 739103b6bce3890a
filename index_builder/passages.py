"""Long documents by passages (`build --passage-tokens N --passage-stride S`): split, encode, map to documents.

Each document's text (what the encoder reads: `(title + " " + text).strip()`) is tokenized once with the
document encoder's own tokenizer, without truncation. Its content tokens (the special tokens aside) are cut
into windows of N - (special tokens) tokens starting every S tokens, the last window reaching the end; each
window gets the tokenizer's special tokens around it, so a passage is exactly N tokens or fewer as the encoder
sees them, and its character offsets come from the tokenizer's offsets. A document that fits in one passage
is one window holding all its tokens: the very input a build without passages gives the encoder (when N does
not exceed the build's document max length, which is checked), so it gets the same vector. A text without any
token is one empty passage. Passages are encoded in length-sorted batches, as whole documents are
(index_builder.document_vectors), and written as rows of the postings; engine.passages owns the part that maps
rows back to documents and the collapse at query time.
"""
from __future__ import annotations

from array import array
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine import passages as passage_part
from engine.manifest import PartInfo
from index_builder.corpus import CorpusDocument, CorpusError
from index_builder.document_vectors import EMPTY_VECTOR
from models import artifact
from models.sparse import SparseVector
from models.tokenization import TokenizedBatch, load_tokenizer


@dataclass(frozen=True)
class PassageSettings:
    tokens: int   # passage length in tokens, special tokens included (as --max-length counts)
    stride: int   # tokens between the starts of two passages of a document

    def checked(self, max_length: int, special_tokens: int) -> PassageSettings:
        """ValueError naming the option and the limit for settings that cannot work."""
        if self.tokens > max_length:
            raise ValueError(f"--passage-tokens {self.tokens} exceeds the document max length {max_length} "
                             "(--max-length, or the model's): a passage must reach the encoder whole")
        content = self.tokens - special_tokens
        if content < 1:
            raise ValueError(f"--passage-tokens {self.tokens} leaves no room for text beside the model's "
                             f"{special_tokens} special tokens (minimum {special_tokens + 1})")
        if not 1 <= self.stride <= content:
            raise ValueError(f"--passage-stride {self.stride} must be in [1, {content}] (the text tokens of one "
                             "passage), or passages would skip text")
        return self


def windows(num_tokens: int, size: int, stride: int) -> list[tuple[int, int]]:
    """Token windows [start, end) of `size` tokens every `stride` tokens, the last one reaching the end."""
    if num_tokens <= size:
        return [(0, num_tokens)]
    spans = []
    for start in range(0, num_tokens, stride):
        spans.append((start, min(start + size, num_tokens)))
        if start + size >= num_tokens:
            break
    return spans


class PassageSplitter:
    """Cuts texts into passages with the document encoder's tokenizer and encodes them with the encoder."""

    def __init__(self, encoder, settings: PassageSettings) -> None:
        # The encoder's own tokenizer file (its sha256 was checked when the encoder loaded), a separate instance.
        tokenizer = load_tokenizer(Path(encoder.artifact_dir) / artifact.TOKENIZER, encoder.max_length)
        padding = tokenizer.padding
        self.pad_id, self.pad_left = int(padding["pad_id"]), padding["direction"] == "left"
        tokenizer.no_truncation()  # our own instance: the whole text, then our windows
        tokenizer.no_padding()
        self.tokenizer = tokenizer
        self.special_tokens = tokenizer.num_special_tokens_to_add(False)
        self.settings = settings.checked(encoder.max_length, self.special_tokens)
        self.encoder = encoder
        self.content_tokens = settings.tokens - self.special_tokens
        # Filled as documents are added (typed buffers: 20 bytes a passage, no object per document): each row's
        # document number and character offsets.
        self.document_of_row = array("I")
        self.starts = array("q")
        self.ends = array("q")
        self.num_documents = 0
        self.window_first_rows: list[int] = []  # of the last `encode` call: each document's first passage

    def split(self, text: str) -> list[tuple[np.ndarray, int, int]]:
        """(input ids with special tokens, character start, character end) of each passage of `text`."""
        encoding = self.tokenizer.encode(text)
        ids = np.asarray(encoding.ids, dtype=np.int64)
        special = np.asarray(encoding.special_tokens_mask, dtype=bool)
        content = np.flatnonzero(~special)
        if content.size == 0:  # no text token: the whole input as one passage, as a build without passages
            return [(ids, 0, 0)]
        first, last = int(content[0]), int(content[-1]) + 1
        prefix, body, suffix = ids[:first], ids[first:last], ids[last:]
        offsets = encoding.offsets[first:last]
        return [(np.concatenate([prefix, body[start:end], suffix]), offsets[start][0], offsets[end - 1][1])
                for start, end in windows(len(body), self.content_tokens, self.settings.stride)]

    def encode(self, documents: list[CorpusDocument], batch_size: int, max_terms: int | None
               ) -> list[SparseVector]:
        """The vectors of every passage of one window of documents (rows in document order); records the map."""
        inputs: list[np.ndarray | None] = []
        self.window_first_rows = []
        for doc in documents:
            text = doc.encoder_text
            pieces = self.split(text) if text else [(None, 0, 0)]  # an empty text: one empty passage
            self.window_first_rows.append(len(inputs))
            self.document_of_row.extend([self.num_documents] * len(pieces))
            self.starts.extend(p[1] for p in pieces)
            self.ends.extend(p[2] for p in pieces)
            inputs.extend(p[0] for p in pieces)
            self.num_documents += 1
        vectors: list[SparseVector] = [EMPTY_VECTOR] * len(inputs)
        positions = [i for i, ids in enumerate(inputs) if ids is not None]
        lengths = np.array([len(inputs[i]) for i in positions], dtype=np.int64)
        by_length = np.argsort(lengths, kind="stable")  # batches of similar length, as whole documents are
        for start in range(0, len(by_length), batch_size):
            rows = by_length[start:start + batch_size]
            batch = self._batch([inputs[positions[r]] for r in rows.tolist()])
            for row, (ids, weights) in zip(rows.tolist(), self.encoder.encode_tokenized(batch, max_terms)):
                vectors[positions[row]] = (np.asarray(ids, np.int32), np.asarray(weights, np.float32))
        return vectors

    def _batch(self, sequences: list[np.ndarray]) -> TokenizedBatch:
        width = max(len(s) for s in sequences)
        input_ids = np.full((len(sequences), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(sequences), width), dtype=np.int64)
        for i, seq in enumerate(sequences):
            cols = slice(width - len(seq), width) if self.pad_left else slice(0, len(seq))
            input_ids[i, cols] = seq
            mask[i, cols] = 1
        return TokenizedBatch(input_ids, mask)

    @property
    def num_passages(self) -> int:
        return len(self.document_of_row)

    def buffered_bytes(self) -> int:
        """What the passage map holds until it is written (grows with the corpus: 20 bytes a passage)."""
        return sum(buf.itemsize * len(buf) for buf in (self.document_of_row, self.starts, self.ends))

    def write(self, staged: Path) -> tuple[str, PartInfo]:
        return passage_part.write_part(
            staged, np.frombuffer(self.document_of_row, dtype=np.uint32), np.frombuffer(self.starts, dtype=np.int64),
            np.frombuffer(self.ends, dtype=np.int64), self.num_documents,
            {"passage_tokens": self.settings.tokens, "passage_stride": self.settings.stride,
             "content_tokens": self.content_tokens, "special_tokens": self.special_tokens,
             "offsets": "characters of (title + ' ' + text).strip(), from the tokenizer's offsets",
             "score": "maximum over the document's passages"})


def check_corpus_format(fmt: str) -> None:
    if fmt == "vectors":
        raise CorpusError("--passage-tokens needs document texts to split; a pre-encoded vectors corpus has none")

