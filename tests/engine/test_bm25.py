"""The BM25 field (engine.bm25, index_builder.bm25_part): scores equal a straightforward reference BM25 written
here (same analyser, k1, b, Lucene idf) up to quantization; the part is built by default, skipped with
--no-bm25, and `python -m index_builder bm25` rebuilds exactly the same arrays on an existing index."""
from __future__ import annotations

import json
import math
import shutil
from collections import Counter

import numpy as np
import pytest

from engine import bm25, open_index
from engine.errors import InvalidQueryError
from tests.conftest import run_module

QUERIES = [
    "Vitamin D deficiency increases the risk of cardiovascular disease",
    "T cells regulate the immune response to tumours",
    "the of and",  # stop words only: nothing to score
    "Mitochondria mitochondrial mitochondrion DNA replication replication",  # repeated and stemmed terms
]


def reference_scores(texts: list[str], query: str, k1: float, b: float) -> dict[int, float]:
    """BM25 the textbook way, in float64: sum over query terms (with repeats) of idf * tf / (tf + k1 * norm)."""
    analyzer = bm25.Analyzer()
    docs = [Counter(analyzer.terms(text)) for text in texts]
    lengths = [sum(doc.values()) for doc in docs]
    avgdl = sum(lengths) / len(docs)
    scores: dict[int, float] = {}
    for term in analyzer.terms(query):
        df = sum(1 for doc in docs if term in doc)
        if df == 0:
            continue
        idf = math.log(1 + (len(docs) - df + 0.5) / (df + 0.5))
        for number, doc in enumerate(docs):
            tf = doc.get(term, 0)
            if tf:
                norm = k1 * (1 - b + b * lengths[number] / avgdl)
                scores[number] = scores.get(number, 0.0) + idf * tf / (tf + norm)
    return scores


def corpus_texts(corpus_path) -> list[str]:
    with open(corpus_path, encoding="utf-8") as handle:
        return [(r.get("title", "") + " " + r["text"]).strip() for r in map(json.loads, handle)]


@pytest.mark.parametrize("query", QUERIES)
def test_scores_equal_the_reference_up_to_quantization(small_index_dir, small_corpus, query):
    index = open_index(small_index_dir)
    field = bm25.field_of(index)
    params = field.params
    assert (params["k1"], params["b"], params["dtype"]) == (bm25.DEFAULT_K1, bm25.DEFAULT_B, "uint16")
    expected = reference_scores(corpus_texts(small_corpus), query, params["k1"], params["b"])
    sparse = field.query(query)
    docs, scores, _ = field.search(sparse, k=index.num_documents)
    got = {int(d): float(s) for d, s in zip(docs, scores)}
    assert set(got) == set(expected)
    # Each posting is off by at most scale / 2, counted once per repeat of the term in the query.
    tolerance = float(sparse.weights.sum()) * field.scale / 2 + 1e-5 * max(expected.values(), default=0)
    for doc, value in expected.items():
        assert abs(got[doc] - value) <= tolerance, (doc, got[doc], value)
    if expected:
        order = sorted(expected, key=lambda d: (-expected[d], d))
        best = order[0]
        assert docs[0] == best or abs(expected[int(docs[0])] - expected[best]) <= 2 * tolerance


def test_analyser_is_unicode_aware_lowercases_stems_and_drops_stop_words():
    analyzer = bm25.Analyzer()
    assert analyzer.terms("The Running runners ran in Zürich, naïve CAFÉS!") == [
        "run", "runner", "ran", "zürich", "naïv", "café"]
    assert analyzer.terms("a I x") == []  # one-letter tokens and stop words
    with pytest.raises(ValueError):
        bm25.Analyzer(stopwords="klingon")


def test_query_weights_are_term_counts_and_unknown_terms_are_dropped(small_index_dir):
    field = bm25.field_of(open_index(small_index_dir))
    query = field.query("cells cell CELLS zzzqqqxx")
    assert query.weights.tolist() == [3.0] and field.terms[int(query.term_ids[0])] == "cell"


def test_rebuilding_the_part_on_an_existing_index_gives_the_same_arrays(small_index_dir, small_corpus, tmp_path):
    copy = tmp_path / "index"
    shutil.copytree(small_index_dir, copy)
    run_module("index_builder", "bm25", "--index", str(copy))
    original, rebuilt = open_index(small_index_dir), open_index(copy, verify_checksums=True)
    for name in (bm25.OFFSETS, bm25.DOC_NUMBERS, bm25.IMPACTS, bm25.VOCABULARY):
        assert (small_index_dir / name).read_bytes() == (copy / name).read_bytes(), name
    assert rebuilt.parts[bm25.PART].params == original.parts[bm25.PART].params
    wrong = tmp_path / "wrong.jsonl"
    wrong.write_text(json.dumps({"_id": "not-the-first", "text": "x"}) + "\n", encoding="utf-8")
    proc = run_module_failing("index_builder", "bm25", "--index", str(copy), "--corpus", str(wrong))
    assert "not the index's document #0" in proc.stderr


def run_module_failing(*args):
    import subprocess
    import sys

    from tests.conftest import REPO_ROOT

    proc = subprocess.run([sys.executable, "-m", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2, proc.stderr
    return proc


def test_no_bm25_build_has_no_field_and_modes_say_so(tmp_path, default_model_dir):
    vectors = tmp_path / "vectors.jsonl"
    vectors.write_text("".join(json.dumps({"id": f"d{i}", "text": text, "vector": {"cell": 1.0 + i}}) + "\n"
                               for i, text in enumerate(["cells divide", "cell walls"])), encoding="utf-8")
    with_field, without = tmp_path / "with", tmp_path / "without"
    for out, extra in ((with_field, []), (without, ["--no-bm25"])):
        run_module("index_builder", "build", "--model", str(default_model_dir), "--corpus", str(vectors),
                   "--out", str(out), "--no-progress", *extra)
    from engine.hybrid import available_modes, check_mode

    assert available_modes(open_index(with_field)) == ["splade", "bm25", "hybrid"]
    index = open_index(without)
    assert bm25.PART not in index.parts and available_modes(index) == ["splade"]
    for mode in ("bm25", "hybrid"):
        with pytest.raises(InvalidQueryError) as info:
            check_mode(index, mode)
        assert info.value.field == "mode" and "no BM25 field" in info.value.message
    with pytest.raises(InvalidQueryError) as info:
        check_mode(index, "dense")
    assert info.value.field == "mode"
    field = bm25.field_of(open_index(with_field))
    docs, scores, _ = field.search(field.query("dividing cells"), k=2)
    assert docs.tolist() == [0, 1] and scores[0] > scores[1] > 0
    assert np.all(np.diff(field.offsets) >= 0)
