"""Faults during a sync end with a state and a reason, and the sync goes on (#15).

A folder that disappears mid-sync, a file that keeps changing while it is parsed, symbolic
link loops, and a network mount that stops answering (simulated with a named pipe opened for
reading without O_NONBLOCK: ``open`` blocks until a writer comes, as a read on a stalled mount
blocks until the server answers).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from bastion.store import parse_thread, stall_guard
from bastion.store import scan as scan_module
from bastion.store.library import Library
from bastion.store.scan import scan_root

from .fakes import CountingParser, HashingEmbedder, drain

# A hang fails the test here instead of at the suite's timeout (not a speed assertion).
pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def roots(tmp_path: Path) -> tuple[Path, Path]:
    first, second = tmp_path / "usb", tmp_path / "home"
    for root, topic in ((first, "walruses"), (second, "puffins")):
        root.mkdir()
        for i in range(4):
            (root / f"{topic}{i}.txt").write_text(f"Note {i} about {topic} on the ice. " * 20)
    return first, second


@pytest.fixture
def parser() -> CountingParser:
    return CountingParser()


@pytest.fixture
def library(tmp_path: Path, roots: tuple[Path, Path], parser: CountingParser) -> Iterator[Library]:
    lib = Library(tmp_path / "library.db", lambda folder: HashingEmbedder(), parser.pool)
    lib.add_collection("docs", list(roots))
    yield lib
    lib.close()


def _docs(lib: Library, under: Path) -> dict[str, tuple[str, str]]:
    return {Path(d.path).name: (d.state, d.reason) for d in lib.documents("docs")
            if d.path.startswith(str(under) + os.sep)}


def _chunks(lib: Library) -> int:
    return int(lib.db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0])


@pytest.fixture
def fifo(tmp_path: Path) -> Iterator[Path]:
    """A named pipe; whoever opens it for reading blocks until the test lets it go."""
    path = tmp_path / "stalled-mount"
    os.mkfifo(path)
    yield path
    try:  # a reader still blocked in open() gets its writer, reads EOF and ends
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
    except OSError as error:
        assert error.errno == errno.ENXIO  # no reader left: nothing to release


def _block_on(fifo: Path) -> None:
    os.close(os.open(fifo, os.O_RDONLY))  # without O_NONBLOCK: waits for a writer


@pytest.fixture
def quick_stall(monkeypatch: pytest.MonkeyPatch) -> float:
    monkeypatch.setattr(stall_guard, "STALL_S", 0.5)
    return 0.5


def test_a_folder_that_disappears_mid_sync_keeps_its_documents_as_unavailable(
    library: Library, roots: tuple[Path, Path], parser: CountingParser
) -> None:
    usb, home = roots
    drain(library.sync())
    for i in range(4):  # every file of the drive changed: all of them are work for the next sync
        (usb / f"walruses{i}.txt").write_text(f"Edited note {i} about walruses and tusks. " * 20)
    (usb / "new.txt").write_text("A new note about narwhals.")
    chunks = _chunks(library)
    unplugged = usb.with_name("unplugged")

    def unplug(path: Path) -> None:
        if usb.exists():
            usb.rename(unplugged)

    parser.hooks.update({f"walruses{i}.txt": unplug for i in range(4)})
    parser.hooks["new.txt"] = unplug
    events = drain(library.sync())
    assert events[-1].phase == "done" and not events[-1].cancelled
    states = _docs(library, usb)
    assert set(states) == {*(f"walruses{i}.txt" for i in range(4)), "new.txt"}, "none deleted"
    assert {state for state, _ in states.values()} == {"unavailable"}
    assert all(f"The folder {usb} is gone" in reason for _, reason in states.values())
    assert _chunks(library) == chunks, "the index of the drive is kept"
    assert {s for s, _ in _docs(library, home).values()} == {"indexed"}, "the sync went on"
    assert not library.search("walruses", mode="bm25"), "not offered as sources while gone"

    unplugged.rename(usb)
    parser.hooks.clear()
    drain(library.sync())
    assert {s for s, _ in _docs(library, usb).values()} == {"indexed"}
    assert library.search("tusks", mode="bm25") and library.search("narwhals", mode="bm25")


def test_a_file_that_changes_at_every_parse_ends_skipped_with_the_reason(
    library: Library, roots: tuple[Path, Path], parser: CountingParser
) -> None:
    usb, home = roots
    target = usb / "walruses1.txt"
    edits = []

    def rewrite(path: Path) -> None:  # same size and mtime: only the hash can tell
        st = target.stat()
        edits.append(len(edits))
        target.write_text(f"Rewrite {len(edits) % 10} about walruses on the ice. ".ljust(st.st_size, "."))
        os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))

    parser.hooks["walruses1.txt"] = rewrite
    drain(library.sync())
    state, reason = _docs(library, usb)["walruses1.txt"]
    assert state == "skipped" and reason.startswith("It kept changing while being read (3 times")
    assert parser.calls.count("walruses1.txt") == 3
    others = {name: s for name, (s, _) in {**_docs(library, usb), **_docs(library, home)}.items()}
    del others["walruses1.txt"]
    assert set(others.values()) == {"indexed"}


def test_a_file_whose_size_changes_during_its_parse_is_read_again(
    library: Library, roots: tuple[Path, Path], parser: CountingParser
) -> None:
    usb, _ = roots
    target = usb / "walruses2.txt"
    parser.hooks["walruses2.txt"] = lambda path: (
        None if parser.calls.count("walruses2.txt") > 1
        else target.write_text("Shorter now: about sea lions.")
    )
    drain(library.sync())
    assert _docs(library, usb)["walruses2.txt"][0] == "indexed"
    assert parser.calls.count("walruses2.txt") == 2
    assert library.search("sea lions", mode="bm25")[0].path == str(target)


def test_symlink_loops_are_never_followed(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "b" / "leaf.txt").write_text("leaf")
    (root / "top.txt").write_text("top")
    (root / "a" / "b" / "up").symlink_to(root / "a")  # a folder link back up the tree
    (root / "a" / "self").symlink_to(".")
    (root / "a" / "b" / "ping").symlink_to(root / "a" / "pong")
    (root / "a" / "pong").symlink_to(root / "a" / "b" / "ping")
    (root / "escape").symlink_to(tmp_path)  # a folder holding the root: a loop through outside
    result = scan_root(str(root))
    assert sorted(Path(p).relative_to(root).as_posix() for p in result.files) == [
        "a/b/leaf.txt", "top.txt"]
    refused = {Path(p).name: why for p, why in result.refused.items()}
    assert "loop" in refused["ping"] and "loop" in refused["pong"]
    assert "outside" in refused["escape"]
    assert "up" not in refused and "self" not in refused  # folders already walked by their path


def test_a_read_that_never_returns_ends_unavailable_and_the_sync_goes_on(
    library: Library, roots: tuple[Path, Path], fifo: Path, quick_stall: float,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    usb, home = roots
    real = parse_thread.sha256_file

    def stalled_share(path: str, *args):  # type: ignore[no-untyped-def]
        if path.startswith(str(usb)):
            _block_on(fifo)
        return real(path, *args)

    monkeypatch.setattr(parse_thread, "sha256_file", stalled_share)
    events = drain(library.sync())
    assert events[-1].phase == "done"
    states = _docs(library, usb)
    assert {s for s, _ in states.values()} == {"unavailable"}
    reasons = sorted(reason for _, reason in states.values())
    assert sum("stopped answering for 0.5 s" in r for r in reasons) == 1  # the one that stalled
    assert sum(f"its folder {usb} stopped answering" in r for r in reasons) == 3  # not tried
    assert {s for s, _ in _docs(library, home).values()} == {"indexed"}, "the sync went on"

    monkeypatch.setattr(parse_thread, "sha256_file", real)
    drain(library.sync())
    assert {s for s, _ in _docs(library, usb).values()} == {"indexed"}


def test_a_folder_walk_that_never_returns_keeps_the_documents_and_the_sync_goes_on(
    library: Library, roots: tuple[Path, Path], fifo: Path, quick_stall: float,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    usb, home = roots
    drain(library.sync())
    chunks = _chunks(library)
    (home / "later.txt").write_text("A later note about terns.")
    real = os.scandir

    def stalled_listing(path):  # type: ignore[no-untyped-def]
        if str(path) == str(usb):
            _block_on(fifo)
        return real(path)

    monkeypatch.setattr(scan_module.os, "scandir", stalled_listing)
    events = drain(library.sync())
    assert events[-1].phase == "done"
    states = _docs(library, usb)
    assert {s for s, _ in states.values()} == {"unavailable"} and len(states) == 4
    assert all("cannot be reached (stopped answering for 0.5 s" in r for _, r in states.values())
    assert _chunks(library) > chunks, "kept, and the other folder's new file was indexed"
    assert _docs(library, home)["later.txt"][0] == "indexed"
    warnings = library.status("docs")[0].warnings
    assert warnings == ["1 folder could not be read: stopped answering for 0.5 s (a network "
                        "drive that stalled?)"]

    monkeypatch.setattr(scan_module.os, "scandir", real)
    drain(library.sync())
    assert {s for s, _ in _docs(library, usb).values()} == {"indexed"}
    assert library.status("docs")[0].warnings == []


def test_the_stall_guard_cuts_silence_only() -> None:
    import threading
    import time

    guard = stall_guard.StallGuard(stall_s=2.0)

    def slow_but_moving(tick: stall_guard.Tick) -> str:  # 1 s in all, a tick every 10 ms
        for _ in range(100):
            time.sleep(0.01)
            tick()
        return "read"

    assert guard.run(slow_but_moving) == "read"
    def denied(tick: stall_guard.Tick) -> None:
        raise PermissionError(13, "Permission denied")

    with pytest.raises(PermissionError):  # the call's own error reaches the caller
        guard.run(denied)
    release = threading.Event()
    quick = stall_guard.StallGuard(stall_s=0.2)
    with pytest.raises(stall_guard.Stalled, match=r"no answer for 0\.2 s"):
        quick.run(lambda tick: release.wait(30))
    assert quick.abandoned == 1
    assert quick.run(lambda tick: "a fresh helper answers") == "a fresh helper answers"
    release.set()
    guard.close()
    quick.close()
