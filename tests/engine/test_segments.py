"""Segmented indexes (engine.segments, engine.lifecycle): random sequences of add / update / delete / merge
against a from-scratch build of the surviving documents in add order, for every registered scorer; the tie rule
across segments; masks; the writer's lock and its refusals. No model: documents are random sparse vectors.
Measured: ~10 s on a shared 2-core machine."""
from __future__ import annotations

import json
from collections import OrderedDict

import numpy as np
import pytest

from engine import scorers
from engine.commit import COMMIT, read_commit
from engine.errors import IndexFormatError
from engine.index_format import add_parts, open_index
from engine.lifecycle import DocumentError, IndexWriter, NewDocument, WriterBusyError
from engine.merge_policy import LogMergePolicy, SegmentSize, compaction_plan
from engine.query import SparseQuery
from engine.segments import Generation, open_generation, open_searchable
from engine.snapshot import ServedIndex
from index_builder.csr_index import build_index_from_csr

VOCAB = 64
KS = (1, 5, 50)


def random_document(rng, doc_id: str, tie_heavy: bool) -> NewDocument:
    terms = np.unique(rng.integers(0, VOCAB, size=int(rng.integers(0, 10)))).astype(np.int32)
    if tie_heavy:  # few distinct weights: many equal scores, so the tie rule decides the order
        weights = rng.choice([0.5, 1.0, 2.0], size=len(terms)).astype(np.float32)
    else:
        weights = rng.lognormal(0.0, 0.6, size=len(terms)).astype(np.float32)
    return NewDocument(doc_id, terms, weights, title=f"title {doc_id}", text=f"text of {doc_id}")


def build_plain(path, documents: list[NewDocument], impact_scale: float | None = None) -> None:
    indptr = np.cumsum([0] + [len(d.term_ids) for d in documents])
    term_ids = np.concatenate([d.term_ids for d in documents]) if documents else np.zeros(0, np.int32)
    weights = np.concatenate([d.weights for d in documents]) if documents else np.zeros(0, np.float32)
    build_index_from_csr(path, indptr, term_ids, weights, vocab_size=VOCAB, ids=[d.id for d in documents],
                         documents=[{"title": d.title, "text": d.text} for d in documents], impact_scale=impact_scale)


def queries(rng, count: int, tie_heavy: bool) -> list[SparseQuery]:
    out = []
    for _ in range(count):
        terms = np.unique(rng.integers(0, VOCAB, size=int(rng.integers(1, 12))))
        weights = rng.choice([0.5, 1.0], size=len(terms)) if tie_heavy else rng.lognormal(0, 0.5, size=len(terms))
        order = np.lexsort((terms, -weights))
        out.append(SparseQuery(terms[order].astype(np.int32), weights[order].astype(np.float32)))
    return out


def ranked(served: ServedIndex, query: SparseQuery, k: int, scorer: str) -> tuple[list[str], bytes, list[float]]:
    with served.acquire() as snapshot:
        top, _ = snapshot.search(query, k, scorer)
        ids = snapshot.index.external_ids(top.doc_numbers) if len(top.doc_numbers) else []
        return ids, top.scores.astype(np.float32).tobytes(), top.scores.tolist()


def check_against_scratch(index_dir, survivors: OrderedDict, tmp_path, qs: list[SparseQuery], tag: str) -> None:
    """Every registered scorer on the generation == the exact scorer on a from-scratch build of the survivors
    (exact scorers: same ids, same float32 scores; the approximate one: exact scores, its declared recall)."""
    generation = open_generation(index_dir)
    scratch_dir = tmp_path / f"scratch-{tag}"
    build_plain(scratch_dir, list(survivors.values()), impact_scale=generation.scale)
    scratch = ServedIndex(open_index(scratch_dir))
    served = ServedIndex(generation)
    assert generation.num_documents == len(survivors)
    names = served.current.available_scorers
    assert set(names) == set(scorers.registered()), names  # every scorer is still offered on the generation
    for name in names:
        cls = scorers.registered()[name]
        recalls = []
        for k in KS:
            for query in qs:
                want_ids, want_bytes, want_scores = ranked(scratch, query, k, "exact")
                got_ids, got_bytes, got_scores = ranked(served, query, k, name)
                if cls.safe:
                    assert got_ids == want_ids, f"{name} k={k} {tag}: ids differ"
                    assert got_bytes == want_bytes, f"{name} k={k} {tag}: scores differ"
                else:
                    exact = dict(zip(*ranked(scratch, query, len(survivors), "exact")[::2]))
                    for doc_id, score in zip(got_ids, got_scores):
                        assert exact[doc_id] == pytest.approx(score, rel=1e-6), f"{name}: inexact score"
                    if want_ids:
                        recalls.append(len(set(got_ids) & set(want_ids)) / len(want_ids))
        if not cls.safe and recalls:
            assert np.mean(recalls) >= cls.recall_floor, f"{name}: recall below its floor on a generation"
    generation.close()


