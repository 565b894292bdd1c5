"""Sync progress benchmark (#15): how live the events are, and how good the ETA is.

Usage:
    .venv/bin/python bench/sync_progress_bench.py [--small 60] [--big-kb 400] [--hash-files 2000]

A folder of ``--small`` short notes and one ``--big-kb`` file (placed in the middle) is indexed
with the real parts: sandboxed parse workers and the MiniLM embedder. Printed as Markdown:

- gaps between progress events (the window and the CLI redraw on each): largest and p95;
- the ETA at a quarter and at half of the run, against the time the run really took from
  there, for the bytes-based estimate the sync reports and a files-based one computed from the
  same events (what it used to report);
- the cost of the stall guard: hashing ``--hash-files`` small files directly and through
  ``StallGuard`` (a helper-thread hand-off per file).

``--replay FOLDER`` measures instead how well the ETA's guess of the chunks still to come holds
on a real, mixed folder (``../shared/data/docfolder``): every file is parsed (sandboxed) and
chunked with MiniLM's tokenizer, nothing is embedded, and the files are fed to
the meter's rule one by one, in path order and in two shuffled orders. At 10, 25, 50 and 75% of
the bytes, the chunks expected from the files not read yet are set against the chunks those
files really make: by one chunks-per-byte rate for all files read so far (what
``ProgressMeter`` does) and by a rate per kind of file (its extension; tried, not kept: no
better on the docfolder, see the README).

``--live FOLDER`` syncs FOLDER for real twice, each time into a new library: once with the
ETA guessing the chunks of files not parsed yet from their bytes, once counting them ahead
(``store/count_ahead.py``). At 10, 25, 50 and 75% of each run it sets the end the ETA
promised against the real end, and the chunks it expected against the chunks made; it also
prints each run's time and CPU seconds (the process and its parse workers), so the cost of
counting shows.
"""

from __future__ import annotations

import argparse
import itertools
import math
import resource
import statistics
import tempfile
import time
from pathlib import Path

import bastion.desktop  # noqa: F401 - offline environment first
from bastion.desktop.library import default_embedder, default_parse_pool
from bastion.store.library import Library
from bastion.store.library_types import SyncProgress
from bastion.store.parsers.fsread import sha256_file
from bastion.store.stall_guard import StallGuard

WORDS = ["harbour", "tide", "ledger", "audit", "clause", "patient", "dose", "cohort", "river",
         "forest", "signal", "vector", "archive", "budget", "invoice", "court", "ruling",
         "contract", "energy", "battery", "market", "price"]


