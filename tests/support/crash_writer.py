"""A writer process for the crash tests (tests/engine/test_lifecycle_faults.py): rounds of add + delete + commit
+ merge policy on an index, printing one JSON line per acknowledged commit (after `commit()` returned).

    python -m tests.support.crash_writer INDEX_DIR ROUNDS

Rounds are deterministic (`round_documents`, `round_deletes`), so the test knows what an in-flight round would
have changed. SPLADE_FAULT_POINT makes the writer kill itself at that point (engine.lifecycle.fault).
"""
from __future__ import annotations

import json
import sys

import numpy as np

from engine.lifecycle import IndexWriter, NewDocument
from engine.merge_policy import LogMergePolicy

VOCAB = 32
PER_ROUND = 5


def round_documents(r: int) -> list[NewDocument]:
    rng = np.random.default_rng(1000 + r)
    docs = []
    for i in range(PER_ROUND):
        terms = np.unique(rng.integers(0, VOCAB, size=4)).astype(np.int32)
        docs.append(NewDocument(f"r{r}-{i}", terms, rng.uniform(0.1, 3.0, size=len(terms)).astype(np.float32),
                                text=f"round {r} document {i}"))
    return docs


def round_deletes(r: int) -> list[str]:
    return [f"r{r - 1}-0"] if r >= 1 else ["b0"]


def main(index_dir: str, rounds: int) -> None:
    print(json.dumps({"ready": True}), flush=True)
    with IndexWriter(index_dir, merge_policy=LogMergePolicy(merge_factor=2, floor_documents=5)) as writer:
        for r in range(rounds):
            writer.add(round_documents(r))
            writer.delete(round_deletes(r))
            generation = writer.commit()
            print(json.dumps({"round": r, "generation": generation}), flush=True)
            writer.maybe_merge()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
