"""kill -9 during indexing, many times: the database stays consistent and work is never redone.

A sync runs in a spawned subprocess (fake embedder with a small delay, in-process text parser);
the test kills it at random moments, checks the invariants of SECURITY.md after each kill, and
finally lets a sync finish.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

CHILD = """
import sys
from pathlib import Path
import bastion.desktop  # offline environment
from bastion.store.library import Library
from tests.store.fakes import CountingParser, HashingEmbedder

db, root, log = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
parser = CountingParser()
def logged(path):
    with open(log, "a") as handle:
        handle.write(path.name + "\\n")
parser.hooks = {f"f{i:02}.txt": logged for i in range(100)}
lib = Library(db, lambda folder: HashingEmbedder(delay_s=0.004), parser.pool)
if not lib.collections():
    lib.add_collection("docs", [root])
print("started", flush=True)
for event in lib.sync("docs"):
    print("event", event.files_done, flush=True)
print("finished", flush=True)
"""


def _check_invariants(db_path: Path, root: Path) -> dict[str, str]:
    conn = sqlite3.connect(db_path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        conn.execute("INSERT INTO chunks_fts(chunks_fts) VALUES ('integrity-check')")
        states: dict[str, str] = {}
        for doc_id, path, state, sha, count in conn.execute(
            "SELECT id, path, state, sha256, chunk_count FROM documents"
        ):
            name = Path(path).name
            states[name] = state
            assert state in {"pending", "in_progress", "indexed", "failed", "quarantined"}, state
            chunks = conn.execute("SELECT COUNT(*) FROM chunks WHERE document_id = ?", [doc_id]).fetchone()[0]
            if state == "indexed":
                assert sha == hashlib.sha256((root / name).read_bytes()).hexdigest()
                assert chunks == count > 0
                vectors = conn.execute(
                    "SELECT COUNT(*) FROM embeddings e JOIN chunks c ON c.id = e.chunk_id "
                    "WHERE c.document_id = ?", [doc_id]
                ).fetchone()[0]
                assert vectors == chunks
        total = conn.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]
        assert conn.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0] == total
        return states
    finally:
        conn.close()


@pytest.mark.slow
def test_kill_9_during_indexing_repeatedly(tmp_path: Path) -> None:
    root = tmp_path / "docs"
    root.mkdir()
    rng = random.Random(1234)
    for i in range(40):
        words = " ".join(rng.choice(["alpha", "beta", "gamma", "delta", "omega"]) for _ in range(rng.randint(40, 400)))
        (root / f"f{i:02}.txt").write_text(f"# File {i}\n\n{words}.\n")
    db, log = tmp_path / "library.db", tmp_path / "parsed.log"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    kills = 0
    indexed_before: set[str] = set()
    progress: list[int] = []
    for round_ in range(6):
        log.write_text("")
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(db), str(root), str(log)],
            stdout=subprocess.PIPE, text=True, env=env, cwd=REPO,
        )
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "started"
        # Kill after a random number of progress events, then a random extra moment: lands
        # anywhere in claim / parse / embed / swap, with the index part-built.
        for _ in range(rng.randint(0, 12)):
            if not child.stdout.readline():
                break
        time.sleep(rng.uniform(0.0, 0.05))
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()
        kills += child.returncode == -signal.SIGKILL
        parsed_now = set(log.read_text().split())
        # Never redone: nothing indexed before this round was parsed again in it.
        assert not (indexed_before & parsed_now), f"round {round_} redid {indexed_before & parsed_now}"
        states = _check_invariants(db, root)
        indexed_before = {name for name, state in states.items() if state == "indexed"}
        progress.append(len(indexed_before))
    assert kills >= 4
    # The kills landed mid-work: the index grew over the rounds instead of finishing at once.
    assert progress[0] < 40 and len(set(progress)) >= 2, progress
    log.write_text("")
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(db), str(root), str(log)],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=300,
    )
    assert "finished" in done.stdout, done.stderr
    assert not (indexed_before & set(log.read_text().split()))
    states = _check_invariants(db, root)
    assert len(states) == 40
    assert set(states.values()) <= {"indexed", "quarantined"}
    assert list(states.values()).count("indexed") >= 36
