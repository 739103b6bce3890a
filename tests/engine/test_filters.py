"""The filter language (engine.filters) over the metadata part (engine.metadata): the numpy mask of random
filters equals a plain per-document Python evaluation of the same JSON (hypothesis); every malformed filter,
unindexed field, wrong type and broken limit is an InvalidQueryError naming the path."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import filters
from engine import metadata as md
from engine.errors import InvalidQueryError
from engine.index_format import open_index
from index_builder.csr_index import build_index_from_csr

LANGS = ["en", "de", "fr", "é文", "es", "it"]
TAGS = ["a", "b", "c", "d", "e", "f"]
NUM_DOCS = 300


def random_metadata(rng, count: int) -> list[dict | None]:
    """Every type, values often missing (absent, null, empty list), large integers at the int64 edges."""
    docs: list[dict | None] = []
    for _ in range(count):
        if rng.random() < 0.05:
            docs.append(None)
            continue
        doc: dict = {}
        if rng.random() < 0.8:
            doc["lang"] = LANGS[rng.integers(len(LANGS))]
        if rng.random() < 0.8:
            doc["year"] = int(rng.integers(2015, 2026)) if rng.random() < 0.95 else int(
                rng.choice([md.INT64_MAX, md.INT64_MIN, 2**53 + 1]))
        if rng.random() < 0.7:
            doc["score"] = float(np.round(rng.normal(0, 2), 1)) if rng.random() < 0.9 else int(rng.integers(-3, 3))
        if rng.random() < 0.7:
            doc["ok"] = bool(rng.random() < 0.5)
        if rng.random() < 0.7:
            doc["tags"] = sorted(set(rng.choice(TAGS, size=int(rng.integers(0, 4))).tolist()))
        elif rng.random() < 0.2:
            doc["tags"] = None
        docs.append(doc)
    docs[0] = {"lang": "en", "year": 2020, "score": 1.5, "ok": True, "tags": ["a"]}  # fixes every field's type
    return docs


@pytest.fixture(scope="module")
def indexed(tmp_path_factory):
    rng = np.random.default_rng(7)
    metadata = random_metadata(rng, NUM_DOCS)
    matrix = sp.random(NUM_DOCS, 50, density=0.1, format="csr", random_state=3, dtype=np.float32)
    out = tmp_path_factory.mktemp("filters") / "index"
    build_index_from_csr(out, matrix.indptr, matrix.indices, matrix.data, vocab_size=50, metadata=metadata)
    return open_index(out, verify_checksums=True), metadata


# -- the reference: one document at a time, straight from the JSON ---------------------------------------------
def matches(filter_json: dict, doc: dict | None) -> bool:
    doc = doc or {}
    results = []
    for key, value in filter_json.items():
        if key == "and":
            results.append(all(matches(child, doc) for child in value))
        elif key == "or":
            results.append(any(matches(child, doc) for child in value))
        elif key == "not":
            results.append(not matches(value, doc))
        else:
            results.append(field_matches(key, value, doc.get(key)))
    return all(results)


def field_matches(field: str, condition, stored) -> bool:
    stored_values = (stored or []) if field == "tags" else ([] if stored is None else [stored])
    if not isinstance(condition, dict):
        return condition in stored_values
    ok = True
    for op, operand in condition.items():
        if op == "in":
            ok &= any(v in stored_values for v in operand)
        else:
            if not stored_values:
                return False
            x = stored_values[0]
            ok &= {"gt": x > operand, "gte": x >= operand, "lt": x < operand, "lte": x <= operand}[op]
    return ok


values = {
    "lang": st.sampled_from(LANGS + ["zz"]),
    "tags": st.sampled_from(TAGS + ["zz"]),
    "ok": st.booleans(),
    "year": st.one_of(st.integers(2014, 2027), st.sampled_from([md.INT64_MAX, md.INT64_MIN, 2**53 + 1])),
    "score": st.one_of(st.floats(-6, 6, allow_nan=False).map(lambda x: round(x, 1)), st.integers(-3, 3)),
}
bounds = {
    "year": st.one_of(st.integers(2014, 2027), st.floats(2014, 2027, allow_nan=False), st.sampled_from(
        [md.INT64_MAX, md.INT64_MIN, 2**53, 2**64, -(2**64), 1e19, -1e19])),
    "score": st.one_of(st.floats(-6, 6, allow_nan=False).map(lambda x: round(x, 1)), st.integers(-3, 3)),
}


def condition(field: str):
    options = [values[field], st.fixed_dictionaries({"in": st.lists(values[field], min_size=1, max_size=8)})]
    if field in bounds:
        options.append(st.dictionaries(st.sampled_from(filters.RANGE_OPERATORS), bounds[field], min_size=1))
    return options


leaf = st.one_of(*[st.builds(lambda c, f=field: {f: c}, st.one_of(*condition(field))) for field in values])
expression = st.recursive(
    leaf,
    lambda children: st.one_of(
        st.builds(lambda cs: {"and": cs}, st.lists(children, min_size=1, max_size=3)),
        st.builds(lambda cs: {"or": cs}, st.lists(children, min_size=1, max_size=3)),
        st.builds(lambda c: {"not": c}, children),
        st.builds(lambda a, b: {**a, **b}, leaf, leaf),  # several keys in one object: an implicit and
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(filter_json=expression)
def test_mask_equals_per_document_evaluation(indexed, filter_json):
    index, metadata = indexed
    got = filters.mask(filters.parse(filter_json), index)
    want = np.array([matches(filter_json, doc) for doc in metadata])
    assert got.dtype == bool and got.shape == (NUM_DOCS,)
    assert np.array_equal(got, want), np.flatnonzero(got != want)[:5]


def test_empty_filter_passes_everything_and_allowed_is_then_none(indexed):
    index, _ = indexed
    assert filters.mask(filters.parse({}), index).all()
    assert filters.allowed(index, filters.parse({})) is None
    assert filters.allowed(index, None) is None
    assert filters.allowed(index, filters.parse({"not": {"lang": "zz"}})) is None  # passes all: no mask
    assert filters.allowed(index, filters.parse({"lang": "zz"})).sum() == 0


def test_schema_is_inferred_from_first_values(indexed):
    index, _ = indexed
    assert md.schema_of(index) == {"lang": "keyword", "year": "integer", "score": "float", "ok": "boolean",
                                   "tags": "keyword_list"}


@pytest.mark.parametrize("filter_json, path, words", [
    ({"and": [{"lang": "en"}, {"year": {"gte": "2019"}}]}, "filter.and[1].year.gte", "finite number"),
    ({"and": [{"lang": "en"}, {"year": {"gte": 2019.5, "lt": "x"}}]}, "filter.and[1].year.lt", "finite number"),
    ({"nope": 1}, "filter.nope", "not an indexed metadata field"),
    ({"or": [{"lang": 5}]}, "filter.or[0].lang", "keyword"),
    ({"year": 2020.5}, "filter.year", "integer"),
    ({"ok": 1}, "filter.ok", "boolean"),
    ({"tags": {"in": ["a", 3]}}, "filter.tags.in[1]", "keyword"),
    ({"lang": {"lt": 3}}, "filter.lang.lt", "integer and float fields"),
    ({"year": {"between": [1, 2]}}, "filter.year.between", "unknown operator"),
    ({"year": [2020, 2021]}, "filter.year", '"in"'),
    ({"year": None}, "filter.year", "null"),
    ({"year": {}}, "filter.year", "empty operator object"),
    ({"year": {"in": []}}, "filter.year.in", "non-empty list"),
    ({"and": {"lang": "en"}}, "filter.and", "non-empty list"),
    ({"or": []}, "filter.or", "non-empty list"),
    ({"not": [{"lang": "en"}]}, "filter.not", "must be an object"),
    ({"and": [{"lang": "en"}, "x"]}, "filter.and[1]", "must be an object"),
    ("lang", "filter", "must be an object"),
    ({"score": {"gt": float("nan")}}, "filter.score.gt", "finite"),
])
def test_bad_filters_name_the_path(indexed, filter_json, path, words):
    index, _ = indexed
    with pytest.raises(InvalidQueryError) as caught:
        filters.mask(filters.parse(filter_json), index)
    assert caught.value.field == path
    assert words in caught.value.message


def test_limits_are_named():
    limits = filters.FilterLimits(max_depth=2, max_clauses=3, max_in_values=2)
    deep = {"not": {"not": {"not": {"lang": "en"}}}}
    with pytest.raises(InvalidQueryError) as caught:
        filters.parse(deep, limits)
    assert (caught.value.field, caught.value.limit) == ("filter.not.not.not", 2)
    with pytest.raises(InvalidQueryError) as caught:
        filters.parse({"and": [{"a": 1}, {"b": 1}, {"c": 1}, {"d": 1}]}, limits)
    assert (caught.value.field, caught.value.limit) == ("filter.and[3].d", 3)
    with pytest.raises(InvalidQueryError) as caught:
        filters.parse({"lang": {"in": ["a", "b", "c"]}}, limits)
    assert (caught.value.field, caught.value.limit) == ("filter.lang.in", 2)
    assert filters.parse({"and": [{"a": 1}, {"b": 1}, {"c": 1}]}, limits)  # at the limits: accepted


def test_an_index_without_metadata_has_no_filterable_field(tmp_path):
    matrix = sp.random(5, 10, density=0.5, format="csr", random_state=1, dtype=np.float32)
    build_index_from_csr(tmp_path / "i", matrix.indptr, matrix.indices, matrix.data, vocab_size=10)
    index = open_index(tmp_path / "i")
    with pytest.raises(InvalidQueryError) as caught:
        filters.mask(filters.parse({"lang": "en"}), index)
    assert caught.value.field == "filter.lang" and "indexed: none" in caught.value.message
    assert filters.mask(filters.parse({}), index).all()


def test_online_metadata_check_names_the_field():
    schema = {"year": "integer", "tags": "keyword_list", "score": "float"}
    assert md.check_document_metadata({"year": 3, "score": 2, "other": {"x": 1}}, schema) == {"year": 3, "score": 2.0}
    for bad, field in (({"year": "3"}, "documents[2].metadata.year"), ({"tags": ["a", 1]}, "documents[2].metadata.tags"),
                       ({"score": True}, "documents[2].metadata.score"), ([1], "documents[2].metadata")):
        with pytest.raises(InvalidQueryError) as caught:
            md.check_document_metadata(bad, schema, "documents[2].metadata")
        assert caught.value.field == field


def test_numbers_beyond_int64_and_float64_compare_without_errors(indexed):
    index, metadata = indexed
    has_score = np.array([bool(doc) and doc.get("score") is not None for doc in metadata])
    has_year = np.array([bool(doc) and doc.get("year") is not None for doc in metadata])
    huge = 10 ** 400
    assert not filters.mask(filters.parse({"score": huge}), index).any()
    assert np.array_equal(filters.mask(filters.parse({"score": {"lt": huge, "gt": -huge}}), index), has_score)
    assert not filters.mask(filters.parse({"year": {"in": [huge, -huge]}}), index).any()
    assert np.array_equal(filters.mask(filters.parse({"year": {"lte": huge, "gte": -1e300}}), index), has_year)


def test_each_document_reads_back_as_written(indexed):
    """What a merge of segments needs: every document's indexed metadata, as the JSON it came from."""
    index, metadata = indexed
    opened = md.metadata_of(index)
    for doc_number, doc in enumerate(metadata):
        want = {name: value for name, value in (doc or {}).items() if value not in (None, [])}
        got = opened.document(doc_number)
        assert got == want, doc_number
        python_type = {"keyword": str, "integer": int, "float": float, "boolean": bool, "keyword_list": list}
        assert all(type(got[name]) is python_type[opened.schema[name]] for name in got), doc_number
