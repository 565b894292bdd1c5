"""Incremental sync: unchanged files cost a stat; changes, deletions, vanished roots and bad inputs."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from bastion.store import parse_thread
from bastion.store.errors import StoreError
from bastion.store.library import Library
from bastion.store.parsers.types import ParseOutcome

from .fakes import CountingParser, HashingEmbedder, drain


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    root = tmp_path / "docs"
    root.mkdir()
    (root / "alpha.txt").write_text("# Alpha\n\nAlpha talks about apples and orchards.\n")
    (root / "beta.md").write_text("# Beta\n\nBeta explains bicycles and gears.\n")
    sub = root / "sub"
    sub.mkdir()
    (sub / "gamma.txt").write_text("Gamma is about glaciers.\fPage two covers gravel.\n")
    return root


@pytest.fixture
def parser() -> CountingParser:
    return CountingParser()


@pytest.fixture
def embedder() -> HashingEmbedder:
    return HashingEmbedder()


@pytest.fixture
def library(tmp_path: Path, docs: Path, parser: CountingParser, embedder: HashingEmbedder):
    lib = Library(tmp_path / "library.db", lambda folder: embedder, parser.pool)
    lib.add_collection("docs", [docs])
    yield lib
    lib.close()


def _states(lib: Library) -> dict[str, str]:
    return {Path(d.path).name: d.state for d in lib.documents("docs")}


def _chunk_rows(lib: Library) -> int:
    return int(lib.db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0])


def test_first_sync_indexes_everything_with_pages(library: Library, parser: CountingParser) -> None:
    events = drain(library.sync())
    assert events[-1].phase == "done" and events[-1].files_done == 3
    assert _states(library) == {"alpha.txt": "indexed", "beta.md": "indexed", "gamma.txt": "indexed"}
    status = library.status("docs")[0]
    assert status.counts["indexed"] == 3 and status.chunks == _chunk_rows(library) > 0
    gamma = library.documents("docs", ["indexed"])[-1]
    assert gamma.pages == 2 and gamma.sha256 and gamma.chunk_count == 2
    pages = library.db.execute(
        "SELECT DISTINCT page FROM chunks WHERE document_id = ?", [gamma.id]
    ).fetchall()
    assert {p[0] for p in pages} == {1, 2}
    assert sorted(parser.calls) == ["alpha.txt", "beta.md", "gamma.txt"]
    # Each chunk has exactly one vector, and FTS mirrors chunks.
    assert library.db.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0] == _chunk_rows(library)
    assert library.db.execute("SELECT COUNT(*) FROM chunks_fts").fetchone()[0] == _chunk_rows(library)


def test_unchanged_resync_does_no_work(library: Library, parser: CountingParser, embedder: HashingEmbedder) -> None:
    drain(library.sync())
    parsed, embedded = len(parser.calls), embedder.embedded
    events = drain(library.sync())
    assert len(parser.calls) == parsed and embedder.embedded == embedded
    assert events[-1].files_done == 0


def test_changed_file_is_reindexed_atomically(library: Library, docs: Path) -> None:
    drain(library.sync())
    before = {d.path: d.sha256 for d in library.documents("docs")}
    target = docs / "alpha.txt"
    target.write_text("# Alpha\n\nNow it is about avocados only.\n")
    drain(library.sync())
    after = {d.path: d.sha256 for d in library.documents("docs")}
    assert after[str(target)] != before[str(target)]
    assert [h.path for h in library.search("avocados", k=1)] == [str(target)]
    assert library.search("orchards", k=5, mode="bm25") == []


def test_touched_but_same_content_only_updates_mtime(library: Library, docs: Path, parser: CountingParser) -> None:
    drain(library.sync())
    target = docs / "beta.md"
    st = target.stat()
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    parsed = len(parser.calls)
    drain(library.sync())
    assert len(parser.calls) == parsed
    doc = next(d for d in library.documents("docs") if d.path == str(target))
    assert doc.mtime_ns == st.st_mtime_ns + 5_000_000_000 and doc.state == "indexed"


def test_deleted_file_leaves_the_index(library: Library, docs: Path) -> None:
    drain(library.sync())
    chunks_before = _chunk_rows(library)
    (docs / "sub" / "gamma.txt").unlink()
    drain(library.sync())
    assert "gamma.txt" not in _states(library)
    assert _chunk_rows(library) < chunks_before
    assert library.search("glaciers", mode="bm25") == []


def test_vanished_root_marks_unavailable_then_restores(library: Library, docs: Path, parser: CountingParser) -> None:
    drain(library.sync())
    chunks = _chunk_rows(library)
    parked = docs.with_name("parked")
    docs.rename(parked)
    drain(library.sync())
    assert set(_states(library).values()) == {"unavailable"}
    assert _chunk_rows(library) == chunks, "kept, not deleted"
    assert library.search("glaciers") == [], "unreachable files are not offered as sources"
    reasons = {f.reason for f in library.status("docs")[0].failures}
    assert any("cannot be reached" in r for r in reasons)
    parsed = len(parser.calls)
    parked.rename(docs)
    drain(library.sync())
    assert set(_states(library).values()) == {"indexed"}
    assert len(parser.calls) == parsed, "came back without re-parsing"
    assert library.search("glaciers", k=1)[0].path.endswith("gamma.txt")


def test_filesystem_oddities_are_skipped_with_reasons(tmp_path: Path, library: Library, docs: Path, parser: CountingParser) -> None:
    outside = tmp_path / "secret.txt"
    outside.write_text("top secret outside the root")
    (docs / "link-out.txt").symlink_to(outside)
    (docs / "loop-a").symlink_to(docs / "loop-b")
    (docs / "loop-b").symlink_to(docs / "loop-a")
    (docs / "dirloop").symlink_to(docs)
    (docs / "link-in.txt").symlink_to(docs / "alpha.txt")
    os.mkfifo(docs / "pipe")
    drain(library.sync())
    states = _states(library)
    assert states["link-out.txt"] == "skipped"
    assert states["loop-a"] == "skipped" and states["loop-b"] == "skipped"
    assert states["pipe"] == "skipped"
    # Reads never follow links: a link inside the folder names a file indexed under its own name.
    assert states["link-in.txt"] == "skipped" and states["alpha.txt"] == "indexed"
    assert "dirloop" not in states
    reasons = {Path(f.path).name: f.reason for f in library.status("docs")[0].failures}
    assert "alpha.txt in the same folder" in reasons["link-in.txt"]
    assert "outside" in reasons["link-out.txt"]
    assert "loop" in reasons["loop-a"]
    assert "regular file" in reasons["pipe"]
    assert "secret.txt" not in parser.calls and "pipe" not in parser.calls
    assert library.search("secret", mode="bm25") == []


def test_permission_denied_file_fails_with_reason(library: Library, docs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = parse_thread.sha256_file

    def deny(path: str, *args):  # type: ignore[no-untyped-def]
        if path.endswith("beta.md"):
            raise PermissionError(13, "Permission denied", path)
        return real(path, *args)

    monkeypatch.setattr(parse_thread, "sha256_file", deny)
    drain(library.sync())
    states = _states(library)
    assert states["beta.md"] == "failed" and states["alpha.txt"] == "indexed"
    failure = next(f for f in library.status("docs")[0].failures if f.path.endswith("beta.md"))
    assert "Permission denied" in failure.reason


def test_unlistable_folder_keeps_its_documents(library: Library, docs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    drain(library.sync())
    from bastion.store import scan as scan_module

    real = os.scandir

    def deny(path):  # type: ignore[no-untyped-def]
        if str(path).endswith("sub"):
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(scan_module.os, "scandir", deny)
    drain(library.sync())
    assert _states(library)["gamma.txt"] == "unavailable"
    monkeypatch.setattr(scan_module.os, "scandir", real)
    drain(library.sync())
    assert _states(library)["gamma.txt"] == "indexed"


def test_file_deleted_between_scan_and_read(library: Library, docs: Path, parser: CountingParser) -> None:
    # Files at the root are scanned (and so queued) before those of sub/.
    parser.hooks["alpha.txt"] = lambda path: (docs / "sub" / "gamma.txt").unlink()
    drain(library.sync())
    states = _states(library)
    assert "gamma.txt" not in states and states["alpha.txt"] == "indexed"


def test_file_rewritten_during_parse_is_read_again(library: Library, docs: Path, parser: CountingParser) -> None:
    target = docs / "alpha.txt"
    rewritten = []

    def rewrite(path: Path) -> None:
        if not rewritten:
            rewritten.append(True)
            st = target.stat()
            target.write_text("# Alpha\n\nRewritten: about apricots!!\n")  # same size or not, mtime kept
            os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))

    parser.hooks["alpha.txt"] = rewrite
    drain(library.sync())
    doc = next(d for d in library.documents("docs") if d.path == str(target))
    assert parser.calls.count("alpha.txt") == 2
    assert doc.state == "indexed"
    import hashlib

    assert doc.sha256 == hashlib.sha256(target.read_bytes()).hexdigest()
    assert library.search("apricots", k=1, mode="bm25")[0].path == str(target)


def test_parser_crashes_three_times_quarantine(library: Library, docs: Path, parser: CountingParser) -> None:
    parser.hooks["beta.md"] = lambda path: ParseOutcome("crashed", "the parser crashed on this file")
    for attempt in (1, 2):
        drain(library.sync())
        doc = next(d for d in library.documents("docs") if d.path.endswith("beta.md"))
        assert doc.state == "pending" and doc.attempts == attempt
    drain(library.sync())
    doc = next(d for d in library.documents("docs") if d.path.endswith("beta.md"))
    assert doc.state == "quarantined" and "3 times" in doc.reason
    calls = parser.calls.count("beta.md")
    drain(library.sync())
    assert parser.calls.count("beta.md") == calls, "quarantined files are not retried"
    # A new version of the file gets a fresh chance.
    del parser.hooks["beta.md"]
    (docs / "beta.md").write_text("# Beta\n\nFixed now.\n")
    drain(library.sync())
    assert _states(library)["beta.md"] == "indexed"


def test_binary_and_empty_files_are_skipped_with_reasons(library: Library, docs: Path) -> None:
    (docs / "blob.txt").write_bytes(b"\x00\x01\x02binary")
    (docs / "empty.txt").write_text("")
    drain(library.sync())
    states = _states(library)
    assert states["blob.txt"] == "skipped" and states["empty.txt"] == "skipped"
    reasons = {Path(f.path).name: f.reason for f in library.status("docs")[0].failures}
    assert "binary" in reasons["blob.txt"] and "No text" in reasons["empty.txt"]


def test_odd_file_names(library: Library, docs: Path) -> None:
    raw = os.path.join(os.fsencode(docs), b"caf\xe9-latin1.txt")
    with open(raw, "wb") as handle:
        handle.write(b"A file whose name is not UTF-8 mentions marmalade.")
    long_name = "l" * 240 + ".txt"
    (docs / long_name).write_text("A very long name about kumquats.")
    drain(library.sync())
    states = library.documents("docs")
    assert all(d.state == "indexed" for d in states)
    assert any("caf\ufffd-latin1.txt" in d.path for d in states)
    assert library.search("marmalade", k=1)[0].path.endswith("caf\ufffd-latin1.txt")
    assert library.search("kumquats", k=1)[0].path.endswith(long_name)
    os.unlink(raw)
    drain(library.sync())
    assert not any("latin1" in d.path for d in library.documents("docs"))


def test_changing_the_embedder_rebuilds_the_collection(tmp_path: Path, docs: Path, parser: CountingParser) -> None:
    current = {"embedder": HashingEmbedder(dimension=64, name="one")}
    lib = Library(tmp_path / "library.db", lambda folder: current["embedder"], parser.pool)
    lib.add_collection("docs", [docs])
    drain(lib.sync())
    lib.close()
    current["embedder"] = HashingEmbedder(dimension=32, name="two")
    lib = Library(tmp_path / "library.db", lambda folder: current["embedder"], parser.pool)
    assert lib.status("docs")[0].stale
    # Before the rebuild, vector search skips the collection instead of mixing models.
    assert all(h.vector_rank is None for h in lib.search("glaciers"))
    drain(lib.sync())
    info = lib.collection("docs")
    assert info.embedder_id == "two-32" and info.dimension == 32
    blobs = lib.db.execute("SELECT DISTINCT length(vector) FROM embeddings").fetchall()
    assert blobs == [(32 * 4,)]
    assert lib.search("glaciers", k=1)[0].vector_rank is not None
    lib.close()


def test_cancel_stops_cleanly_and_resume_does_not_redo(tmp_path: Path, parser: CountingParser) -> None:
    root = tmp_path / "many"
    root.mkdir()
    for i in range(30):
        (root / f"f{i:02}.txt").write_text(f"Document {i} about topic{i}. " * 20)
    embedder = HashingEmbedder()
    lib = Library(tmp_path / "library.db", lambda folder: embedder, parser.pool)
    lib.add_collection("many", [root])
    events = lib.sync()
    for event in events:
        if event.phase == "index" and event.files_done >= 5:
            events.close()
            break
    docs = lib.documents("many")
    assert not any(d.state == "in_progress" for d in docs)
    assert all(d.attempts == 0 for d in docs), "a cancel is not a crash"
    done_before = {d.path for d in docs if d.state == "indexed"}
    assert 5 <= len(done_before) < 30
    parser.calls.clear()
    drain(lib.sync())
    assert all(d.state == "indexed" for d in lib.documents("many"))
    assert not done_before & {str(root / c) for c in parser.calls}, "finished documents not redone"
    lib.close()


def test_unknown_collection_and_bad_folder_are_clear_errors(library: Library, tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no collection named 'nope'"):
        drain(library.sync("nope"))
    with pytest.raises(StoreError, match="does not exist"):
        library.add_collection("x", [tmp_path / "missing"])
    with pytest.raises(StoreError, match="exists already"):
        library.add_collection("docs", [tmp_path])


def test_remove_collection_drops_its_index(library: Library) -> None:
    drain(library.sync())
    library.remove_collection("docs")
    assert library.collections() == []
    for table in ("documents", "chunks", "embeddings", "chunks_fts", "folders"):
        assert library.db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0] == 0


def test_locked_database_gives_a_clear_error(tmp_path: Path, library: Library, monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess
    import sys
    import time

    db_path = tmp_path / "library.db"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sqlite3, sys, time\n"
         f"c = sqlite3.connect({str(db_path)!r}, isolation_level=None)\n"
         "c.execute('BEGIN IMMEDIATE'); print('locked', flush=True); time.sleep(30)"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        monkeypatch.setattr("bastion.store.db.BUSY_TIMEOUT_MS", 300)
        library.db.execute("PRAGMA busy_timeout = 300")
        started = time.monotonic()
        with pytest.raises(StoreError, match="busy: another Bastion process"):
            library.add_folder("docs", tmp_path)
        assert time.monotonic() - started < 20
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()
    library.add_folder("docs", tmp_path)  # fine once the other process is gone


def test_integrity_after_sync(library: Library) -> None:
    drain(library.sync())
    assert library.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    library.db.execute("INSERT INTO chunks_fts(chunks_fts) VALUES ('integrity-check')")
    assert isinstance(library.db.conn, sqlite3.Connection)


def _hidden_entries(root: Path) -> None:
    """A git checkout's worth of hidden things: .git with objects, .github, a dotfile."""
    objects = root / ".git" / "objects" / "ab"
    objects.mkdir(parents=True)
    for i in range(20):
        (objects / f"{i:038x}").write_text(f"blob {i} hovercraft")
    (root / ".git" / "config").write_text("[core]\n\tbare = false\n")
    (root / ".github").mkdir()
    (root / ".github" / "workflow.yml").write_text("on: push  # hovercraft")
    (root / "sub" / ".env").write_text("SECRET=hovercraft")


