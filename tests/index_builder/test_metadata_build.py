"""Metadata in real builds (index_builder.build with the real document encoder): the schema inferred from first
values, a declared schema, skipped fields reported, a wrong-typed value as a clear error naming the document,
the field and the type (and the previous index left serving), the spooled columns across chunk boundaries."""
from __future__ import annotations

import json

import numpy as np
import pytest

from engine import filters
from engine import metadata as md
from engine.index_format import open_index
from index_builder.__main__ import main as builder_main
from index_builder.build import EncodeSettings, build_index, load_encoder

DOCS = [
    {"_id": "a", "title": "Protein folding", "text": "Proteins fold into native structures.",
     "metadata": {"lang": "en", "year": 2019, "tags": ["bio", "protein"], "score": 3.0, "open": True,
                  "source": {"journal": "x"}, "refs": [1, 2]}},
    {"_id": "b", "title": "", "text": "Vitamin D and bone density in older adults.", "metadata": {}},
    {"_id": "c", "title": "White matter", "text": "Diffusion imaging of the newborn brain.",
     "metadata": {"lang": "de", "year": 2022, "score": 4.5, "open": False, "tags": ["brain"], "late": "yes"}},
    {"_id": "d", "title": "No metadata", "text": "Bone density and vitamin D."},
]


@pytest.fixture(scope="module")
def doc_encoder(default_model_dir):
    return load_encoder(default_model_dir, max_length=64)


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def build(tmp_path, doc_encoder, records, name="index", **kwargs):
    corpus = write_jsonl(tmp_path / f"{name}.jsonl", records)
    out = tmp_path / name
    build_index(corpus, out, None, EncodeSettings(progress=False), encoder=doc_encoder, **kwargs)
    return open_index(out, verify_checksums=True)


def ids_passing(index, filter_json):
    return index.external_ids(np.flatnonzero(filters.mask(filters.parse(filter_json), index)))


def test_schema_is_inferred_and_unsupported_fields_are_reported(tmp_path, doc_encoder):
    index = build(tmp_path, doc_encoder, DOCS)
    assert md.schema_of(index) == {"lang": "keyword", "year": "integer", "tags": "keyword_list",
                                   "score": "float", "open": "boolean", "late": "keyword"}
    params = index.parts[md.PART].params
    assert params["skipped"] == {"refs": "a list of non-strings", "source": "a nested object"}
    assert params["fields"]["late"]["present"] == 1 and params["fields"]["lang"]["distinct"] == 2
    assert ids_passing(index, {"lang": "en"}) == ["a"]
    assert ids_passing(index, {"tags": "brain"}) == ["c"]
    assert ids_passing(index, {"late": "yes"}) == ["c"]  # a field first seen on a later document
    assert ids_passing(index, {"not": {"open": True}}) == ["b", "c", "d"]


def test_a_wrong_typed_value_is_a_build_error_naming_document_field_and_type(tmp_path, doc_encoder):
    previous = build(tmp_path, doc_encoder, DOCS)
    with pytest.raises(md.MetadataTypeError) as caught:
        build(tmp_path, doc_encoder, DOCS + [{"_id": "e", "text": "x", "metadata": {"year": "2020"}}])
    message = str(caught.value)
    assert "'e'" in message and "'year'" in message and "an integer" in message and '"2020"' in message
    assert open_index(previous.path).num_documents == 4  # the previous index still serves
    first_integer = [dict(DOCS[0], metadata={"score": 3})] + DOCS[1:]  # the first value types the field
    with pytest.raises(md.MetadataTypeError, match=r"document 'c'.*'score' must be an integer, got 4.5"):
        build(tmp_path, doc_encoder, first_integer, name="other")


def test_a_declared_schema_restricts_and_types(tmp_path, doc_encoder):
    index = build(tmp_path, doc_encoder, DOCS, metadata_schema={"score": "float", "tags": "keyword_list"})
    assert md.schema_of(index) == {"score": "float", "tags": "keyword_list"}
    assert sorted(index.parts[md.PART].params["not_in_schema"]) == ["lang", "late", "open", "refs", "source",
                                                                   "year"]
    assert ids_passing(index, {"score": {"gt": 3.5}}) == ["c"]


