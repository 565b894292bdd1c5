"""Indexing benchmark: docfolder states, end-to-end chunks/s vs the bare embedder, unchanged re-sync.

Usage:
    .venv/bin/python bench/index_bench.py [--docfolder PATH] [--files 10000] [--resync-files 10000]
        [--docfolder-embedder minilm|hashing] [--workdir DIR]

Prints Markdown tables. Uses the real pipeline with sandboxed parse workers (ParsePool).
- docfolder: every file must end in a stated state (counts and reasons printed). With
  ``--docfolder-embedder hashing`` a trivial embedder replaces MiniLM (states do not depend on
  it; on a loaded machine the ~20k MiniLM chunks of docfolder take hours).
- throughput: ``--files`` generated text files through MiniLM end to end, then the bare embedder
  on the same chunks (``--bare-sample`` of them, in index order, calls of 64), interleaved with
  the embedding as it was before issue 15, whose 2x target the ratio is read against.
- re-sync: ``--resync-files`` generated files indexed (hashing embedder: re-sync never loads or
  calls the model), then a sync with nothing changed is timed.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

import bastion.desktop  # noqa: F401 - offline environment first
from bastion.desktop.library import default_parse_pool
from bastion.store.embedder import SentenceTransformerEmbedder, default_embedder_folder
from bastion.store.library import Library
from bastion.store.sync import EMBED_BATCH

REPO = Path(__file__).resolve().parent.parent
WORDS = ["system", "data", "model", "index", "report", "patient", "clinical", "trial", "budget", "revenue", "contract", "clause", "policy", "audit", "risk", "engine", "signal", "vector", "query", "answer", "source", "document", "page", "section", "figure", "table", "result", "method", "protein", "cell", "gene", "dose", "outcome", "cohort", "study", "review", "court", "ruling", "party", "agreement", "invoice", "payment", "tax", "account", "ledger", "network", "server", "storage", "backup", "archive", "river", "mountain", "forest", "weather", "climate", "energy", "solar", "battery", "market", "price", "demand", "supply"]


class HashingEmbedder:
    """A trivial embedder (hashed words) for runs where MiniLM's speed is not what is measured."""

    id = "bench-hashing-64"
    dimension = 64

    def __init__(self, tokenizer_source: SentenceTransformerEmbedder) -> None:
        self._source = tokenizer_source
        self.max_tokens = tokenizer_source.max_tokens

    def tokenizer(self):  # type: ignore[no-untyped-def]
        return self._source.tokenizer()

    def embed(self, texts: list[str]) -> NDArray[np.float32]:
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in text.lower().split():
                out[row, int(hashlib.md5(word.encode()).hexdigest()[:6], 16) % self.dimension] += 1
        out[:, 0] += 1e-3
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def generate_corpus(root: Path, files: int, seed: int = 7) -> None:
    """``files`` text files of 150-250 pseudo-English words (about one chunk each)."""
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(files):
        sub = root / f"d{i // 500:03}"
        sub.mkdir(exist_ok=True)
        words = [rng.choice(WORDS) for _ in range(rng.randint(150, 250))]
        sentences = [" ".join(words[j : j + 12]).capitalize() + "." for j in range(0, len(words), 12)]
        body = "\n\n".join(" ".join(sentences[k : k + 4]) for k in range(0, len(sentences), 4))
        (sub / f"note{i:05}.txt").write_text(f"Note {i}\n\n{body}\n")


