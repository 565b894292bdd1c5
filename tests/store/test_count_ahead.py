"""Counting ahead (#15): the ETA knows the chunks of files the sync has not parsed yet.

A second parse pool walks the work list ahead of the sync's parse thread, only counting chunks;
each count replaces the bytes-based guess for its file. Counting never touches the library, and
a file that breaks the counter is left to the sync.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

from bastion.store.count_ahead import (
    MIN_BYTES,
    MIN_FILES,
    CountAhead,
    lower_thread_priority,
    worth_counting,
)
from bastion.store.library import Library
from bastion.store.parse_pools import FunctionParsePool, ParseRequest
from bastion.store.parsers.fsread import FileStat
from bastion.store.parsers.types import ParseOutcome
from bastion.store.reconcile import WorkItem
from bastion.store.sync_progress import ProgressMeter

from .fakes import CountingParser, HashingEmbedder

pytestmark = pytest.mark.timeout(120)
_FALLBACK_S = 20.0


def _item(doc_id: int, path: Path | str, size: int) -> WorkItem:
    return WorkItem(doc_id, str(path), str(path), None, "pending", FileStat(size, 0))


def test_a_count_ahead_replaces_the_guess_from_bytes() -> None:
    files = [_item(i, f"/d/{i}", 1_000) for i in range(4)]
    meter = ProgressMeter(files, max_file_bytes=10_000)
    meter.parsed(0, 0, 50)  # plain text: 0.05 chunks a byte
    assert meter.chunks_expected == 200, "before any count, 0.05 a byte for the 3,000 unread bytes"
    meter.counted(2, 1)  # a scanned PDF, counted ahead: 1 chunk, not 50
    meter.counted(3, 4)
    # 50 parsed + 1 + 4 counted; file 1, neither parsed nor counted, at (50 + 5) / 3,000 a byte.
    assert meter.chunks_expected == round(55 + 1_000 * 55 / 3_000)
    meter.parsed(2, 0, 1)  # the sync reaches file 2: its count is not ahead any more
    assert meter.chunks_expected == round(55 + 1_000 * 55 / 3_000), "never counted twice"
    meter.parsed(1, 0, 7)
    meter.parsed(3, 0, 4)
    assert meter.chunks_expected == 62


def test_counts_that_come_too_late_or_for_unknown_files_are_ignored() -> None:
    files = [_item(i, f"/d/{i}", 1_000) for i in range(2)]
    meter = ProgressMeter(files, max_file_bytes=10_000)
    meter.parsed(0, 0, 10)
    meter.counted(0, 999)  # the sync parsed it first: its real count stands
    meter.counted(7, 999)  # not in this pass
    meter.counted(1, 3)
    meter.counted(1, 999)  # counted once
    assert meter.chunks_expected == 13


def _tokenizer() -> object:
    return HashingEmbedder().tokenizer()


def _write(folder: Path, sizes: dict[str, int]) -> list[WorkItem]:
    folder.mkdir()
    items = []
    for i, (name, words) in enumerate(sizes.items()):
        path = folder / name
        path.write_text("Tides turn the harbour lights. " * words)
        items.append(_item(i + 1, path, path.stat().st_size))
    return items


def test_counts_only_files_past_the_sync_and_never_the_broken(tmp_path: Path) -> None:
    items = _write(tmp_path / "docs", {"a.txt": 5, "b.txt": 400, "c.txt": 30, "huge.txt": 3_000, "bad.txt": 5})
    parser = CountingParser()

    def crash(path: Path) -> ParseOutcome:
        return ParseOutcome(status="crashed", reason="the parser process died")

    parser.hooks["bad.txt"] = crash
    counts: dict[int, int] = {}
    counter = CountAhead(
        items, parser.pool, frontier=lambda: 0, stop=threading.Event(),
        on_count=counts.__setitem__, max_file_bytes=50_000,
    )
    counter.run(_tokenizer(), 64)  # type: ignore[arg-type]
    assert "a.txt" not in parser.calls, "the sync's parse thread already began the first file"
    assert "huge.txt" not in parser.calls, "too large for the sync: not read"
    by_name = {Path(i.path).name: counts.get(i.doc_id) for i in items}
    assert by_name["bad.txt"] is None, "a file that crashes the counter is not counted"
    assert by_name["c.txt"] is not None and by_name["b.txt"] is not None
    assert by_name["b.txt"] > by_name["c.txt"] > 0
    assert counter.counted == 2


def test_counting_stops_with_the_sync(tmp_path: Path) -> None:
    items = _write(tmp_path / "docs", {f"{i}.txt": 5 for i in range(6)})
    stop = threading.Event()
    parser = CountingParser()
    parser.hooks["2.txt"] = lambda path: stop.set()
    counter = CountAhead(items, parser.pool, lambda: -1, stop, lambda d, c: None, 50_000)
    counter.run(_tokenizer(), 64)  # type: ignore[arg-type]
    assert parser.calls == ["0.txt", "1.txt", "2.txt"]


def test_a_pool_that_cannot_start_leaves_the_estimate_to_the_bytes(tmp_path: Path) -> None:
    items = _write(tmp_path / "docs", {"a.txt": 5, "b.txt": 5})

    def broken() -> FunctionParsePool:
        raise RuntimeError("no worker")

    CountAhead(items, broken, lambda: -1, threading.Event(), lambda d, c: None, 50_000).run(
        _tokenizer(), 64  # type: ignore[arg-type]
    )  # returns; a count is a hint, never a reason to fail


def test_only_a_long_enough_pass_is_counted() -> None:
    assert not worth_counting([_item(1, "/d/a", MIN_BYTES * 10)], 10**12), "one file: nothing ahead"
    assert not worth_counting([_item(i, f"/d/{i}", 10) for i in range(MIN_FILES - 1)], 10**12)
    assert worth_counting([_item(i, f"/d/{i}", 10) for i in range(MIN_FILES)], 10**12)
    big = [_item(1, "/d/a", MIN_BYTES), _item(2, "/d/b", 10)]
    assert worth_counting(big, 10**12)
    assert not worth_counting(big, MIN_BYTES - 1), "a file skipped as too large weighs nothing"


def _scan(path: Path) -> ParseOutcome | None:
    if path.name.startswith("scan"):
        return ParseOutcome(status="skipped", reason="This PDF has no text layer (a scan?).")
    return None


def test_a_sync_that_counts_ahead_knows_the_chunks_to_come(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(MIN_FILES):
        (docs / f"c-note{i:02}.txt").write_text(f"Note {i} on lighthouses. " * 4)
        (docs / f"scan{i:02}.txt").write_bytes(b"%PDF-1.4 " + bytes(range(256)) * 80)
    names = {p.name for p in docs.iterdir()}
    counted, release = threading.Event(), threading.Event()
    counter = CountingParser()
    counter.hooks = dict.fromkeys(names, _scan)

    class CountPool(FunctionParsePool):
        def parse_many(self, paths: Iterable[Path | ParseRequest]) -> Iterator[tuple[Path, ParseOutcome]]:
            yield from super().parse_many(paths)
            counted.set()  # every count is handed in

    parser = CountingParser()

    def hold_the_second(path: Path) -> ParseOutcome | None:
        if len(parser.calls) == 2:
            # The sync's parse thread waits on its second file until every file past it is
            # counted and the test has seen an event made after that.
            counted.wait(_FALLBACK_S)
            release.wait(_FALLBACK_S)
        return _scan(path)

    parser.hooks = dict.fromkeys(names, hold_the_second)
    seen, after_count = None, False
    with Library(tmp_path / "library.db", lambda folder: HashingEmbedder(), parser.pool,
                 count_pool_factory=lambda: CountPool(counter)) as lib:
        lib.add_collection("docs", [docs])
        events = []
        for event in lib.sync():  # the sync runs in this thread, between two events
            events.append(event)
            if after_count and seen is None:
                seen = event
                release.set()
            after_count = counted.is_set() and not release.is_set()
    done = events[-1]
    assert seen is not None, "an event came while the sync waited on its second file, all others counted"
    assert seen.chunks_expected is not None and abs(seen.chunks_expected - done.chunks) <= 1
    first = docs / parser.calls[0]
    rate = (0 if first.name.startswith("scan") else 1) / first.stat().st_size
    unread = sum((docs / n).stat().st_size for n in names) - first.stat().st_size
    assert done.chunks == MIN_FILES  # a chunk a note
    assert abs(rate * unread - done.chunks) > 5, "the bytes alone would have been far off"
    assert sorted(parser.calls) == sorted(names), "the sync parsed every file itself, once"
    assert lib_counts_ok(tmp_path)


def lib_counts_ok(tmp_path: Path) -> bool:
    """Counting wrote nothing: every note indexed, every scan skipped."""
    with Library(tmp_path / "library.db", lambda folder: HashingEmbedder(), CountingParser().pool) as lib:
        counts = lib.status("docs")[0].counts
    return counts.get("indexed") == MIN_FILES and counts.get("skipped") == MIN_FILES


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="niceness per thread is Linux's")
def test_the_counting_thread_and_the_workers_it_starts_run_at_low_priority() -> None:
    seen: dict[str, int] = {}

    def body() -> None:
        before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        lower_thread_priority(10)
        seen["thread"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) - before
        child = subprocess.run(
            [sys.executable, "-c", "import os; print(os.getpriority(os.PRIO_PROCESS, 0))"],
            capture_output=True, text=True, check=True,
        )
        seen["child"] = int(child.stdout) - before

    mine = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    expected = min(10, 19 - mine)
    assert seen == {"thread": expected, "child": expected}
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == mine, "only that thread"
