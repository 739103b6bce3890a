"""The encoder's share of --memory-budget-mb: text builds cap each encoder call, report it, refuse a budget too
small for one document (index_builder.memory_budget)."""
from __future__ import annotations

import json

import pytest

from engine.index_format import open_index
from index_builder.bm25_part import Bm25PartBuilder
from index_builder.build import EncodeSettings, build_index, load_encoder
from index_builder.memory_budget import ENCODER_WORKING_FACTOR, MemoryBudgetError, plan_budget

MiB = 1 << 20
VOCAB, MAX_LENGTH = 30522, 256
ONE_ROW = MAX_LENGTH * VOCAB * 4  # float32 logits of one 256-token document: 29.8 MiB


@pytest.fixture(scope="module")
def doc_encoder(default_model_dir):
    return load_encoder(default_model_dir, max_length=MAX_LENGTH)


class RecordingEncoder:
    """The real document encoder; records the shape of every batch the builder hands it."""

    def __init__(self, encoder) -> None:
        self._encoder = encoder
        self.calls: list[tuple[int, int]] = []

    def __getattr__(self, name):
        return getattr(self._encoder, name)

    def encode_tokenized(self, batch, max_terms=None):
        self.calls.append(batch.input_ids.shape)
        return self._encoder.encode_tokenized(batch, max_terms)


def test_the_budget_is_divided_and_the_encoder_gets_half_of_a_text_build():
    text = plan_budget(1024 * MiB, encodes_text=True, bm25=True, vocab_size=VOCAB, max_length=MAX_LENGTH,
                       encoder_max_logits_bytes=512 * MiB)
    assert text.max_logits_bytes == 512 * MiB // ENCODER_WORKING_FACTOR
    assert text.encoder_bytes <= 512 * MiB
    assert (text.postings_bytes, text.bm25_bytes, text.id_hashes_bytes, text.metadata_bytes) == (
        192 * MiB, 128 * MiB, 128 * MiB, 64 * MiB)
    assert (text.encoder_bytes + text.postings_bytes + text.bm25_bytes + text.id_hashes_bytes
            + text.metadata_bytes) <= 1024 * MiB
    assert text.after_reading_bytes == 1024 * MiB - text.encoder_bytes
    # The encoder's own cap still holds when half the budget would allow more.
    big = plan_budget(8192 * MiB, encodes_text=True, bm25=False, vocab_size=VOCAB, max_length=MAX_LENGTH,
                      encoder_max_logits_bytes=512 * MiB)
    assert big.max_logits_bytes == 512 * MiB and big.encoder_bytes == 1536 * MiB
    vectors = plan_budget(64 * MiB, encodes_text=False, bm25=True)
    assert (vectors.encoder_bytes, vectors.max_logits_bytes) == (0, None)
    assert (vectors.postings_bytes, vectors.bm25_bytes, vectors.id_hashes_bytes, vectors.metadata_bytes) == (
        48 * MiB, 4 * MiB, 8 * MiB, 4 * MiB)
    assert plan_budget(64 * MiB, encodes_text=False, bm25=False).postings_bytes == 52 * MiB


def test_a_budget_too_small_for_one_document_is_refused_with_the_smallest_that_fits(tmp_path, doc_encoder):
    # One 256-token document: 29.8 MiB of logits, 89.4 MiB of encoder memory, half the budget: 179 MiB.
    assert plan_budget(179 * MiB, encodes_text=True, bm25=True, vocab_size=VOCAB, max_length=MAX_LENGTH
                       ).max_logits_bytes >= ONE_ROW
    with pytest.raises(MemoryBudgetError, match=r"--memory-budget-mb 178 is too small to encode text: one document "
                                                r"of 256 tokens needs 89 MiB .* give --memory-budget-mb 179 or more"):
        plan_budget(178 * MiB, encodes_text=True, bm25=True, vocab_size=VOCAB, max_length=MAX_LENGTH)
    # The build refuses before it touches anything; the same budget builds from vectors, or from shorter texts.
    corpus = tmp_path / "c.jsonl"
    corpus.write_text(json.dumps({"_id": "a", "text": "protein folding"}) + "\n")
    with pytest.raises(MemoryBudgetError, match="--memory-budget-mb 64 is too small"):
        build_index(corpus, tmp_path / "index", None, EncodeSettings(progress=False), encoder=doc_encoder,
                    memory_budget_mb=64)
    assert not (tmp_path / "index").exists()
    plan_budget(64 * MiB, encodes_text=True, bm25=True, vocab_size=VOCAB, max_length=64)  # 64 tokens: fits


def test_text_build_encoder_calls_stay_inside_their_share_and_are_reported(tmp_path, doc_encoder):
    # 200 MiB: the encoder's half holds 100 MiB, so a call's logits stay under 33.3 MiB: one 256-token document
    # per call, several short ones.
    long_text = " ".join(["protein folding and bone density in mice"] * 40)
    docs = [{"_id": f"l{i}", "text": f"{i} {long_text}"} for i in range(4)]
    docs += [{"_id": f"s{i}", "text": f"short text number {i}"} for i in range(20)]
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(json.dumps(doc) + "\n" for doc in docs))
    encoder = RecordingEncoder(doc_encoder)
    manifest = build_index(corpus, tmp_path / "index", None, EncodeSettings(progress=False, batch_size=8),
                           encoder=encoder, memory_budget_mb=200, bm25=Bm25PartBuilder())
    cap = 100 * MiB // ENCODER_WORKING_FACTOR
    assert all(rows * tokens * VOCAB * 4 <= cap for rows, tokens in encoder.calls), encoder.calls
    assert (1, MAX_LENGTH) in encoder.calls and max(rows for rows, _ in encoder.calls) == 8  # short ones batch
    covers = manifest["build"]["memory"]["budget_covers_mb"]
    assert covers[f"encoder call (3 x max_logits_bytes {cap / MiB:.1f} MiB)"] == round(3 * cap / MiB, 1)
    assert covers["postings buffer"] == 37.5 and covers["bm25 postings buffer"] == 25.0
    assert covers["metadata keyword dictionaries"] == 12.5
    index = open_index(tmp_path / "index", verify_checksums=True)
    assert index.num_documents == 24 and index.manifest["parts"]["bm25"]["params"]["documents"] == 24