def run_sync(library: Library, name: str) -> tuple[float, int, int]:
    started = time.perf_counter()
    files = chunks = 0
    for event in library.sync(name):
        if event.phase == "done":
            files, chunks = event.files_done, event.chunks
    return time.perf_counter() - started, files, chunks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docfolder", type=Path, default=REPO / "../shared/data/docfolder")
    parser.add_argument("--docfolder-embedder", choices=["minilm", "hashing", "skip"], default="minilm")
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--resync-files", type=int, default=10_000)
    parser.add_argument("--bare-sample", type=int, default=2000)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()

    work = args.workdir or Path(tempfile.mkdtemp(prefix="bastion-index-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    minilm = SentenceTransformerEmbedder(default_embedder_folder())
    minilm.embed(["warm up"])  # model load is not indexing
    hashing = HashingEmbedder(minilm)
    print(f"# Indexing benchmark ({time.strftime('%Y-%m-%d %H:%M')}, 2 shared cores; figures are noisy)\n")

    if args.docfolder_embedder != "skip":
        docfolder_states(args, work, minilm, hashing)
    if args.files:
        throughput(args, work, minilm)
    if args.resync_files:
        resync(args, work, hashing)
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def docfolder_states(
    args: argparse.Namespace, work: Path, minilm: SentenceTransformerEmbedder, hashing: HashingEmbedder
) -> None:
    """Index docfolder through the parse sandbox; print counts per state and the reasons."""
    db = _fresh_db(work / "docfolder.db")
    doc_embedder = minilm if args.docfolder_embedder == "minilm" else hashing
    library = Library(db, lambda folder: doc_embedder, default_parse_pool)
    docfolder = args.docfolder.resolve()
    library.add_collection("docfolder", [docfolder])
    seconds, files, chunks = run_sync(library, "docfolder")
    status = library.status("docfolder")[0]
    print(f"## docfolder ({docfolder}, embedder: {args.docfolder_embedder})\n")
    print(f"{files} files, {chunks} chunks in {seconds:.1f} s\n")
    print("| state | files |\n|---|---|")
    for state, count in status.counts.items():
        print(f"| {state} | {count} |")
    reasons = Counter((f.state, f.reason.split(" (")[0][:100]) for f in status.failures)
    print("\n| state | reason | files |\n|---|---|---|")
    for (state, reason), count in reasons.most_common():
        print(f"| {state} | {reason} | {count} |")
    library.close()
    sys.stdout.flush()


def throughput(args: argparse.Namespace, work: Path, minilm: SentenceTransformerEmbedder) -> None:
    """MiniLM end to end vs bare, on the same chunks."""
    corpus = work / f"corpus-{args.files}"
    if not corpus.exists():
        generate_corpus(corpus, args.files)
    library = Library(_fresh_db(work / "throughput.db"), lambda folder: minilm, default_parse_pool)
    library.add_collection("generated", [corpus])
    seconds, files, chunks = run_sync(library, "generated")
    e2e = chunks / seconds
    texts = [r[0] for r in library.db.execute(
        "SELECT text FROM chunks ORDER BY id LIMIT ?", [args.bare_sample]).fetchall()]
    bare, before = bare_now_and_before(minilm, texts)
    tokens = minilm.tokenizer().count(texts[:500])
    library.close()
    print(f"\n## Throughput: {files} generated text files, all-MiniLM-L6-v2\n")
    print("| measure | value |\n|---|---|")
    print(f"| chunks | {chunks} (mean {sum(tokens) / max(len(tokens), 1):.0f} tokens incl. specials) |")
    print(f"| end-to-end indexing | {seconds:.1f} s, {files / seconds:.2f} files/s, {e2e:.2f} chunks/s |")
    print(f"| bare embedder, same chunks ({len(texts)}, batches of {EMBED_BATCH}) | {bare:.2f} chunks/s |")
    print(f"| bare embedder as before issue 15 (encode, batch 32 per call; interleaved) | {before:.2f} chunks/s |")
    print(f"| **bare embedder now / before, same run (issue 15 target ≥ 2.00)** | **{bare / before:.2f}** "
          f"({bare / before / 2:.2f} of target) |")
    print(f"| end-to-end / bare (target ≥ 0.85) | {e2e / bare:.2f} |")
    # Issue 15: twice the chunks/s of the pipeline as measured before it (e2e 22.26 chunks/s,
    # 0.95 of the bare embedder, quiet machine). Against the pre-issue-15 bare embedder timed in
    # this run the target reads ≥ 1.90 whatever the load.
    print(f"| **end-to-end / bare before, vs issue 15's 2× (target ≥ 1.90)** | **{e2e / before / 1.90:.2f}** of target |")
    print(f"| end-to-end / 2 × 22.26 chunks/s (quiet machine) | {e2e / (2 * 22.26):.2f} of target |")
    sys.stdout.flush()


def bare_now_and_before(minilm: SentenceTransformerEmbedder, texts: list[str]) -> tuple[float, float]:
    """Chunks/s of ``minilm.embed`` and of the embedding as it was before issue 15, interleaved.

    Both see the same chunks in calls of ``EMBED_BATCH`` (as the sync makes them), slice by slice
    and in alternating order, so a shared machine's load falls on both alike. Before issue 15,
    ``embed`` was one ``encode(batch_size=32)`` per call (sentence-transformers sorts within it).
    """
    model = minilm._load()

    def before(part: list[str]) -> None:
        model.encode(part, batch_size=32, convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=False)

    ways = [minilm.embed, before]
    seconds = [0.0, 0.0]
    for n, start in enumerate(range(0, len(texts), 4 * EMBED_BATCH)):
        part = texts[start : start + 4 * EMBED_BATCH]
        for way in (0, 1) if n % 2 == 0 else (1, 0):
            began = time.perf_counter()
            for i in range(0, len(part), EMBED_BATCH):
                ways[way](part[i : i + EMBED_BATCH])
            seconds[way] += time.perf_counter() - began
    return len(texts) / seconds[0], len(texts) / seconds[1]


def resync(args: argparse.Namespace, work: Path, hashing: HashingEmbedder) -> None:
    """A sync with nothing changed over ``--resync-files`` indexed files."""
    corpus = work / f"corpus-{args.resync_files}"
    if not corpus.exists():
        generate_corpus(corpus, args.resync_files)
    library = Library(_fresh_db(work / "resync.db"), lambda folder: hashing, default_parse_pool)
    library.add_collection("resync", [corpus])
    first_s, files, _ = run_sync(library, "resync")
    library.close()
    library = Library(work / "resync.db", lambda folder: hashing, default_parse_pool)  # cold process-like
    timings = [run_sync(library, "resync") for _ in range(3)]
    library.close()
    print(f"\n## Re-sync of {files} unchanged files (first index took {first_s:.0f} s)\n")
    print("| run | seconds | files redone |\n|---|---|---|")
    for n, (secs, redone, _) in enumerate(timings, start=1):
        print(f"| {n} | {secs:.2f} | {redone} |")


def _fresh_db(path: Path) -> Path:
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    return path


if __name__ == "__main__":
    raise SystemExit(main())
