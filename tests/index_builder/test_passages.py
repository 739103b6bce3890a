"""Long documents by passages, with the real tokenizer and ONNX document encoder (SPLADE-Tiny, 256 tokens):
evidence that sits after the encoder's maximum length is missed by truncation and found by passages, at the
offsets the hit reports; documents shorter than one passage give exactly the index a build without passages
gives; bad settings are clear errors naming the option."""
from __future__ import annotations

import json

import numpy as np
import pytest

from engine import Searcher
from engine.index_format import open_index
from index_builder.__main__ import main as index_builder_main
from index_builder.build import EncodeSettings, build_index, load_encoder
from index_builder.passages import PassageSettings, windows
from models.runtime import RuntimeOptions, load_query_encoder

FILLER = ("The committee reviewed the annual budget and discussed the routine maintenance of the office "
          "buildings, the parking rules and the cafeteria schedule. ")
EVIDENCE = "Finally, the zebra herds of the savanna migrated north because of the long drought."
LONG = {"_id": "long", "title": "Meeting notes", "text": FILLER * 12 + EVIDENCE}  # ~330 tokens of filler first
SHORT = [
    {"_id": "cats", "title": "", "text": "Cats are small domestic animals that like to sleep in the sun."},
    {"_id": "bread", "title": "Bread", "text": "Bread is baked from flour, water, salt and yeast."},
    {"_id": "blank", "title": "", "text": ""},
    {"_id": "budget", "title": "Budget", "text": "The committee reviewed the annual budget."},
]
QUERY = "zebra herds savanna drought"


@pytest.fixture(scope="module")
def doc_encoder(default_model_dir):
    return load_encoder(default_model_dir, max_length=256)


@pytest.fixture(scope="module")
def query_encoder(default_model_dir):
    return load_query_encoder(default_model_dir, RuntimeOptions(device="cpu", intra_op_threads=1))


def write_corpus(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def build(tmp_path, doc_encoder, records, name, passages=None):
    corpus = write_corpus(tmp_path / f"{name}.jsonl", records)
    build_index(corpus, tmp_path / name, None, EncodeSettings(progress=False), encoder=doc_encoder, passages=passages)
    return open_index(tmp_path / name, verify_checksums=True)


def encoder_text(record):
    return (record["title"] + " " + record["text"]).strip()


def test_windows_cover_the_text_with_the_stride():
    assert windows(5, 8, 6) == [(0, 5)]
    assert windows(20, 8, 6) == [(0, 8), (6, 14), (12, 20)]
    assert windows(14, 8, 6) == [(0, 8), (6, 14)]
    for n in (1, 9, 100, 301):
        spans = windows(n, 126, 96)
        assert spans[0][0] == 0 and spans[-1][1] == n and all(e - s <= 126 for s, e in spans)
        assert all(b[0] - a[0] == 96 for a, b in zip(spans, spans[1:]))


def test_evidence_after_the_maximum_length_is_found_by_passages_only(tmp_path, doc_encoder, query_encoder):
    records = [LONG, *SHORT]
    tokens = doc_encoder.tokenize([encoder_text(LONG)]).attention_mask.sum()
    assert tokens == 256  # truncated: the document is longer than the encoder reads
    truncated = build(tmp_path, doc_encoder, records, "truncated")
    by_passage = build(tmp_path, doc_encoder, records, "passages", PassageSettings(128, 96))
    assert by_passage.num_documents == truncated.num_documents == len(records)
    assert by_passage.typed_manifest.parts["passages"].params["passage_tokens"] == 128

    missed = Searcher(truncated, query_encoder).search(QUERY, k=5)
    assert "long" not in [hit.id for hit in missed.hits]
    found = Searcher(by_passage, query_encoder).search(QUERY, k=5, include_text=True)
    top = found.hits[0]
    assert top.id == "long" and top.passage["index"] > 0
    passage_text = encoder_text(LONG)[top.passage["start"]:top.passage["end"]]
    assert EVIDENCE.lower() in passage_text.lower() and top.passage["end"] == len(encoder_text(LONG))
    # The evidence starts beyond what truncation kept (the first 254 text tokens).
    kept = doc_encoder.tokenize([encoder_text(LONG)]).input_ids[0]
    assert "zebra" not in [doc_encoder.token(int(t)) for t in kept]
    assert top.passage["start"] > 0 and (top.title + " " + top.text).strip() == encoder_text(LONG)


def test_short_documents_are_indexed_exactly_as_without_passages(tmp_path, doc_encoder, query_encoder):
    plain = build(tmp_path, doc_encoder, SHORT, "plain")
    split = build(tmp_path, doc_encoder, SHORT, "split", PassageSettings(64, 48))
    for name in ("offsets", "doc_numbers", "impacts"):
        assert np.array_equal(getattr(plain, name), getattr(split, name)), name
    assert plain.typed_manifest.quantization == split.typed_manifest.quantization
    assert plain.external_ids(np.arange(len(SHORT))) == split.external_ids(np.arange(len(SHORT)))
    part = split.typed_manifest.parts["passages"].params
    assert part["passages"] == part["documents"] == len(SHORT)
    a = Searcher(plain, query_encoder).search("bread flour yeast", k=4)
    b = Searcher(split, query_encoder).search("bread flour yeast", k=4)
    assert [(h.id, h.score) for h in a.hits] == [(h.id, h.score) for h in b.hits]
    assert b.hits[0].passage == {"index": 0, "start": 0, "end": len(encoder_text(SHORT[1]))}
    assert all(h.passage is None for h in a.hits)


@pytest.mark.parametrize("args, message", [
    (["--passage-stride", "32"], "--passage-stride needs --passage-tokens"),
    (["--passage-tokens", "300"], "--passage-tokens 300 exceeds the document max length 256"),
    (["--passage-tokens", "64", "--passage-stride", "63"], "--passage-stride 63 must be in [1, 62]"),
    (["--passage-tokens", "2"], "leaves no room for text"),
])
def test_bad_passage_settings_are_clear_errors(tmp_path, default_model_dir, capsys, args, message):
    corpus = write_corpus(tmp_path / "c.jsonl", SHORT)
    code = index_builder_main(["build", "--model", str(default_model_dir), "--corpus", str(corpus), "--out",
                               str(tmp_path / "out"), "--no-progress", *args])
    assert code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
