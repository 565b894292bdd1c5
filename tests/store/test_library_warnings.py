"""Nothing disappears silently: unreadable folders, unreachable roots, files over the size limit.

Root reads every folder whatever its mode, so permission denied is injected at ``os.scandir``
(one test uses real modes and skips as root).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from bastion.store import scan as scan_module
from bastion.store.library import Library

from .fakes import CountingParser, HashingEmbedder, drain


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    root = tmp_path / "docs"
    root.mkdir()
    (root / "alpha.txt").write_text("Alpha talks about apples and orchards.\n")
    for name in ("hr", "legal", "board"):
        (root / name).mkdir()
        (root / name / f"{name}.txt").write_text(f"The {name} folder holds minutes about {name}.\n")
    return root


@pytest.fixture
def parser() -> CountingParser:
    return CountingParser()


@pytest.fixture
def library(tmp_path: Path, docs: Path, parser: CountingParser) -> Iterator[Library]:
    lib = Library(tmp_path / "library.db", lambda folder: HashingEmbedder(), parser.pool)
    lib.add_collection("docs", [docs])
    yield lib
    lib.close()


def deny_listing(monkeypatch: pytest.MonkeyPatch, names: set[str]) -> None:
    real = os.scandir

    def scandir(path):  # type: ignore[no-untyped-def]
        if Path(path).name in names:
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(scan_module.os, "scandir", scandir)


def test_unreadable_folders_are_warnings_in_the_status(
    library: Library, docs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    deny_listing(monkeypatch, {"hr", "legal", "board"})
    drain(library.sync())
    status = library.status("docs")[0]
    assert status.warnings == ["3 folders could not be read: permission denied"]
    assert [Path(f.path).name for f in status.unreadable_folders] == ["board", "hr", "legal"]
    assert all(f.cause == "permission denied" for f in status.unreadable_folders)
    # The folders are listed with the failures, in words a person can act on...
    reasons = {Path(f.path).name: f.reason for f in status.failures}
    assert reasons["hr"].startswith("This folder could not be read (permission denied)")
    # ...but counted as folders, not as documents.
    assert status.counts["indexed"] == 1 and status.counts["failed"] == 0


def test_a_folder_that_becomes_readable_again_is_indexed_and_its_warning_goes(
    library: Library, docs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    deny_listing(monkeypatch, {"legal"})
    drain(library.sync())
    assert library.status("docs")[0].warnings == ["1 folder could not be read: permission denied"]
    monkeypatch.undo()
    drain(library.sync())
    status = library.status("docs")[0]
    assert status.warnings == [] and status.unreadable_folders == []
    assert status.counts["indexed"] == 4 and status.failures == []


def test_an_indexed_folder_that_turns_unreadable_keeps_its_documents_and_warns(
    library: Library, docs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    drain(library.sync())
    deny_listing(monkeypatch, {"board"})
    drain(library.sync())
    status = library.status("docs")[0]
    assert status.warnings == ["1 folder could not be read: permission denied"]
    assert status.counts["unavailable"] == 1 and status.counts["indexed"] == 3


def test_different_causes_are_separate_warnings(
    library: Library, docs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = os.scandir

    def scandir(path):  # type: ignore[no-untyped-def]
        name = Path(path).name
        if name in {"hr", "legal"}:
            raise PermissionError(13, "Permission denied", str(path))
        if name == "board":
            raise OSError(5, "Input/output error", str(path))
        return real(path)

    monkeypatch.setattr(scan_module.os, "scandir", scandir)
    drain(library.sync())
    assert library.status("docs")[0].warnings == [
        "2 folders could not be read: permission denied",
        "1 folder could not be read: input/output error",
    ]


def test_unreachable_root_is_a_warning(library: Library, docs: Path) -> None:
    drain(library.sync())
    moved = docs.with_name("unplugged")
    docs.rename(moved)
    drain(library.sync())
    status = library.status("docs")[0]
    assert status.warnings == ["1 folder could not be read: no such file or directory"]
    assert status.counts["unavailable"] == 4
    moved.rename(docs)
    drain(library.sync())
    status = library.status("docs")[0]
    assert status.warnings == [] and status.counts["indexed"] == 4


@pytest.mark.skipif(os.geteuid() == 0, reason="root lists folders whatever their mode")
def test_unreadable_folder_for_real(library: Library, docs: Path) -> None:
    (docs / "hr").chmod(0)
    try:
        drain(library.sync())
        assert library.status("docs")[0].warnings == ["1 folder could not be read: permission denied"]
    finally:
        (docs / "hr").chmod(0o755)


# -- the size limit ---------------------------------------------------------------------------


def test_file_over_the_size_limit_is_skipped_unread_with_its_size_and_the_limit(
    tmp_path: Path, docs: Path, parser: CountingParser
) -> None:
    (docs / "huge.log").write_bytes(b"log line\n" * 35_000)  # 0.3 MB
    lib = Library(
        tmp_path / "library.db", lambda folder: HashingEmbedder(), parser.pool,
        max_file_bytes=100_000,
    )
    lib.add_collection("docs", [docs])
    drain(lib.sync())
    doc = next(d for d in lib.documents("docs") if d.path.endswith("huge.log"))
    assert doc.state == "skipped"
    assert doc.reason == "too large (0.3 MB; the limit is 0.1 MB)"
    assert "huge.log" not in parser.calls
    lib.close()
    # A raised limit takes effect at the next sync, though the file did not change.
    lib = Library(
        tmp_path / "library.db", lambda folder: HashingEmbedder(), parser.pool,
        max_file_bytes=1_000_000,
    )
    drain(lib.sync())
    doc = next(d for d in lib.documents("docs") if d.path.endswith("huge.log"))
    assert doc.state == "indexed" and "huge.log" in parser.calls
    lib.close()


# -- huge documents ---------------------------------------------------------------------------


def test_a_document_over_the_chunk_cap_is_indexed_in_part_with_a_warning(
    library: Library, docs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bastion.store import parse_thread

    monkeypatch.setattr(parse_thread, "DEFAULT_MAX_CHUNKS", 5)
    (docs / "long.txt").write_text("A sentence about herons and their nests. " * 400)
    drain(library.sync())
    doc = next(d for d in library.documents("docs") if d.path.endswith("long.txt"))
    assert doc.state == "indexed" and doc.chunk_count == 5
    assert doc.reason.startswith("only the first 5 chunks (to character ")
    assert doc.reason.endswith("of the text) are indexed; the rest was left out")


def test_a_long_document_reports_progress_while_it_is_embedded(
    library: Library, docs: Path
) -> None:
    from bastion.store.sync import EMBED_BATCH

    (docs / "long.txt").write_text("Words about herons and their nests. " * 3_000)
    events = [e for e in drain(library.sync()) if e.phase == "index"]
    long_doc = next(d for d in library.documents("docs") if d.path.endswith("long.txt"))
    batches = long_doc.chunk_count // EMBED_BATCH
    assert batches >= 5
    during = {e.chunks for e in events if e.current and e.current.endswith("long.txt")}
    assert len(during) >= batches  # a new count after every batch: never silent