def test_cli_schema_file_and_one_line_errors(tmp_path, default_model_dir, capsys):
    corpus = write_jsonl(tmp_path / "corpus.jsonl", DOCS)
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps({"year": "integer", "lang": "keyword"}))
    out = tmp_path / "cli_index"
    args = ["build", "--model", str(default_model_dir), "--corpus", str(corpus), "--out", str(out),
            "--no-progress", "--max-length", "64"]
    assert builder_main(args + ["--metadata-schema", str(schema)]) == 0
    assert "metadata: lang (keyword, 2 documents), year (integer, 2 documents)" in capsys.readouterr().out
    schema.write_text(json.dumps({"year": "date"}))
    with pytest.raises(SystemExit):
        builder_main(args + ["--metadata-schema", str(schema)])
    assert "field 'year': type must be one of keyword, integer, float, boolean, keyword_list, got \"date\"" in \
        capsys.readouterr().err
    bad = write_jsonl(tmp_path / "bad.jsonl", DOCS[:1] + [{"_id": "z", "text": "t", "metadata": {"open": "no"}}])
    assert builder_main(args[:4] + [str(bad)] + args[5:]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: document 'z': metadata field 'open' must be a boolean") and err.count("\n") == 1
    bad = write_jsonl(tmp_path / "bad2.jsonl", [{"_id": "z", "text": "t", "metadata": ["x"]}])
    assert builder_main(args[:4] + [str(bad)] + args[5:]) == 2
    assert "field 'metadata' must be an object" in capsys.readouterr().err


def test_columns_cross_chunk_boundaries(tmp_path, monkeypatch):
    """Spooled columns (CHUNK values per block) and backfilled missing values read back exactly."""
    import scipy.sparse as sp

    from index_builder.csr_index import build_index_from_csr

    monkeypatch.setattr(md, "CHUNK", 7)
    count = 100
    metadata = [{"n": i, "k": f"v{i % 13}", "l": [f"t{i % 5}", f"t{i % 3}"]} if i % 4 else None
                for i in range(count)]
    metadata[50] = {"late": 1.5}
    matrix = sp.random(count, 20, density=0.2, format="csr", random_state=2, dtype=np.float32)
    build_index_from_csr(tmp_path / "i", matrix.indptr, matrix.indices, matrix.data, vocab_size=20,
                         metadata=metadata)
    index = open_index(tmp_path / "i", verify_checksums=True)
    opened = md.metadata_of(index)
    n = opened.fields["n"]
    want = [m is not None and "n" in m for m in metadata]
    assert n.present.tolist() == want
    assert n.values[np.array(want)].tolist() == [m["n"] for m in metadata if m and "n" in m]
    k = opened.fields["k"]
    assert [k.dictionary.table.get(int(c)) if c >= 0 else None for c in k.codes] == [
        m.get("k") if m else None for m in metadata]
    lists = opened.fields["l"]
    assert [sorted(lists.dictionary.table.get(int(c)) for c in lists.codes[lists.offsets[i]:lists.offsets[i + 1]])
            for i in range(count)] == [sorted(m["l"]) if m and "l" in m else [] for m in metadata]
    assert opened.fields["late"].present.sum() == 1 and opened.fields["late"].values[50] == 1.5


def test_saved_vectors_keep_the_metadata(tmp_path, doc_encoder):
    index = build(tmp_path, doc_encoder, DOCS, save_vectors=tmp_path / "vectors.jsonl")
    again = tmp_path / "again"
    build_index(tmp_path / "vectors.jsonl", again, None, EncodeSettings(progress=False), encoder=doc_encoder)
    rebuilt = open_index(again, verify_checksums=True)
    assert md.schema_of(rebuilt) == md.schema_of(index)
    assert ids_passing(rebuilt, {"tags": "protein"}) == ids_passing(index, {"tags": "protein"}) == ["a"]


def test_keyword_dictionaries_are_bounded_by_their_budget(tmp_path):
    writer = md.MetadataWriter(tmp_path / "scratch", memory_budget_bytes=100 * (md.DICTIONARY_ENTRY_OVERHEAD + 8))
    for i in range(100):
        writer.add(str(i), {"url": f"u{i:06d}"})
    with pytest.raises(md.MetadataBudgetError, match=r"'url': 101 distinct keywords.*share of --memory-budget-mb"):
        writer.add("101", {"url": "u000101"})
    assert writer.dictionary_bytes > writer.memory_budget_bytes
