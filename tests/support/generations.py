"""A sparse collection over the default model's vocabulary whose generations differ: for hot-swap and write
tests (documents as {term id: weight}; the query as tokens, for HTTP)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from index_builder.csr_index import build_index_from_csr

QUERY_TERMS = 8
BASE_DOCUMENTS = 3000


class Collection:
    """Random sparse documents over the model's vocabulary; generation g adds documents that match the query
    and deletes some of the best earlier ones, so every generation has its own top-k."""

    def __init__(self, model_dir: Path, seed: int = 11, base_documents: int = BASE_DOCUMENTS) -> None:
        manifest = json.loads((model_dir / "manifest.json").read_text())
        self.vocab_size, self.tokenizer_sha = manifest["vocab_size"], manifest["tokenizer_sha256"]
        self.rng = np.random.default_rng(seed)
        tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        words = [tokenizer.id_to_token(i) for i in range(2000, self.vocab_size)]
        self.query_ids = self.rng.choice(np.arange(2000, self.vocab_size), QUERY_TERMS, replace=False)
        self.query_weights = np.linspace(2.0, 0.5, QUERY_TERMS).astype(np.float32)
        self.tokenizer = tokenizer
        self.query_vector = {tokenizer.id_to_token(int(t)): float(w)
                             for t, w in zip(self.query_ids, self.query_weights)}
        assert len(words) and len(self.query_vector) == QUERY_TERMS
        self.documents: dict[str, dict[int, float]] = {}
        for i in range(base_documents):
            self.documents[f"base-{i}"] = self.random_document(matching=i % 10 == 0)
        self.generation = 0

    def random_document(self, matching: bool) -> dict[int, float]:
        terms = self.rng.choice(self.vocab_size, 30, replace=False)
        if matching:
            terms[:3] = self.rng.choice(self.query_ids, 3, replace=False)
        weights = self.rng.uniform(0.1, 3.0, len(terms))
        return {int(t): float(w) for t, w in zip(terms, weights)}

    def next_generation(self) -> tuple[dict[str, dict[int, float]], list[str]]:
        """Add 20 documents (3 of them heavier on the query than any before: a new top), delete 10 matching
        ones (among them the previous generation's best); returns (added documents, deleted ids)."""
        self.generation += 1
        g = self.generation
        deleted = [f"gen{g - 1}-0"] if g > 1 else []
        added = {}
        for j in range(20):
            document = self.random_document(matching=True)
            if j < 3:
                document.update({int(t): float(self.rng.uniform(3.0 + g, 4.0 + g)) for t in self.query_ids})
            added[f"gen{g}-{j}"] = document
        matching = sorted(doc_id for doc_id, vec in self.documents.items()
                          if set(vec) & set(self.query_ids.tolist()) and doc_id not in deleted)
        deleted += [str(doc_id) for doc_id in self.rng.choice(matching, 9, replace=False)]
        for doc_id in deleted:
            del self.documents[doc_id]
        self.documents.update(added)
        return added, deleted

    def commit_generation(self, index_dir: Path) -> None:
        """The next generation as one commit of adds and deletes to the index (engine.lifecycle)."""
        from engine.lifecycle import IndexWriter, NewDocument

        added, deleted = self.next_generation()
        with IndexWriter(index_dir) as writer:
            writer.add([NewDocument(doc_id, np.array(sorted(vec), np.int32),
                                    np.array([vec[t] for t in sorted(vec)], np.float32))
                        for doc_id, vec in added.items()])
            assert writer.delete(deleted) == []
            writer.commit()

    def build(self, out: Path, metadata=None) -> None:
        """A plain index of the documents; `metadata(doc_id)` gives each one's metadata (a metadata part)."""
        ids = sorted(self.documents)
        indptr, terms, weights = [0], [], []
        for doc_id in ids:
            vector = sorted(self.documents[doc_id].items())
            terms += [t for t, _ in vector]
            weights += [w for _, w in vector]
            indptr.append(len(terms))
        build_index_from_csr(out, np.array(indptr), np.array(terms, np.int32), np.array(weights, np.float32),
                             vocab_size=self.vocab_size, tokenizer_sha256=self.tokenizer_sha, ids=ids,
                             metadata=None if metadata is None else [metadata(i) for i in ids])

    def tokens(self, vector: dict[int, float]) -> dict[str, float]:
        """A document vector as {token: weight}, for PUT /documents."""
        return {self.tokenizer.id_to_token(t): w for t, w in vector.items()}