@pytest.mark.parametrize("seed, tie_heavy", [(1, False), (2, True), (3, True)])
def test_random_sequences_equal_a_build_of_the_survivors(tmp_path, seed, tie_heavy):
    rng = np.random.default_rng(seed)
    index_dir = tmp_path / "index"
    survivors: OrderedDict[str, NewDocument] = OrderedDict()
    base = [random_document(rng, f"d{i}", tie_heavy) for i in range(120)]
    build_plain(index_dir, base)
    for doc in base:
        survivors[doc.id] = doc
    # The approximate scorers' parts on the base; the writer builds them on every new and merged segment.
    add_parts(index_dir, scorers.registered()["pruned-rescore"].part_writers({"n_postings": 64}))
    add_parts(index_dir, scorers.registered()["clustered"].part_writers({"n_postings": 64, "block_size": 4}))
    next_id = len(base)
    qs = queries(rng, 12, tie_heavy)
    policy = LogMergePolicy(merge_factor=3, floor_documents=20)
    with IndexWriter(index_dir, merge_policy=policy) as writer:
        for step in range(7):
            for _ in range(int(rng.integers(1, 4))):
                op = rng.choice(["add", "update", "delete"])
                if op == "add" or not survivors:
                    batch = [random_document(rng, f"d{next_id + i}", tie_heavy) for i in range(int(rng.integers(1, 25)))]
                    next_id += len(batch)
                    writer.add(batch)
                    for doc in batch:
                        survivors[doc.id] = doc
                elif op == "update":
                    chosen = rng.choice(list(survivors), size=min(5, len(survivors)), replace=False).tolist()
                    batch = [random_document(rng, doc_id, tie_heavy) for doc_id in chosen]
                    assert writer.add(batch, replace=True) == len(batch)
                    for doc in batch:  # an update is a new document: it moves to the end of the add order
                        survivors.pop(doc.id)
                        survivors[doc.id] = doc
                else:
                    chosen = rng.choice(list(survivors), size=min(8, len(survivors)), replace=False).tolist()
                    assert writer.delete(chosen + ["never-added"]) == ["never-added"]
                    for doc_id in chosen:
                        survivors.pop(doc_id)
            generation_before = writer.generation
            assert writer.commit() == generation_before + 1
            if step % 3 == 2:
                writer.maybe_merge()
            check_against_scratch(index_dir, survivors, tmp_path, qs, f"s{seed}-{step}")
        assert len(read_commit(index_dir).segments) > 1  # the checks above ran over several segments
        writer.force_merge(1)
    commit = read_commit(index_dir)
    assert len(commit.segments) == 1 and commit.deleted == 0
    assert not (index_dir / "manifest.json").exists()  # the original plain index was retired by the merge
    check_against_scratch(index_dir, survivors, tmp_path, qs, f"s{seed}-merged")


def test_segmented_and_merged_rank_identically_under_ties(tmp_path):
    """Equal scores everywhere: the order is the add order, however the documents are split into segments."""
    docs = [NewDocument(f"t{i}", np.array([3], np.int32), np.array([1.0], np.float32)) for i in range(40)]
    build_plain(tmp_path / "split", docs[:10])
    with IndexWriter(tmp_path / "split") as writer:
        for lo in range(10, 40, 10):
            writer.add(docs[lo:lo + 10])
            writer.commit()
    build_plain(tmp_path / "whole", docs)
    query = SparseQuery(np.array([3], np.int32), np.array([1.0], np.float32))
    split, whole = ServedIndex(open_generation(tmp_path / "split")), ServedIndex(open_index(tmp_path / "whole"))
    assert len(split.current.index.segments) == 4
    assert ranked(split, query, 40, "exact")[0] == ranked(whole, query, 40, "exact")[0] == [d.id for d in docs]


