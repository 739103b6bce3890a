"""The typed manifest and optional parts: old indexes open, parts are added atomically, a scorer that needs a
part is offered only where the index has it, and bad manifests are refused naming the key."""
from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import pytest

from engine import scorers
from engine.errors import IndexFormatError
from engine.index_format import MANIFEST, add_parts, open_index
from engine.manifest import PartInfo
from engine.query import SparseQuery
from engine.scorers.base import TopK
from engine.scorers.exact import ExactScorer
from index_builder.csr_index import build_index_from_csr


@pytest.fixture
def index_dir(tmp_path):
    rng = np.random.default_rng(5)
    indptr = np.arange(0, 201, 4, dtype=np.int64)  # 50 documents of 4 terms
    terms = np.concatenate([rng.choice(30, 4, replace=False) for _ in range(50)]).astype(np.int32)
    out = tmp_path / "index"
    build_index_from_csr(out, indptr, terms, rng.random(200, dtype=np.float32) + 0.1, vocab_size=30)
    return out


def doc_lengths_writer(index, staged):
    """A small real part: the number of postings of every document (a forward-index statistic)."""
    lengths = np.bincount(np.asarray(index.doc_numbers), minlength=index.num_documents).astype(np.int32)
    np.save(staged / "doc_lengths.values.npy", lengths)
    return "doc_lengths", PartInfo(version=1, files=["doc_lengths.values.npy"], params={"dtype": "int32"})


class _NeedsDocLengths(ExactScorer):
    name = "needs-doc-lengths"
    requires: ClassVar[frozenset[str]] = frozenset({"doc_lengths"})

    @classmethod
    def part_writers(cls, params=None, threads=1):
        return [doc_lengths_writer]

    def search(self, query: SparseQuery, k: int, scratch: Any, options: Mapping[str, Any]) -> TopK:
        return super().search(query, k, scratch, options)


def test_an_index_written_before_parts_existed_still_opens(index_dir):
    manifest = json.loads((index_dir / MANIFEST).read_text())
    for key in ("parts", "default_scorer"):
        manifest.pop(key)
    manifest["block_max"] = None  # what the first version wrote
    (index_dir / MANIFEST).write_text(json.dumps(manifest))
    index = open_index(index_dir, verify_checksums=True)
    assert index.parts == {} and index.typed_manifest.default_scorer == "exact"
    assert scorers.available(index) == ["exact", "exact-blocked"]  # the scorers that need no part
    assert index.manifest["block_max"] is None  # provenance keys are kept as written


def test_add_parts_is_atomic_and_makes_a_scorer_available(index_dir):
    scorers.register(_NeedsDocLengths)
    try:
        before = open_index(index_dir)
        assert "needs-doc-lengths" not in scorers.available(before)
        with pytest.raises(Exception, match="disk full"):
            add_parts(index_dir, [lambda index, staged: (_ for _ in ()).throw(OSError("disk full"))])
        assert open_index(index_dir, verify_checksums=True).parts == {}
        assert not list(index_dir.parent.glob(".index.staging-*"))

        add_parts(index_dir, _NeedsDocLengths.part_writers())
        after = open_index(index_dir, verify_checksums=True)
        assert set(after.parts) == {"doc_lengths"} and after.parts["doc_lengths"].params == {"dtype": "int32"}
        lengths = after.part_array("doc_lengths", "doc_lengths.values.npy", np.int32, after.num_documents)
        assert lengths.tolist() == [4] * 50
        assert scorers.available(after) == ["exact", "exact-blocked", "needs-doc-lengths"]
        # The postings were hard-linked, not rewritten: same bytes, same checksums.
        assert after.manifest["files"]["doc_numbers.npy"] == before.manifest["files"]["doc_numbers.npy"]
        with pytest.raises(IndexFormatError, match="no part 'forward'"):
            after.part_array("forward", "forward.npy", np.int32, 1)
    finally:
        scorers.unregister(_NeedsDocLengths.name)


def test_rebuilding_a_part_drops_its_old_files(index_dir):
    add_parts(index_dir, [doc_lengths_writer])

    def renamed(index, staged):
        np.save(staged / "doc_lengths.v2.npy", np.zeros(index.num_documents, np.int32))
        return "doc_lengths", PartInfo(version=2, files=["doc_lengths.v2.npy"])

    add_parts(index_dir, [renamed])
    assert not (index_dir / "doc_lengths.values.npy").exists()
    assert open_index(index_dir, verify_checksums=True).parts["doc_lengths"].version == 2


@pytest.mark.parametrize("edit, message", [
    (lambda m: m["counts"].update(documents=-1), "counts.documents"),
    (lambda m: m["quantization"].update(dtype="int4"), "quantization.dtype"),
    (lambda m: m.update(parts={"x": {"version": 1, "files": ["nowhere.npy"]}}), "part 'x' names files"),
    (lambda m: m.pop("tokenizer_sha256"), "tokenizer_sha256"),
])
def test_bad_manifests_are_refused_naming_the_key(index_dir, edit, message):
    manifest = json.loads((index_dir / MANIFEST).read_text())
    edit(manifest)
    (index_dir / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(IndexFormatError, match=message):
        open_index(index_dir)
