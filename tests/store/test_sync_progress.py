"""Sync progress that tells the truth (#15): by bytes, live while one big file takes its time,
and a resumed sync starts from what is already done.

"Live" is proven without clocks: a fake part blocks until the test has seen a progress event
naming it, so the test only passes if events keep coming while that part is still at work
(a fallback timeout keeps a failure from hanging the suite).
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from bastion.store.library import Library
from bastion.store.library_types import SyncProgress
from bastion.store.parsers.fsread import FileStat
from bastion.store.reconcile import WorkItem
from bastion.store.sync_progress import PARSE_SHARE, ProgressMeter

from .fakes import CountingParser, HashingEmbedder, drain

pytestmark = pytest.mark.timeout(120)
_FALLBACK_S = 20.0


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    root = tmp_path / "docs"
    root.mkdir()
    for i in range(6):
        (root / f"note{i}.txt").write_text(f"Note {i} about lighthouses and tides. " * (10 + 40 * i))
    return root


@pytest.fixture
def parser() -> CountingParser:
    return CountingParser()


def _library(tmp_path: Path, embedder: HashingEmbedder, parser: CountingParser, **options: int) -> Library:
    return Library(tmp_path / "library.db", lambda folder: embedder, parser.pool, **options)


def _index_events(events: list[SyncProgress]) -> list[SyncProgress]:
    return [e for e in events if e.phase == "index"]


def test_progress_counts_bytes_and_never_goes_back(
    tmp_path: Path, docs: Path, parser: CountingParser
) -> None:
    (docs / "huge.txt").write_text("x" * 20_000)
    with _library(tmp_path, HashingEmbedder(), parser, max_file_bytes=10_000) as lib:
        lib.add_collection("docs", [docs])
        events = drain(lib.sync())
    sizes = sum(p.stat().st_size for p in docs.iterdir() if p.name != "huge.txt")
    index = _index_events(events)
    assert {e.bytes_total for e in index} == {sizes}, "a file skipped unread as too large weighs nothing"
    done = [e.bytes_done for e in index]
    assert done == sorted(done) and done[-1] == sizes
    fractions = [e.fraction for e in index]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert events[-1].phase == "done" and events[-1].bytes_done == sizes


def test_eta_follows_bytes_not_files() -> None:
    small = WorkItem(1, "/d/a.txt", "/d/a.txt", None, "pending", FileStat(1_000, 0))
    big = WorkItem(2, "/d/b.pdf", "/d/b.pdf", None, "pending", FileStat(9_000, 0))
    meter = ProgressMeter([small, big], max_file_bytes=10_000)
    meter.settled(1)  # one file of two is done, but a tenth of the bytes
    rate, eta = meter.measure(meter.started + 10.0)
    assert rate == pytest.approx(100.0)
    assert eta == pytest.approx(90.0)  # a file-based estimate would say 10 s
    meter.parsed(2, 0, 6)
    assert meter.bytes_done == 1_000 + 9_000 * PARSE_SHARE
    meter.parsed(2, 3, 6)
    assert meter.bytes_done == 1_000 + 9_000 * (PARSE_SHARE + (1 - PARSE_SHARE) / 2)
    meter.settled(2)
    assert meter.bytes_done == 10_000 and meter.measure(meter.started + 20.0)[1] == 0.0


def test_eta_waits_for_the_slower_of_parsing_and_embedding() -> None:
    files = [WorkItem(i, f"/d/{i}", f"/d/{i}", None, "pending", FileStat(1_000, 0)) for i in range(4)]
    meter = ProgressMeter(files, max_file_bytes=10_000)
    meter.parsed(0, 0, 50)
    meter.parsed(1, 0, 50)  # half the bytes parsed at once, 100 chunks waiting
    meter.parsed(0, 10, 50)  # but only 10 chunks embedded in 10 s: 1 chunk/s
    _, eta = meter.measure(meter.started + 10.0)
    # 90 chunks known + 2,000 unparsed bytes × 0.05 chunks/byte = 190 chunks at 1 chunk/s,
    # far more than the 10 s the unparsed bytes need at the parse rate (200 bytes/s).
    assert eta == pytest.approx(190.0)


def test_labels_say_what_is_done_to_which_file() -> None:
    event = SyncProgress("docs", "index", 3, 10, 0, 0.0, 0.0, None, current="/home/a/report.pdf",
                         action="parsing", action_s=14.2, files_before=1210)
    assert event.current_label == "parsing report.pdf · 14 s"
    event = SyncProgress("docs", "index", 0, 2423, 0, 0.0, 0.0, None, files_before=1210)
    assert event.before_note == "1,210 of 3,633 files done before this sync"
    assert SyncProgress("docs", "index", 0, 5, 0, 0.0, 0.0, None).before_note is None
    # Old callers that build events positionally still work; no bytes: by files.
    assert SyncProgress("b", "index", 1, 4, 5, 1.0, 5.0, 2.0).fraction == 0.25


class GatedEmbedder(HashingEmbedder):
    """Blocks its first batch until ``release`` is set (or the fallback runs out)."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.released_in_time = False

    def embed(self, texts: list[str]) -> NDArray[np.float32]:
        if self.embedded == 0:
            self.released_in_time = self.release.wait(_FALLBACK_S)
        return super().embed(texts)


