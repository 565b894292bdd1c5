"""A file swapped between the scan and the read (SECURITY.md "Filesystem").

The scan saw a regular file; before it is hashed or parsed it becomes a FIFO, a symbolic link out
of the folder, a link to /dev/zero, a device node, another file, or a file that keeps growing.
Each ends skipped or failed with a reason, the sync finishes (a hang fails the test within
seconds, not at the suite's timeout), and nothing outside the folder is read.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bastion.store import library as library_module
from bastion.store.library import Library
from bastion.store.parse_pools import ParseRequest
from bastion.store.parse_worker import ParsePool
from bastion.store.parsers import FileStat, fsread, parse_file
from bastion.store.parsers.fsread import sha256_file
from bastion.store.parsers.verdicts import FileChanged, FileSkipped

from .fakes import CountingParser, HashingEmbedder, drain

SECRET = "nightjar-quartz-secret"
# Long enough for any honest sync of a few files; a hang (a FIFO opened for reading, /dev/zero
# read to the end) fails the test here instead of at the suite's timeout. Not a speed assertion.
pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    root = tmp_path / "docs"
    root.mkdir()
    (root / "alpha.txt").write_text("Alpha talks about apples and orchards.\n")
    (root / "victim.txt").write_text("An innocent note about victims of swaps.\n")
    return root


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    path = tmp_path / "outside" / "shadow"
    path.parent.mkdir()
    path.write_text(f"root:{SECRET}:19000:0:99999:7:::\n")
    return path


@pytest.fixture
def parser() -> CountingParser:
    return CountingParser()


@pytest.fixture
def library(tmp_path: Path, docs: Path, parser: CountingParser) -> Iterator[Library]:
    lib = Library(tmp_path / "library.db", lambda folder: HashingEmbedder(), parser.pool)
    lib.add_collection("docs", [docs])
    yield lib
    lib.close()


def after_each_scan(monkeypatch: pytest.MonkeyPatch, swap: Callable[[int], None]) -> None:
    """Run ``swap(n)`` right after the n-th scan of a sync (n from 1), before any read."""
    real = library_module.reconcile
    scans = []

    def reconcile_then_swap(db, collection_id, **options):  # type: ignore[no-untyped-def]
        work = real(db, collection_id, **options)
        scans.append(1)
        swap(len(scans))
        return work

    monkeypatch.setattr(library_module, "reconcile", reconcile_then_swap)


def sync_within_guard(lib: Library) -> None:
    """Sync to the end (``pytestmark`` fails the test if that hangs)."""
    drain(lib.sync("docs"))


def victim(lib: Library) -> tuple[str, str, str | None]:
    doc = next(d for d in lib.documents("docs") if d.path.endswith("victim.txt"))
    return doc.state, doc.reason, doc.sha256


def assert_nothing_outside_was_read(lib: Library, parser: CountingParser, secret: Path) -> None:
    secret_sha = hashlib.sha256(secret.read_bytes()).hexdigest()
    assert all(d.sha256 != secret_sha for d in lib.documents("docs"))
    assert lib.search(SECRET, mode="bm25") == []
    assert parser.calls == ["alpha.txt"]


def test_fifo_swapped_in_after_the_scan_is_skipped_without_blocking(
    library: Library, docs: Path, parser: CountingParser, monkeypatch: pytest.MonkeyPatch
) -> None:
    def swap(n: int) -> None:
        (docs / "victim.txt").unlink()
        os.mkfifo(docs / "victim.txt")

    after_each_scan(monkeypatch, swap)
    sync_within_guard(library)
    state, reason, sha = victim(library)
    assert (state, reason, sha) == ("skipped", "not a regular file (a named pipe (FIFO))", None)
    assert parser.calls == ["alpha.txt"]


def test_symlink_out_of_the_folder_swapped_in_is_not_followed(
    library: Library, docs: Path, secret: Path, parser: CountingParser, monkeypatch: pytest.MonkeyPatch
) -> None:
    def swap(n: int) -> None:
        (docs / "victim.txt").unlink()
        (docs / "victim.txt").symlink_to(secret)

    after_each_scan(monkeypatch, swap)
    sync_within_guard(library)
    assert victim(library) == ("skipped", "symbolic link (links are not followed)", None)
    assert_nothing_outside_was_read(library, parser, secret)


def test_link_to_dev_zero_swapped_in_is_not_read(
    library: Library, docs: Path, parser: CountingParser, monkeypatch: pytest.MonkeyPatch
) -> None:
    def swap(n: int) -> None:
        (docs / "victim.txt").unlink()
        (docs / "victim.txt").symlink_to("/dev/zero")

    after_each_scan(monkeypatch, swap)
    sync_within_guard(library)
    assert victim(library) == ("skipped", "symbolic link (links are not followed)", None)


def test_device_node_swapped_in_is_not_opened(
    library: Library, docs: Path, parser: CountingParser, monkeypatch: pytest.MonkeyPatch
) -> None:
    try:
        os.mknod(docs / "probe", stat.S_IFCHR | 0o600, os.makedev(1, 5))
    except (PermissionError, OSError):
        pytest.skip("creating device nodes needs CAP_MKNOD")
    (docs / "probe").unlink()

    def swap(n: int) -> None:
        (docs / "victim.txt").unlink()
        os.mknod(docs / "victim.txt", stat.S_IFCHR | 0o600, os.makedev(1, 5))  # /dev/zero

    after_each_scan(monkeypatch, swap)
    sync_within_guard(library)
    assert victim(library) == ("skipped", "not a regular file (a device)", None)


def test_file_replaced_by_another_after_the_scan_is_read_again(
    library: Library, docs: Path, parser: CountingParser, monkeypatch: pytest.MonkeyPatch
) -> None:
    def swap(n: int) -> None:
        if n == 1:  # an editor saving by rename: a new file (new inode) under the old name
            replacement = docs / ".victim.swp"
            replacement.write_text("A rewritten note about pelicans.\n")
            replacement.replace(docs / "victim.txt")

    after_each_scan(monkeypatch, swap)
    sync_within_guard(library)
    state, _, sha = victim(library)
    assert state == "indexed"
    assert sha == hashlib.sha256((docs / "victim.txt").read_bytes()).hexdigest()
    assert library.search("pelicans", mode="bm25")[0].path.endswith("victim.txt")


@pytest.fixture
def small_margin(monkeypatch: pytest.MonkeyPatch) -> int:
    """A 1 KiB growth margin, so growing files stay small (the logic is the same)."""
    monkeypatch.setattr(fsread, "GROWTH_MARGIN", 1024)
    return 1024


def test_file_that_keeps_growing_ends_skipped_with_a_reason(
    library: Library, docs: Path, parser: CountingParser, monkeypatch: pytest.MonkeyPatch,
    small_margin: int,
) -> None:
    def grow(n: int) -> None:
        with (docs / "victim.txt").open("ab") as handle:
            handle.write(b"more log lines\n" * (small_margin // 10))

    after_each_scan(monkeypatch, grow)
    sync_within_guard(library)
    state, reason, sha = victim(library)
    assert state == "skipped" and sha is None
    assert reason.startswith("It kept changing while being read (3 times in this sync)")
    assert "victim.txt" not in parser.calls
    # Once it stops growing, the next sync indexes it.
    monkeypatch.undo()
    sync_within_guard(library)
    assert victim(library)[0] == "indexed"


def test_file_that_grew_once_is_indexed_after_a_fresh_scan(
    library: Library, docs: Path, monkeypatch: pytest.MonkeyPatch, small_margin: int
) -> None:
    def grow(n: int) -> None:
        if n == 1:
            with (docs / "victim.txt").open("ab") as handle:
                handle.write(b"appended line about herons\n" * (small_margin // 20))

    after_each_scan(monkeypatch, grow)
    sync_within_guard(library)
    assert victim(library)[0] == "indexed"
    assert library.search("herons", mode="bm25")


# -- the opener itself -------------------------------------------------------------------------


def test_hash_refuses_a_different_file_under_the_same_name(tmp_path: Path) -> None:
    path = tmp_path / "note.txt"
    path.write_text("same words")
    seen = FileStat.of(os.stat(path))
    path.rename(tmp_path / "old.txt")  # kept, so its inode cannot be reused
    path.write_text("same words")  # same content, size and name; another inode
    with pytest.raises(FileChanged, match="replaced by another file"):
        sha256_file(path, seen)


def test_hash_of_a_file_grown_endless_stops_at_the_bound(tmp_path: Path) -> None:
    path = tmp_path / "log.txt"
    path.write_text("small at scan time\n")
    seen = FileStat.of(os.stat(path))
    with path.open("r+b") as handle:
        handle.truncate(1 << 40)  # a sparse terabyte: unbounded reading would never end
    with pytest.raises(FileChanged, match="grew from"):
        sha256_file(path, seen, max_bytes=1 << 41)


def test_hash_stops_when_the_file_grows_during_the_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "log.txt"
    path.write_bytes(b"x" * 1000)
    seen = FileStat.of(os.stat(path))
    real_read = os.read
    served = []

    def endless(fd: int, n: int) -> bytes:  # as if the file grew faster than it is read
        data = real_read(fd, n) or b"y" * n
        served.append(len(data))
        return data

    monkeypatch.setattr(fsread.os, "read", endless)
    with pytest.raises(FileChanged, match="kept growing"):
        sha256_file(path, seen)
    assert sum(served) == seen.read_bound() + 1


def test_fifo_swapped_in_between_check_and_open_does_not_block(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "note.txt"
    path.write_text("regular at scan time")
    real_check = fsread.check_regular_file

    def check_then_swap(checked: Path, max_bytes: int) -> os.stat_result:
        info = real_check(checked, max_bytes)
        checked.unlink()
        os.mkfifo(checked)
        return info

    monkeypatch.setattr(fsread, "check_regular_file", check_then_swap)
    with pytest.raises(FileSkipped, match="named pipe"):
        sha256_file(path)


def test_parse_insists_on_the_file_the_scan_saw(tmp_path: Path, secret: Path) -> None:
    path = tmp_path / "note.txt"
    path.write_text("the note the scan saw")
    seen = FileStat.of(os.stat(path))
    assert parse_file(path, expected=seen).status == "ok"
    path.unlink()
    os.link(secret, path)  # a hard link: a regular file, but not the one the scan saw
    outcome = parse_file(path, expected=seen)
    assert outcome.status == "failed"
    assert outcome.reason == "it was replaced by another file after the folder was scanned"
    assert outcome.document is None


def test_parse_worker_gets_what_the_scan_saw(tmp_path: Path, secret: Path) -> None:
    kept = tmp_path / "kept.txt"
    kept.write_text("a note that stays put")
    swapped = tmp_path / "swapped.txt"
    swapped.write_text("a note that is swapped")
    requests = [ParseRequest(p, FileStat.of(os.stat(p))) for p in (kept, swapped)]
    swapped.unlink()
    os.link(secret, swapped)
    with ParsePool(workers=1) as pool:
        results = dict(pool.parse_many(requests))
    assert results[kept].status == "ok"
    assert results[swapped].status == "failed"
    assert "replaced by another file" in results[swapped].reason
    assert SECRET not in repr(results[swapped])
