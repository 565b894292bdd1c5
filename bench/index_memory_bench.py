"""Memory of indexing huge files: peak RSS above idle in the app process and in the parse worker.

Usage:
    .venv/bin/python bench/index_memory_bench.py [--megabytes 100] [--cases ascii-line,...]
        [--embedder tokenizer|minilm] [--workdir DIR]

Prints a Markdown table. Each case runs in a fresh subprocess, so baselines are clean: the
real pipeline (``Library.sync`` with the desktop's parse pool: one spawned worker, 60 s, 1 GB)
first syncs a tiny folder (warming every code path), then the peak RSS counter is reset
(``/proc/self/clear_refs``) and a folder holding the huge file(s) is synced. "app" is the peak
of the syncing process above its idle RSS; "worker" is the parse worker's peak RSS (its idle,
after start-up imports, is in its own column).

Cases:
- ascii-line: one ``--megabytes`` MB text file that is a single line of words.
- cjk-line: one ``--megabytes`` MB single line of CJK characters without spaces (3 bytes each in
  UTF-8, 2 in a Python string; the JSON to the worker's pipe escapes each to 6 bytes).
- many-logs: five files of ``--megabytes`` / 2 MB each, ordinary log lines (the queue between
  parsing and embedding must not hold them all).

``--embedder tokenizer`` (default) chunks with MiniLM's real tokenizer but makes 384-float
vectors by hashing, so 20 million characters do not take an hour of CPU to embed; ``minilm``
embeds for real (idle then includes the loaded model).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

REPO = Path(__file__).resolve().parent.parent
CASES = ("ascii-line", "cjk-line", "many-logs")


def _status_kb(pid: int | str, field: str) -> int:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/children") as handle:
                found += [int(c) for c in handle.read().split()]
        except OSError:
            continue
    return found


class WorkerWatch:
    """Samples the peak RSS (VmHWM) of this process's children every 20 ms."""

    def __init__(self) -> None:
        self.peaks: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        me = os.getpid()
        while not self._stop.wait(0.02):
            for child in _children(me):
                try:
                    self.peaks[child] = max(self.peaks.get(child, 0), _status_kb(child, "VmHWM"))
                except (OSError, ValueError):
                    continue

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


class TokenizerOnlyEmbedder:
    """MiniLM's real tokenizer (so chunking is what the app does) with hashed vectors of
    MiniLM's size (so the vectors held until the swap cost what they cost in the app)."""

    id = "bench-tokenizer-hash-384"
    dimension = 384
    max_tokens = 256  # all-MiniLM-L6-v2's max_seq_length

    def __init__(self) -> None:
        from tokenizers import Tokenizer

        from bastion.store.embedder import HFChunkTokenizer, default_embedder_folder

        backend = Tokenizer.from_file(str(default_embedder_folder() / "tokenizer.json"))
        self._tokenizer = HFChunkTokenizer(backend)

    def tokenizer(self):  # type: ignore[no-untyped-def]
        return self._tokenizer

    def embed(self, texts: list[str]) -> NDArray[np.float32]:
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            out[row, hash(text) % self.dimension] = 1.0
        return out


def write_case(case: str, folder: Path, megabytes: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    size = megabytes * 1024 * 1024
    if case == "ascii-line":
        unit = b"word " * 200_000
        with (folder / "one-line.txt").open("wb") as handle:
            for _ in range(size // len(unit)):
                handle.write(unit)
    elif case == "cjk-line":
        unit = "東京都の天気は晴れです大阪".encode() * 30_000
        with (folder / "cjk-line.txt").open("wb") as handle:
            for _ in range(size // len(unit)):
                handle.write(unit)
    elif case == "many-logs":
        line = b"2024-05-01T12:00:00Z INFO request served path=/api/items status=200 ms=12\n"
        for i in range(5):
            with (folder / f"app{i}.log").open("wb") as handle:
                block = line * 10_000
                for _ in range(size // 2 // len(block)):
                    handle.write(block)
    else:
        raise SystemExit(f"unknown case {case}")


def child(case: str, workdir: Path, embedder_kind: str) -> None:
    """One case in this (fresh) process; prints one JSON line."""
    import bastion.desktop  # noqa: F401 - offline environment first
    from bastion.desktop.library import default_embedder, default_parse_pool
    from bastion.store.library import Library

    embedder = TokenizerOnlyEmbedder() if embedder_kind == "tokenizer" else default_embedder(None)
    tiny = workdir / "tiny"
    tiny.mkdir(exist_ok=True)
    (tiny / "note.txt").write_text("A small note to warm every code path up.\n" * 20)
    watch = WorkerWatch()
    with Library(workdir / "library.db", lambda folder: embedder, default_parse_pool) as library:
        library.add_collection("tiny", [tiny])
        for _ in library.sync("tiny"):
            pass
        time.sleep(0.3)
        worker_idle = max(watch.peaks.values(), default=0)
        gc.collect()
        idle = _status_kb("self", "VmRSS")
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")  # resets VmHWM to the current RSS
        started = time.perf_counter()
        library.add_collection("huge", [workdir / "huge"])
        events = 0
        for _ in library.sync("huge"):
            events += 1
        seconds = time.perf_counter() - started
        peak = _status_kb("self", "VmHWM")
        documents = library.documents("huge")
        chunks = library.status("huge")[0].chunks
    watch.stop()
    worker_peak = max((v for pid, v in watch.peaks.items()), default=0)
    states = sorted({f"{d.state}: {d.reason[:70]}" if d.reason else d.state for d in documents})
    print(json.dumps({
        "case": case, "idle_mb": idle / 1024, "app_mb": (peak - idle) / 1024,
        "worker_idle_mb": worker_idle / 1024, "worker_mb": worker_peak / 1024,
        "seconds": seconds, "events": events, "chunks": chunks, "states": states,
    }))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=int, default=100)
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--embedder", choices=("tokenizer", "minilm"), default="tokenizer")
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.workdir, args.embedder)
        return
    base = Path(tempfile.mkdtemp(prefix="bastion-memory-", dir=args.workdir))
    rows = []
    try:
        for case in args.cases.split(","):
            workdir = base / case
            write_case(case, workdir / "huge", args.megabytes)
            env = dict(os.environ, BASTION_HOME=str(workdir / "home"))
            result = subprocess.run(
                [sys.executable, __file__, "--child", case, "--workdir", str(workdir),
                 "--embedder", args.embedder],
                capture_output=True, text=True, env=env, cwd=REPO, check=False,
            )
            if result.returncode != 0:
                print(result.stderr[-3000:], file=sys.stderr)
                raise SystemExit(f"case {case} failed (exit {result.returncode})")
            rows.append(json.loads(result.stdout.strip().splitlines()[-1]))
            shutil.rmtree(workdir, ignore_errors=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(f"\n{args.megabytes} MB per case, embedder: {args.embedder}\n")
    print("| case | app idle MB | app peak above idle MB | worker idle MB | worker peak MB | "
          "seconds | progress events | chunks | outcome |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        print(f"| {r['case']} | {r['idle_mb']:.0f} | {r['app_mb']:.0f} | {r['worker_idle_mb']:.0f} "
              f"| {r['worker_mb']:.0f} | {r['seconds']:.1f} | {r['events']} | {r['chunks']:,} "
              f"| {'; '.join(r['states'])} |")


if __name__ == "__main__":
    main()
