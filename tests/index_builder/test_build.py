"""The build pipeline with the real document encoder: corpus formats, pruning, bad input, the CLI."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from index_builder.build import EncodeSettings, build_index, load_encoder
from index_builder.corpus import CorpusError
from index_builder.encode import encode_corpus
from engine.index_format import open_index

DOCS = [
    {"_id": "a", "title": "Protein folding", "text": "Proteins fold into native structures."},
    {"_id": "b", "title": "", "text": "Vitamin D and bone density in older adults."},
    {"_id": "c", "title": "White matter", "text": "Diffusion imaging of the newborn brain."},
]


@pytest.fixture(scope="module")
def doc_encoder(default_model_dir):
    return load_encoder(default_model_dir, max_length=256)


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def build(tmp_path, doc_encoder, corpus, name="index", **settings):
    out = tmp_path / name
    build_index(corpus, out, None, EncodeSettings(progress=False, **settings), encoder=doc_encoder)
    return open_index(out, verify_checksums=True)


def postings_of(index):
    return index.offsets.tolist(), index.doc_numbers.tolist(), index.impacts.tolist()


def test_small_index_fixture_records_its_settings(small_index_dir, small_corpus, default_model_dir):
    index = open_index(small_index_dir, verify_checksums=True)
    model = json.loads((default_model_dir / "manifest.json").read_text())
    lines = [json.loads(line) for line in small_corpus.read_text(encoding="utf-8").splitlines()]
    manifest = index.manifest
    assert (manifest["doc_max_terms"], manifest["document_max_length"]) == (128, 256)
    assert (index.vocab_size, index.tokenizer_sha256) == (model["vocab_size"], model["tokenizer_sha256"])
    assert index.num_documents == len(lines) == 300
    terms_per_doc = np.bincount(index.doc_numbers, minlength=index.num_documents)
    assert terms_per_doc.max() == 128 and terms_per_doc.min() > 0
    assert [index.external_id(i) for i in range(300)] == [line["_id"] for line in lines]
    assert index.document(299) == {"title": lines[299]["title"], "text": lines[299]["text"]}
    assert manifest["quantization"]["dtype"] == "uint8" and 0 < index.scale < 1


def test_formats_give_the_same_index(tmp_path, doc_encoder):
    jsonl = write_jsonl(tmp_path / "corpus.jsonl", DOCS)
    beir = tmp_path / "beir"
    beir.mkdir()
    write_jsonl(beir / "corpus.jsonl", DOCS)
    tsv = tmp_path / "corpus.tsv"
    tsv.write_text("id\ttitle\ttext\n" + "".join(f"{d['_id']}\t{d['title']}\t{d['text']}\n" for d in DOCS))
    plain_ids = write_jsonl(tmp_path / "ids.jsonl", [{"id": d["_id"], "title": d["title"], "text": d["text"]}
                                                     for d in DOCS])
    indexes = [build(tmp_path, doc_encoder, corpus, name=f"i{n}")
               for n, corpus in enumerate((jsonl, beir, tsv, plain_ids))]
    for index in indexes[1:]:
        assert postings_of(index) == postings_of(indexes[0])
        assert [index.external_id(i) for i in range(3)] == ["a", "b", "c"]
    # BEIR joins title and text: the title's terms are in document "a".
    assert indexes[0].manifest["corpus"]["format"] == "jsonl" and indexes[1].manifest["corpus"]["format"] == "beir"


def test_saved_vectors_rebuild_the_same_pruned_index(tmp_path, doc_encoder, default_model_dir):
    corpus = write_jsonl(tmp_path / "corpus.jsonl", DOCS)
    from_text = build(tmp_path, doc_encoder, corpus, name="text", doc_max_terms=5)
    vectors = tmp_path / "vectors.jsonl"
    encode_corpus(corpus, vectors, default_model_dir, EncodeSettings(progress=False, max_length=256))
    sidecar = json.loads((tmp_path / "vectors.jsonl.manifest.json").read_text())
    assert sidecar["document_max_length"] == 256 and sidecar["documents"] == 3
    from_vectors = build(tmp_path, doc_encoder, vectors, name="vectors", doc_max_terms=5)
    assert postings_of(from_vectors) == postings_of(from_text)
    assert from_vectors.manifest["document_max_length"] == 256
    assert from_vectors.manifest["corpus"]["format"] == "vectors"
    assert from_vectors.document(1) == {"title": "", "text": DOCS[1]["text"]}


def test_empty_documents_are_kept_without_postings(tmp_path, doc_encoder):
    corpus = write_jsonl(tmp_path / "c.jsonl", [DOCS[0], {"_id": "empty", "title": "", "text": "   "}, DOCS[1]])
    index = build(tmp_path, doc_encoder, corpus)
    assert index.manifest["counts"]["empty_documents"] == 1
    assert index.external_id(1) == "empty"
    assert 1 not in set(index.doc_numbers.tolist())
    assert index.document(1) == {"title": "", "text": "   "}


@pytest.mark.parametrize("lines, message", [
    ([DOCS[0], DOCS[1], DOCS[0]], "duplicate document id 'a' \\(documents #0 and #2\\)"),
    ([DOCS[0], {"_id": "x", "title": "t"}], "c.jsonl:2: missing field 'text'"),
    ([{"title": "t", "text": "x"}], "c.jsonl:1: missing field '_id'"),
    ([DOCS[0], {"_id": "x", "text": 5}], "c.jsonl:2: field 'text' must be a string"),
    ([{"id": "v", "vector": {"protein": 1.0, "zzzznotatoken": 0.5}}], "unknown token 'zzzznotatoken'"),
    ([{"id": "v", "vector": {"protein": -1.0}}], "c.jsonl:1: weight of token 'protein' must be finite and >= 0"),
    ([{"id": "v", "vector": ["protein"]}], "c.jsonl:1: field 'vector' must be an object"),
])
def test_bad_corpora_are_clear_errors_and_keep_the_previous_index(tmp_path, doc_encoder, lines, message):
    good = build(tmp_path, doc_encoder, write_jsonl(tmp_path / "good.jsonl", DOCS))
    corpus = write_jsonl(tmp_path / "c.jsonl", lines)
    with pytest.raises(CorpusError, match=message):
        build_index(corpus, tmp_path / "index", None, EncodeSettings(progress=False), encoder=doc_encoder)
    assert postings_of(open_index(tmp_path / "index", verify_checksums=True)) == postings_of(good)


def test_invalid_json_line_and_tsv_fields(tmp_path, doc_encoder):
    broken = tmp_path / "broken.jsonl"
    broken.write_text(json.dumps(DOCS[0]) + "\n{oops\n")
    with pytest.raises(CorpusError, match="broken.jsonl:2: invalid JSON"):
        build(tmp_path, doc_encoder, broken)
    tsv = tmp_path / "bad.tsv"
    tsv.write_text("1\tfine text\n2\ta\tb\tc\n")
    with pytest.raises(CorpusError, match="bad.tsv:2: expected 2 \\(id, text\\) or 3"):
        build(tmp_path, doc_encoder, tsv)


def test_cli_builds_with_progress_and_fails_cleanly(tmp_path, default_model_dir, repo_root):
    corpus = write_jsonl(tmp_path / "corpus.jsonl", DOCS)
    base = [sys.executable, "-m", "index_builder", "build", "--model", str(default_model_dir)]
    ok = subprocess.run(base + ["--corpus", str(corpus), "--out", str(tmp_path / "idx"), "--impact-bits", "16"],
                        cwd=repo_root, capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stderr
    assert "built" in ok.stdout and "3 documents" in ok.stdout
    assert "doc/s" in ok.stderr  # the tqdm progress bar: documents per second and ETA
    assert open_index(tmp_path / "idx").impacts.dtype == np.uint16
    dup = write_jsonl(tmp_path / "dup.jsonl", [DOCS[0], DOCS[0]])
    bad = subprocess.run(base + ["--corpus", str(dup), "--out", str(tmp_path / "idx")],
                         cwd=repo_root, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2
    assert "error:" in bad.stderr and "duplicate document id 'a'" in bad.stderr
    assert "Traceback" not in bad.stderr
    assert open_index(tmp_path / "idx").impacts.dtype == np.uint16  # the previous index still serves
    usage = subprocess.run(base + ["--corpus", str(corpus), "--out", str(tmp_path / "x"), "--doc-max-terms", "0"],
                           cwd=repo_root, capture_output=True, text=True, timeout=300)
    assert usage.returncode == 2 and "--doc-max-terms: must be a positive integer" in usage.stderr


def test_killed_cli_build_leaves_the_previous_index(tmp_path, doc_encoder, default_model_dir, small_corpus, repo_root):
    import os
    import signal
    import time

    previous = build(tmp_path, doc_encoder, write_jsonl(tmp_path / "corpus.jsonl", DOCS))
    proc = subprocess.Popen(
        [sys.executable, "-m", "index_builder", "build", "--model", str(default_model_dir), "--corpus",
         str(small_corpus), "--out", str(tmp_path / "index"), "--no-progress"],
        cwd=repo_root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        # The staging directory appears once the model is loaded; encoding 300 documents takes seconds more.
        while not list(tmp_path.glob(".index.staging-*/ids.bin")):
            assert proc.poll() is None, "the build ended before it could be killed"
            assert time.monotonic() < deadline, "the build never started writing"
            time.sleep(0.05)
        time.sleep(0.5)
        assert proc.poll() is None, "the build ended before it could be killed"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    reopened = open_index(tmp_path / "index", verify_checksums=True)
    assert postings_of(reopened) == postings_of(previous) and reopened.num_documents == 3
