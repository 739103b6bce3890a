"""The offline lifecycle verbs with the real model on 300 SciFact documents: add, update, delete, merge, verify;
the result searched through engine.Searcher (ids, texts, explain, BM25 and hybrid, two-phase) equals a
from-scratch `build --impact-scale` of the surviving documents in add order; bad input is a clear error and
changes nothing. Verbs run in-process through `python -m index_builder`'s main (the same code path).
Measured: ~65 s on a shared 2-core machine, ~20 s of it the session fixture's 300-document build that other tests
share; a from-scratch encode of ~330 documents and a real service start are most of the rest."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from engine.commit import read_commit
from engine.errors import IncompatibleArtifactsError
from engine.lifecycle import IndexWriter
from engine.searcher import SearchOptions, Searcher
from index_builder.__main__ import main
from index_builder.build import load_encoder
from index_builder.lifecycle import _check_model

QUERIES = ["protein folding", "vitamin D deficiency and bone", "cancer cells immune response", "brain imaging"]


def corpus_records(scifact_dir, start: int, stop: int) -> list[dict]:
    with open(scifact_dir / "corpus.jsonl", encoding="utf-8") as handle:
        return [json.loads(line) for i, line in enumerate(handle) if start <= i < stop]


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def verb(*args: str) -> int:
    return main([*args, "--no-progress"] if args[0] in ("add", "update") else list(args))


def results(searcher: Searcher, **options) -> list[list[tuple[str, float]]]:
    return [[(hit.id, hit.score) for hit in searcher.search(q, k=10, **options).hits] for q in QUERIES]


def lifecycle_deleted_title(survivors, tmp) -> list[str]:
    """(id, title) of a deleted base document."""
    return json.loads((tmp / "deleted.json").read_text())


@pytest.fixture(scope="module")
def lifecycle(tmp_path_factory, small_index_dir, scifact_dir, default_model_dir):
    """A copy of the 300-document index after add (30 new), update (2), delete (3): its survivors in add order."""
    tmp = tmp_path_factory.mktemp("lifecycle")
    index = tmp / "index"
    shutil.copytree(small_index_dir, index)
    base = corpus_records(scifact_dir, 0, 300)
    added = corpus_records(scifact_dir, 300, 330)
    model = str(default_model_dir)
    assert verb("add", "--index", str(index), "--model", model, "--corpus",
                str(write_jsonl(tmp / "added.jsonl", added))) == 0
    changed = [dict(base[5], text="An updated abstract about protein folding kinetics."),
               dict(added[3], title="Replaced title on vitamin D")]
    assert verb("update", "--index", str(index), "--model", model, "--corpus",
                str(write_jsonl(tmp / "changed.jsonl", changed))) == 0
    deleted = [base[0]["_id"], base[17]["_id"], added[9]["_id"]]
    (tmp / "ids.txt").write_text("\n".join(deleted[1:]) + "\n")
    assert verb("delete", "--index", str(index), "--ids", deleted[0], "--ids-file", str(tmp / "ids.txt")) == 0
    (tmp / "deleted.json").write_text(json.dumps([base[0]["_id"], base[0]["title"]]))
    gone = set(deleted) | {c["_id"] for c in changed}
    survivors = [r for r in base + added if r["_id"] not in gone] + changed
    return index, tmp, survivors


def test_verbs_make_one_generation_each(lifecycle, capsys):
    index, _, survivors = lifecycle
    commit = read_commit(index)
    assert commit.generation == 3 and len(commit.segments) == 3  # ".", the add, the update
    assert commit.documents == len(survivors) == 327
    assert verb("verify", "--index", str(index)) == 0
    assert "checksums verified" in capsys.readouterr().out


def test_a_generation_searches_like_a_build_of_its_survivors(lifecycle, default_model_dir):
    index, tmp, survivors = lifecycle
    scale = read_commit(index).impact_scale
    scratch = tmp / "scratch"
    assert main(["build", "--model", str(default_model_dir), "--corpus", str(write_jsonl(tmp / "s.jsonl", survivors)),
                 "--out", str(scratch), "--doc-max-terms", "128", "--max-length", "256", "--impact-scale",
                 repr(scale), "--no-progress"]) == 0
    generation = Searcher.from_paths(index, default_model_dir)
    whole = Searcher.from_paths(scratch, default_model_dir)
    assert len(generation.served.current.index.segments) == 3
    for scorer in ("exact", "exact-blocked"):
        assert results(generation, scorer=scorer) == results(whole, scorer=scorer)
    query = generation.encode_texts(["protein folding"]).queries[0]
    with generation.acquire() as snapshot, whole.acquire() as other:
        two_phase = generation.score_mode(snapshot, query, None, SearchOptions(k=10, two_phase_ratio=0.0))
        exact = whole.score(other, query, SearchOptions(k=10))
    assert [(h.id, h.score) for h in two_phase.hits] == [(h.id, h.score) for h in exact.hits]
    hit = generation.search("updated abstract protein folding kinetics", k=1, include_text=True, explain=True).hits[0]
    assert hit.id == survivors[-2]["_id"] and hit.text.startswith("An updated abstract")
    assert hit.contributions and abs(sum(hit.contributions.values()) - hit.score) < 1e-3
    deleted_title = lifecycle_deleted_title(survivors, tmp)
    assert deleted_title[0] not in {h.id for h in generation.search(deleted_title[1], k=20).hits}
    hybrid = generation.search("vitamin D", k=5, mode="hybrid", explain=True)
    assert hybrid.mode == "hybrid" and len(hybrid.hits) == 5
    # A full merge: one segment, BM25 rebuilt over every document, so BM25 and hybrid equal the build too.
    assert verb("merge", "--index", str(index), "--max-segments", "1") == 0
    merged = Searcher.from_paths(index, default_model_dir)
    assert len(merged.served.current.index.segments) == 1
    assert results(merged) == results(whole)
    assert results(merged, mode="bm25") == results(whole, mode="bm25")
    assert results(merged, mode="hybrid") == results(whole, mode="hybrid")


def test_bad_input_is_a_clear_error_and_changes_nothing(lifecycle, scifact_dir, default_model_dir, capsys):
    index, tmp, _ = lifecycle
    before = read_commit(index).generation
    model = str(default_model_dir)
    existing = corpus_records(scifact_dir, 310, 311)
    assert verb("add", "--index", str(index), "--model", model, "--corpus",
                str(write_jsonl(tmp / "dup.jsonl", existing))) == 2
    assert f"id {existing[0]['_id']!r} already exists (use update" in capsys.readouterr().err
    twice = corpus_records(scifact_dir, 400, 401) * 2
    assert verb("add", "--index", str(index), "--model", model, "--corpus",
                str(write_jsonl(tmp / "twice.jsonl", twice))) == 2
    assert "duplicate document id" in capsys.readouterr().err
    assert verb("delete", "--index", str(index), "--ids", "no-such-id", "--strict") == 1
    assert "1 unknown id(s)" in capsys.readouterr().err
    assert verb("delete", "--index", str(index)) == 2
    assert "give the ids to delete" in capsys.readouterr().err
    vectors = write_jsonl(tmp / "vectors.jsonl", [{"id": "v1", "vector": {"protein": 1.0, "zzqxj-not-a-token": 2.0}}])
    assert verb("add", "--index", str(index), "--model", model, "--corpus", str(vectors)) == 2
    assert "unknown token 'zzqxj-not-a-token'" in capsys.readouterr().err
    with IndexWriter(index):
        assert verb("delete", "--index", str(index), "--ids", "x") == 2
        assert "another writer holds write.lock" in capsys.readouterr().err
    assert read_commit(index).generation == before  # nothing was committed by any of these
    encoder = load_encoder(default_model_dir, 256)
    encoder.tokenizer_sha256 = "0" * 64  # the same model with another tokenizer's fingerprint
    with pytest.raises(IncompatibleArtifactsError, match="--model: .* another vocabulary or tokenizer"):
        _check_model(index, encoder)


def test_vectors_path_adds_without_text(lifecycle, default_model_dir):
    index, tmp, _ = lifecycle
    vectors = write_jsonl(tmp / "v.jsonl", [{"id": "vec-1", "vector": {"heart": 1.0, "fish": 0.5}}])
    assert verb("add", "--index", str(index), "--model", str(default_model_dir), "--corpus", str(vectors),
                "--no-merge") == 0
    hits = Searcher.from_paths(index, default_model_dir).search({"heart": 1.0, "fish": 1.0}, k=50).hits
    scores = {hit.id: hit.score for hit in hits}
    assert "vec-1" in scores and np.isclose(scores["vec-1"], 1.5, rtol=0.02)
    assert Searcher.from_paths(index, default_model_dir).search("heart", k=50, include_text=True).hits


def test_the_service_serves_a_segmented_index(lifecycle, default_model_dir):
    """A real `python -m service` on the segmented index (runs last: after the merge and the vectors add)."""
    import httpx

    from tests.support.server import running_service

    index, _, _ = lifecycle
    commit = read_commit(index)
    assert len(commit.segments) == 2  # the merged segment and the vectors segment
    with running_service(default_model_dir, index) as base:
        info = httpx.get(f"{base}/info", timeout=30).json()
        assert info["index"]["generation"] == {"generation": commit.generation, "segments": 2,
                                               "documents": commit.documents, "deleted_documents": 0}
        body = httpx.post(f"{base}/search", json={"query": "protein folding", "k": 5, "include_text": True,
                                                  "explain": True}, timeout=30).json()
        assert len(body["hits"]) == 5 and body["hits"][0]["text"] and body["hits"][0]["contributions"]
        body = httpx.post(f"{base}/search", json={"vector": {"heart": 1.0, "fish": 1.0}, "k": 50}, timeout=30).json()
        assert "vec-1" in [hit["id"] for hit in body["hits"]]


def test_the_verbs_killed_mid_add_and_mid_merge_leave_the_last_commit(tmp_path, small_index_dir, default_model_dir):
    """`python -m index_builder add` and `merge` SIGKILLed at a fault point (engine.lifecycle.fault): the index
    still opens with exactly what was committed before, and the next verb cleans up and works."""
    import os
    import signal
    import subprocess
    import sys

    from engine.lifecycle import FAULT_ENV
    from engine.segments import open_generation
    from tests.conftest import REPO_ROOT

    index = tmp_path / "index"
    shutil.copytree(small_index_dir, index)
    vectors = write_jsonl(tmp_path / "v.jsonl", [{"id": f"k{i}", "vector": {"heart": 1.0 + i}} for i in range(3)])
    add = ["add", "--index", str(index), "--model", str(default_model_dir), "--corpus", str(vectors), "--no-merge",
           "--no-progress"]

    def killed(args: list[str], point: str) -> None:
        env = dict(os.environ, **{FAULT_ENV: point, "PYTHONPATH": str(REPO_ROOT)})
        proc = subprocess.run([sys.executable, "-m", "index_builder", *args], cwd=REPO_ROOT, env=env,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]

    killed(add, "after-segment-write")  # the segment is on disk, the commit never happened
    assert read_commit(index) is None and open_generation(index).num_documents == 300
    assert verb(*add) == 0  # the next writer removes the dead one's segment and commits its own
    assert read_commit(index).generation == 1 and open_generation(index).num_documents == 303
    killed(["merge", "--index", str(index), "--max-segments", "1"], "after-merge-write")
    generation = open_generation(index)
    assert generation.number == 1 and len(generation.segments) == 2 and generation.num_documents == 303
    assert verb("merge", "--index", str(index), "--max-segments", "1") == 0
    assert sorted(p.name for p in (index / "segments").iterdir()) == [read_commit(index).segments[0].name]