def test_progress_keeps_coming_while_one_batch_is_embedded(
    tmp_path: Path, docs: Path, parser: CountingParser
) -> None:
    embedder = GatedEmbedder()
    seen: list[SyncProgress] = []
    with _library(tmp_path, embedder, parser) as lib:
        lib.add_collection("docs", [docs])
        for event in lib.sync():
            seen.append(event)
            if event.action == "embedding" and event.chunks == 0:
                embedder.release.set()  # a heartbeat came while the first batch was running
    assert embedder.released_in_time
    beat = next(e for e in seen if e.action == "embedding" and e.chunks == 0)
    assert beat.current_label is not None and beat.current_label.startswith("embedding note")


def test_progress_names_the_file_being_parsed_while_it_takes_its_time(
    tmp_path: Path, docs: Path, parser: CountingParser
) -> None:
    release = threading.Event()
    waited: list[bool] = []
    parser.hooks["note3.txt"] = lambda path: waited.append(release.wait(_FALLBACK_S))
    seen: list[SyncProgress] = []
    with _library(tmp_path, HashingEmbedder(), parser) as lib:
        lib.add_collection("docs", [docs])
        for event in lib.sync():
            seen.append(event)
            if event.action == "parsing" and (event.current or "").endswith("note3.txt"):
                release.set()
    assert waited == [True]
    beat = next(e for e in seen if e.action == "parsing" and (e.current or "").endswith("note3.txt"))
    assert beat.current_label is not None and beat.current_label.startswith("parsing note3.txt · ")


class SlowLoadingEmbedder(HashingEmbedder):
    """Its model "loads" (``dimension``) until ``release`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.released_in_time: bool | None = None

    @property  # type: ignore[override]
    def dimension(self) -> int:
        if self.released_in_time is None:
            self.released_in_time = self.release.wait(_FALLBACK_S)
        return 64

    @dimension.setter
    def dimension(self, value: int) -> None:
        pass


def test_progress_keeps_coming_while_the_model_loads(
    tmp_path: Path, docs: Path, parser: CountingParser
) -> None:
    embedder = SlowLoadingEmbedder()
    with _library(tmp_path, embedder, parser) as lib:
        lib.add_collection("docs", [docs])
        for event in lib.sync():
            if event.action == "loading":
                assert event.current_label is not None
                assert event.current_label.startswith("loading the embedding model")
                embedder.release.set()
        assert embedder.released_in_time
        assert {d.state for d in lib.documents("docs")} == {"indexed"}


def test_a_resumed_sync_starts_from_what_is_done(
    tmp_path: Path, docs: Path, parser: CountingParser
) -> None:
    with _library(tmp_path, HashingEmbedder(), parser) as lib:
        lib.add_collection("docs", [docs])
        events = lib.sync()
        for event in events:
            if event.phase == "index" and event.files_done >= 2:
                events.close()
                break
        done = [d for d in lib.documents("docs") if d.state == "indexed"]
        assert 2 <= len(done) < 6
        resumed = drain(lib.sync())
    first = _index_events(resumed)[0]
    assert first.files_before == len(done) and first.files_total == 6 - len(done)
    assert first.bytes_before == sum(d.size or 0 for d in done)
    assert first.before_note == f"{len(done)} of 6 files done before this sync"
    assert first.fraction > 0.0, "a resumed sync does not start its bar at zero"
    assert resumed[-1].files_before == len(done)


def test_a_stage_held_back_by_the_other_still_gets_an_estimate() -> None:
    files = [WorkItem(i, f"/d/{i}", f"/d/{i}", None, "pending", FileStat(1_000, 0)) for i in range(2)]
    meter = ProgressMeter(files, max_file_bytes=10_000)
    meter.parsed(0, 0, 100)  # parsed at once; then parsing waits while these 100 chunks embed
    meter.measure(meter.started + 1.0)
    meter.parsed(0, 40, 100)
    _, eta = meter.measure(meter.started + 40.0)  # nothing parsed in the last 30 s
    # Parsing's average (1,000 bytes in 40 s) stands in: the estimate is not "unknown". The
    # window (from 1 s on) saw 40 chunks embedded in 39 s; 60 + 100 (the unparsed file's
    # likely share) are left.
    assert eta == pytest.approx(max(1_000 / 25.0, (60 + 100) / (40 / 39)))