def test_segment_mask_restricts_every_segment(tmp_path):
    rng = np.random.default_rng(7)
    docs = [random_document(rng, f"m{i}", False) for i in range(60)]
    build_plain(tmp_path / "index", docs[:30])
    with IndexWriter(tmp_path / "index") as writer:
        writer.add(docs[30:])
        writer.delete(["m0"])
        writer.commit()
    generation = open_generation(tmp_path / "index")
    served = ServedIndex(generation)
    even = lambda segment: np.array([int(i[1:]) % 2 == 0 for i in segment.index.external_ids(  # noqa: E731
        np.arange(segment.num_slots))])
    query = SparseQuery(np.arange(VOCAB, dtype=np.int32), np.ones(VOCAB, np.float32))
    with served.acquire() as snapshot:
        scorer = snapshot.scorer("exact")
        top = scorer.search(query, 100, snapshot.scratch(scorer), snapshot.options("exact"), segment_mask=even)
    ids = generation.external_ids(top.doc_numbers)
    matching = [d.id for d in docs[1:] if int(d.id[1:]) % 2 == 0 and len(d.term_ids)]
    assert sorted(ids) == sorted(matching)  # every allowed live document, no other


def test_plain_index_opens_as_one_segment_and_serves_as_before(tmp_path):
    rng = np.random.default_rng(4)
    build_plain(tmp_path / "index", [random_document(rng, f"p{i}", False) for i in range(20)])
    assert read_commit(tmp_path / "index") is None
    generation = open_generation(tmp_path / "index")
    assert isinstance(generation, Generation) and len(generation.segments) == 1 and generation.number == 0
    assert not isinstance(open_searchable(tmp_path / "index"), Generation)  # the service keeps the plain index


def test_a_second_writer_is_refused_and_a_refused_batch_changes_nothing(tmp_path):
    rng = np.random.default_rng(5)
    build_plain(tmp_path / "index", [random_document(rng, f"w{i}", False) for i in range(10)])
    with IndexWriter(tmp_path / "index") as writer:
        with pytest.raises(WriterBusyError, match="another writer holds write.lock"):
            IndexWriter(tmp_path / "index")
        good = random_document(rng, "new", False)
        with pytest.raises(DocumentError, match=r"documents\[1\].id: duplicate id 'new' in one batch"):
            writer.add([good, random_document(rng, "new", False)])
        with pytest.raises(DocumentError, match=r"documents\[0\].id: id 'w3' already exists"):
            writer.add([random_document(rng, "w3", False)])
        with pytest.raises(DocumentError, match=r"documents\[1\].vector: term ids must be in \[0, 64\)"):
            writer.add([good, NewDocument("bad", np.array([VOCAB], np.int32), np.array([1.0], np.float32))])
        with pytest.raises(DocumentError, match=r"documents\[0\].vector: weights must be finite and > 0"):
            writer.add([NewDocument("neg", np.array([1], np.int32), np.array([-1.0], np.float32))])
        with pytest.raises(DocumentError, match=r"documents\[0\].id: must be a non-empty string"):
            writer.add([NewDocument("", np.array([1], np.int32), np.array([1.0], np.float32))])
        assert not writer.has_changes
        assert writer.commit() == 0  # nothing to commit: no new generation
    assert read_commit(tmp_path / "index") is None
    with IndexWriter(tmp_path / "index") as writer:  # the lock is free again
        writer.add([random_document(rng, "later", False)])
        writer.close()  # closed without a commit: dropped
    segments_dir = tmp_path / "index" / "segments"
    assert read_commit(tmp_path / "index") is None
    assert not segments_dir.exists() or not any(segments_dir.iterdir())


