"""Crashes of the offline writer: SIGKILL at each fault point of engine.lifecycle (SPLADE_FAULT_POINT) and a real
`kill -9` at random times, in the middle of adds, deletes, commits and merges (tests/support/crash_writer.py).
Afterwards the index opens, every acknowledged commit is there, an unacknowledged round is entirely there or
entirely absent (never half), checksums verify, and the next writer removes the leftovers and writes on.
Measured: ~25 s on a shared 2-core machine (8 writer processes)."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from engine.commit import DELETES_DIR, SEGMENTS_DIR, read_commit, stale_commit_temps
from engine.lifecycle import FAULT_ENV, FAULT_POINTS, IndexWriter, NewDocument, verify_generation
from engine.segments import open_generation
from index_builder.csr_index import build_index_from_csr
from tests.conftest import REPO_ROOT
from tests.support.crash_writer import VOCAB, round_deletes, round_documents

BASE_DOCUMENTS = 20
RANDOM_KILLS = 3


def make_index(path) -> None:
    rng = np.random.default_rng(0)
    lengths = np.full(BASE_DOCUMENTS, 4)
    terms = np.concatenate([np.sort(rng.choice(VOCAB, 4, replace=False)) for _ in range(BASE_DOCUMENTS)])
    build_index_from_csr(path, np.concatenate([[0], np.cumsum(lengths)]), terms.astype(np.int32),
                         rng.uniform(0.1, 3.0, size=len(terms)).astype(np.float32), vocab_size=VOCAB,
                         ids=[f"b{i}" for i in range(BASE_DOCUMENTS)])


def start_writer(index_dir, rounds: int, fault: str | None = None) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    env.pop(FAULT_ENV, None)
    if fault:
        env[FAULT_ENV] = fault
    return subprocess.Popen([sys.executable, "-m", "tests.support.crash_writer", str(index_dir), str(rounds)],
                            cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def live_ids(index_dir) -> set[str]:
    generation = open_generation(index_dir)
    try:
        ids = set()
        for segment in generation.segments:
            live = np.flatnonzero(segment.live_mask()) if segment.deleted_mask is not None \
                else np.arange(segment.num_slots)
            ids |= set(segment.index.external_ids(live))
        return ids
    finally:
        generation.close()


def expected_ids(rounds: int) -> set[str]:
    ids = {f"b{i}" for i in range(BASE_DOCUMENTS)}
    for r in range(rounds):
        ids |= {d.id for d in round_documents(r)}
        ids -= set(round_deletes(r))
    return ids


def check_after_crash(index_dir, stdout: str) -> int:
    acknowledged = [json.loads(line)["round"] for line in stdout.splitlines() if '"round"' in line]
    done = (acknowledged[-1] + 1) if acknowledged else 0
    assert acknowledged == list(range(done))
    found = live_ids(index_dir)
    # Every acknowledged round is there; the round in flight is there entirely or not at all.
    assert found in (expected_ids(done), expected_ids(done + 1)), "a write was lost or is half visible"
    verify_generation(index_dir)  # every segment of the live generation checksums
    commit = read_commit(index_dir)
    with IndexWriter(index_dir) as writer:  # the next writer cleans up after the dead one, then writes on
        assert not stale_commit_temps(index_dir)
        referenced = commit.referenced_paths() if commit else set()
        for folder in (SEGMENTS_DIR, DELETES_DIR):
            if (index_dir / folder).exists():
                assert {f"{folder}/{p.name}" for p in (index_dir / folder).iterdir()} <= referenced
        writer.add([NewDocument("after-crash", np.array([1], np.int32), np.array([1.0], np.float32))])
        writer.commit()
    assert "after-crash" in live_ids(index_dir)
    return done


@pytest.mark.parametrize("point", FAULT_POINTS)
def test_sigkill_at_each_fault_point(tmp_path, point):
    make_index(tmp_path / "index")
    proc = start_writer(tmp_path / "index", rounds=6, fault=point)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL, f"the writer did not reach {point}: {stderr[-2000:]}"
    check_after_crash(tmp_path / "index", stdout)


def test_kill_9_at_random_times(tmp_path):
    seeded = random.Random(11)
    rounds_done = []
    for attempt in range(RANDOM_KILLS):
        index_dir = tmp_path / f"index-{attempt}"
        make_index(index_dir)
        proc = start_writer(index_dir, rounds=400)
        assert json.loads(proc.stdout.readline()) == {"ready": True}
        time.sleep(seeded.uniform(0.05, 0.8))
        proc.send_signal(signal.SIGKILL)
        stdout, _ = proc.communicate(timeout=60)
        assert proc.returncode == -signal.SIGKILL, "the writer finished before the kill"
        rounds_done.append(check_after_crash(index_dir, stdout))
    assert max(rounds_done) > 0, f"every kill came before the first commit: {rounds_done}"