def test_hidden_folders_and_files_are_skipped_unlisted_and_counted(
    library: Library, docs: Path, parser: CountingParser
) -> None:
    _hidden_entries(docs)
    drain(library.sync())
    assert set(_states(library)) == {"alpha.txt", "beta.md", "gamma.txt"}  # nothing listed
    assert not any(".git" in call or call == ".env" for call in parser.calls)  # nor read
    status = library.status("docs")[0]
    assert (status.hidden_folders, status.hidden_files) == (2, 1)
    assert status.hidden_note == "2 hidden folders and 1 hidden file skipped"
    assert status.failures == [] and not library.search("hovercraft", mode="bm25")


def test_index_hidden_setting_indexes_them_and_turning_it_off_drops_them(
    tmp_path: Path, docs: Path, parser: CountingParser, embedder: HashingEmbedder
) -> None:
    _hidden_entries(docs)
    with Library(tmp_path / "library.db", lambda f: embedder, parser.pool, index_hidden=True) as lib:
        lib.add_collection("docs", [docs])
        drain(lib.sync())
        names = {Path(d.path).relative_to(docs).as_posix() for d in lib.documents("docs", ["indexed"])}
        assert {".git/config", ".github/workflow.yml", "sub/.env"} <= names and len(names) == 26
        assert lib.status("docs")[0].hidden_note is None
        assert lib.search("hovercraft", mode="bm25")
    with Library(tmp_path / "library.db", lambda f: embedder, parser.pool) as lib:
        drain(lib.sync())
        assert set(_states(lib)) == {"alpha.txt", "beta.md", "gamma.txt"}
        assert not lib.search("hovercraft", mode="bm25")  # their chunks left with them
        assert lib.status("docs")[0].hidden_note == "2 hidden folders and 1 hidden file skipped"


def test_a_hidden_folder_chosen_as_the_root_is_indexed(
    tmp_path: Path, parser: CountingParser, embedder: HashingEmbedder
) -> None:
    root = tmp_path / ".notes"
    root.mkdir()
    (root / "plan.txt").write_text("The plan mentions zeppelins.")
    with Library(tmp_path / "library.db", lambda f: embedder, parser.pool) as lib:
        lib.add_collection("notes", [root])
        drain(lib.sync())
        assert [d.state for d in lib.documents("notes")] == ["indexed"]