def test_a_broken_commit_or_delete_file_is_a_clear_error(tmp_path):
    rng = np.random.default_rng(6)
    build_plain(tmp_path / "index", [random_document(rng, f"b{i}", False) for i in range(10)])
    with IndexWriter(tmp_path / "index") as writer:
        writer.delete(["b1"])
        writer.commit()
    commit = json.loads((tmp_path / "index" / COMMIT).read_text())
    deletes = tmp_path / "index" / commit["segments"][0]["deletes"]
    deletes.write_bytes(deletes.read_bytes()[:-1])
    with pytest.raises(IndexFormatError, match="deletes bitmap"):
        open_generation(tmp_path / "index")
    (tmp_path / "index" / COMMIT).write_text("{\"generation\": -1}")
    with pytest.raises(IndexFormatError, match="commit.json: not a valid commit file"):
        open_generation(tmp_path / "index")


def test_merge_policy_keeps_few_segments_and_merges_only_neighbours():
    policy = LogMergePolicy(merge_factor=4, floor_documents=10)
    sizes: list[SegmentSize] = []
    for _ in range(200):  # 200 small adds of 10 documents
        sizes.append(SegmentSize(10, 0))
        while (found := policy.find_merge(sizes)) is not None:
            start, end = found
            assert end - start >= 1 and end <= len(sizes)
            sizes[start:end] = [SegmentSize(sum(s.live for s in sizes[start:end]), 0)]
    assert sum(s.documents for s in sizes) == 2000
    assert len(sizes) <= 3 * 4  # at most merge_factor - 1 per level, a few levels
    assert policy.find_merge([SegmentSize(100, 60)]) == (0, 1)  # mostly deleted: rewritten
    plan = compaction_plan([SegmentSize(10, 0)] * 7, 3)
    assert len(plan) <= 3 and plan[0][0] == 0 and plan[-1][1] == 7
    assert all(a[1] <= b[0] for a, b in zip(plan, plan[1:]))


def test_served_index_swaps_from_a_plain_index_to_a_generation(tmp_path):
    rng = np.random.default_rng(8)
    docs = [random_document(rng, f"s{i}", False) for i in range(30)]
    build_plain(tmp_path / "index", docs[:20])
    served = ServedIndex(open_searchable(tmp_path / "index"))
    query = SparseQuery(np.arange(VOCAB, dtype=np.int32), np.ones(VOCAB, np.float32))
    with IndexWriter(tmp_path / "index") as writer:
        writer.add(docs[20:])
        writer.delete(["s1"])
        writer.commit()
    with served.acquire() as old:  # a search running across the swap keeps its index
        snapshot = served.swap(open_searchable(tmp_path / "index"))
        assert snapshot.index.summary() == {"generation": 1, "segments": 2, "documents": 29, "deleted_documents": 1}
        top, _ = old.search(query, 30, "exact")
        assert "s1" in old.index.external_ids(top.doc_numbers) and len(top.doc_numbers) <= 20
    ids = ranked(served, query, 30, "exact")[0]
    assert "s1" not in ids and "s25" in ids


def test_changes_to_uncommitted_segments_commit_and_roll_back(tmp_path):
    """A replace or delete of a document that is only in a segment written since the last commit."""
    rng = np.random.default_rng(9)
    build_plain(tmp_path / "index", [random_document(rng, f"u{i}", False) for i in range(10)])
    with IndexWriter(tmp_path / "index", memory_budget_mb=0) as writer:  # budget 0: every add cuts a segment
        writer.add([random_document(rng, "x1", False), random_document(rng, "x2", False)])
        writer.add([random_document(rng, "x1", False)], replace=True)
        assert writer.delete(["x2", "u3"]) == []
        writer.rollback()
        assert not writer.has_changes
        writer.add([random_document(rng, "x1", False), random_document(rng, "x2", False)])
        writer.add([random_document(rng, "x1", False)], replace=True)
        writer.delete(["x2", "u3"])
        writer.commit()
    generation = open_generation(tmp_path / "index")
    ids = [i for s in generation.segments for i, dead in zip(
        s.index.external_ids(np.arange(s.num_slots)), s.deleted_mask if s.deleted_mask is not None
        else np.zeros(s.num_slots, bool)) if not dead]
    assert sorted(ids) == sorted([f"u{i}" for i in range(10) if i != 3] + ["x1"])
    assert generation.num_documents == 10