def _text(seed: int, chars: int) -> str:
    out, i = [], seed
    while sum(len(w) + 1 for w in out) < chars:
        out.append(WORDS[(i * 7 + i // 3) % len(WORDS)])
        i += 1
        if i % 12 == 0:
            out[-1] += ".\n"
    return " ".join(out)


def make_folder(root: Path, small: int, big_kb: int) -> None:
    root.mkdir()
    for i in range(small):
        (root / f"note{i:03}.txt").write_text(_text(i, 1500))
    (root / f"note{small // 2:03}b-big.txt").write_text(_text(999, big_kb * 1024))


def run_sync(root: Path, workdir: Path) -> tuple[list[tuple[float, SyncProgress]], float]:
    with Library(workdir / "library.db", default_embedder, default_parse_pool) as lib:
        lib.add_collection("bench", [root])
        started = time.monotonic()
        events = [(time.monotonic() - started, e) for e in lib.sync()]
        return events, time.monotonic() - started


def eta_rows(events: list[tuple[float, SyncProgress]], total: float) -> list[str]:
    index = [(t, e) for t, e in events if e.phase == "index" and e.files_total]
    rows = []
    for share in (0.25, 0.5):
        t, e = min(index, key=lambda pair: abs(pair[0] - share * total))
        left = total - t
        files_eta = ((e.files_total - e.files_done) / e.files_per_s) if e.files_per_s else None
        rows.append(
            f"| {share:.0%} of the run ({t:.1f} s) | {left:.1f} s | "
            f"{_s(e.eta_s)} | {_s(files_eta)} |"
        )
    return rows


def _brief(event: SyncProgress) -> str:
    return f"{event.phase} {event.files_done}/{event.files_total} ({event.current_label or '-'})"


def _s(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f} s"


def hash_cost(workdir: Path, files: int) -> tuple[float, float]:
    folder = workdir / "hash"
    folder.mkdir()
    paths = []
    for i in range(files):
        path = folder / f"h{i}.txt"
        path.write_text(_text(i, 2000))
        paths.append(path)
    started = time.perf_counter()
    for path in paths:
        sha256_file(path)
    direct = time.perf_counter() - started
    guard = StallGuard()
    started = time.perf_counter()
    for path in paths:
        guard.run(lambda tick, p=path: sha256_file(p, None, 1 << 30, tick))
    guarded = time.perf_counter() - started
    guard.close()
    return direct, guarded


def chunk_counts(folder: Path) -> list[tuple[str, int, int]]:
    """(path, size, chunks) of every file under ``folder``, in path order; 0 chunks for a file
    that is skipped or fails."""
    from bastion.store.chunking import chunk_pages
    from bastion.store.embedder import SentenceTransformerEmbedder, default_embedder_folder
    from bastion.store.parse_worker import ParsePool

    files = sorted(f for f in folder.rglob("*") if f.is_file() and not f.is_symlink())
    embedder = SentenceTransformerEmbedder(default_embedder_folder())
    tokenizer = embedder.tokenizer()
    out = []
    with ParsePool(workers=2, timeout_s=60.0, memory_mb=1024) as pool:
        for path, outcome in pool.parse_many(files):
            pages = outcome.document.pages if outcome.document is not None else []
            chunks = len(chunk_pages(pages, tokenizer, embedder.max_tokens)) if pages else 0
            out.append((str(path), path.stat().st_size, chunks))
    return sorted(out)


def replay_rows(files: list[tuple[str, int, int]], label: str) -> list[str]:
    """Chunks expected from the unread files against the real count, at 10/25/50/75% of the bytes."""
    total = sum(size for _, size, _ in files)
    marks, rows, read_bytes, known = [0.1, 0.25, 0.5, 0.75], [], 0, 0
    by_kind: dict[str, list[int]] = {}  # extension: [bytes read, chunks made]
    for i, (path, size, chunks) in enumerate(files):
        seen = by_kind.setdefault(Path(path).suffix.lower(), [0, 0])
        seen[0] += size
        seen[1] += chunks
        read_bytes += size
        known += chunks
        while marks and read_bytes >= marks[0] * total:
            rest = files[i + 1:]
            actual = sum(c for _, _, c in rest)
            one_rate = (total - read_bytes) * known / read_bytes
            per_kind = 0.0
            for rest_path, rest_size, _ in rest:
                b, c = by_kind.get(Path(rest_path).suffix.lower(), (0, 0))
                per_kind += rest_size * (c / b if b else known / read_bytes)
            rows.append(f"| {label} | {marks.pop(0):.0%} | {actual:,} | {one_rate:,.0f} ({_ratio(one_rate, actual)}) "
                        f"| {per_kind:,.0f} ({_ratio(per_kind, actual)}) |")
    return rows


def _ratio(guess: float, actual: int) -> str:
    return f"×{guess / actual:.2f}" if actual else "–"


def replay(folder: Path) -> None:
    import random

    files = chunk_counts(folder)
    print(f"## Chunks still to come, guessed during a sync of {folder} ({len(files)} files, "
          f"{sum(s for _, s, _ in files) / 2**20:.1f} MB, {sum(c for _, _, c in files):,} chunks)\n")
    print("| order | bytes read | chunks really to come | one rate for all files (the meter's guess for bytes not counted) | a rate per kind (tried) |")
    print("|---|---:|---:|---:|---:|")
    rows = replay_rows(files, "path order")
    for seed in (1, 2):
        shuffled = list(files)
        random.Random(seed).shuffle(shuffled)
        rows += replay_rows(shuffled, f"shuffled (seed {seed})")
    print("\n".join(rows))


def live_run(folder: Path, workdir: Path, count: bool) -> tuple[list[tuple[float, SyncProgress]], float, float]:
    """A real sync of ``folder`` into a new library: its events, wall seconds and CPU seconds."""
    pool = default_parse_pool
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    with Library(workdir / "library.db", default_embedder, pool,
                 count_pool_factory=pool if count else None) as lib:
        lib.add_collection("bench", [folder])
        started = time.monotonic()
        events = [(time.monotonic() - started, e) for e in lib.sync()]
        total = time.monotonic() - started
    after = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    cpu = sum(a.ru_utime + a.ru_stime - b.ru_utime - b.ru_stime for a, b in zip(after, usage, strict=True))
    return events, total, cpu


def live_rows(label: str, events: list[tuple[float, SyncProgress]], total: float) -> list[str]:
    """The promised end and the expected chunks at 10/25/50/75% of the run, against the real ones."""
    index = [(t, e) for t, e in events if e.phase == "index" and e.eta_s is not None and e.files_total]
    chunks = events[-1][1].chunks
    rows = []
    for share in (0.1, 0.25, 0.5, 0.75):
        t, e = min(index, key=lambda pair: abs(pair[0] - share * total))
        promised = t + (e.eta_s or 0.0)
        expected = e.chunks_expected or 0
        rows.append(f"| {label} | {share:.0%} ({t:.0f} s) | {promised:.0f} s ({promised / total:.2f}×) | "
                    f"{expected:,} ({expected / chunks:.2f}×) |" if chunks else f"| {label} | {share:.0%} | – | – |")
    errors = [abs(math.log((t + (e.eta_s or 0.0)) / total)) for t, e in index if t >= 0.05 * total and e.eta_s]
    rows.append(f"| {label} | median over the run | × {math.exp(statistics.median(errors)):.2f} off | |" if errors else "")
    return rows


def live(folder: Path) -> None:
    print(f"## Live syncs of {folder}\n")
    default_embedder(None).embed(["warm up"])  # neither run pays the model's first load
    results = []
    for count in (False, True):
        with tempfile.TemporaryDirectory() as tmp:
            events, total, cpu = live_run(folder, Path(tmp), count)
            results.append(("counted ahead" if count else "guessed from bytes", events, total, cpu))
    print("| ETA | files | chunks | wall | CPU (process + parse workers) |")
    print("|---|---:|---:|---:|---:|")
    for label, events, total, cpu in results:
        done = events[-1][1]
        print(f"| {label} | {done.files_done} | {done.chunks:,} | {total:.0f} s | {cpu:.0f} s |")
    print("\n| ETA | asked at | end promised (× real) | chunks expected (× real) |")
    print("|---|---|---:|---:|")
    for label, events, total, _ in results:
        print("\n".join(live_rows(label, events, total)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=60)
    parser.add_argument("--big-kb", type=int, default=400)
    parser.add_argument("--hash-files", type=int, default=2000)
    parser.add_argument("--replay", type=Path, default=None, help="a real folder: measure the chunks guess only")
    parser.add_argument("--live", type=Path, default=None, help="a real folder: sync it with and without counting ahead")
    args = parser.parse_args()
    if args.live is not None:
        live(args.live)
        return
    if args.replay is not None:
        replay(args.replay)
        return
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        make_folder(workdir / "docs", args.small, args.big_kb)
        events, total = run_sync(workdir / "docs", workdir)
        times = [t for t, _ in events]
        pairs = list(itertools.pairwise(range(len(times))))
        gaps = sorted(times[b] - times[a] for a, b in pairs)
        worst = max(pairs, key=lambda ab: times[ab[1]] - times[ab[0]])
        done = events[-1][1]
        print(f"## Sync of {args.small} notes + one {args.big_kb} KiB file "
              f"({done.files_done} files, {done.chunks} chunks, {total:.1f} s)\n")
        print("| events | largest gap | p95 gap | median gap |")
        print("|---:|---:|---:|---:|")
        p95 = gaps[int(0.95 * (len(gaps) - 1))]
        print(f"| {len(events)} | {gaps[-1]:.2f} s | {p95:.2f} s | {statistics.median(gaps):.2f} s |\n")
        before, after = (events[i][1] for i in worst)
        print(f"Largest gap between: {_brief(before)} → {_brief(after)}\n")
        labels = [e.current_label for _, e in events if e.current_label]
        big = [lab for lab in labels if "big" in lab]
        print(f"Events naming the big file: {len(big)} (last: {big[-1] if big else '—'})\n")
        print("| asked at | really left | ETA reported | ETA by files (before #15) |")
        print("|---|---:|---:|---:|")
        print("\n".join(eta_rows(events, total)))
        direct, guarded = hash_cost(workdir, args.hash_files)
        print(f"\n## Hashing {args.hash_files} files of 2 KB\n")
        print("| direct | through StallGuard | per file added |")
        print("|---:|---:|---:|")
        print(f"| {direct:.3f} s | {guarded:.3f} s | {(guarded - direct) / args.hash_files * 1e6:.0f} µs |")


if __name__ == "__main__":
    main()
