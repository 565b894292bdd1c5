"""``bastion library …`` and ``bastion search`` through the real CLI entry point."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from bastion.desktop import library as use_case
from bastion.desktop.cli import main
from bastion.store.library_types import SyncProgress
from tests.store.fakes import CountingParser, HashingEmbedder


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "notes"
    root.mkdir()
    (root / "boats.txt").write_text("# Boats\n\nCatamarans have two hulls and sail fast.\n")
    (root / "soup.txt").write_text("# Soup\n\nMinestrone is an Italian vegetable soup.\n")
    (root / "blob.txt").write_bytes(b"\x00\x00binary")
    return root


def test_add_status_search_remove(fake_parts: CountingParser, folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["library", "add", "notes", str(folder)]) == 0
    err = capsys.readouterr().err
    assert "notes: 3 files" in err and "chunks/s" in err

    assert main(["library", "status"]) == 0
    out = capsys.readouterr().out
    assert "indexed: 2" in out and "skipped: 1" in out
    assert "blob.txt" in out and "binary" in out

    assert main(["search", "catamaran hulls", "-k", "1"]) == 0
    captured = capsys.readouterr()
    assert "boats.txt" in captured.out and "score" in captured.out and "Catamarans" in captured.out
    assert "query embedding" in captured.err

    assert main(["search", "minestrone", "--collection", "notes"]) == 0
    assert "soup.txt" in capsys.readouterr().out

    assert main(["library", "sync", "notes"]) == 0
    assert "notes: 0 files" in capsys.readouterr().err

    assert main(["library", "remove", "notes"]) == 0
    capsys.readouterr()
    assert main(["library", "status"]) == 0
    assert "No collections" in capsys.readouterr().out


def test_errors_are_one_line_messages(fake_parts: CountingParser, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["library", "sync", "nope"]) == 1
    assert "no collection named 'nope'" in capsys.readouterr().err
    assert main(["library", "add", "x", str(tmp_path / "missing")]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert main(["search", "x", "--collection", "nope"]) == 1


def test_ctrl_c_stops_cleanly_and_next_sync_resumes(
    fake_parts: CountingParser, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "many"
    root.mkdir()
    for i in range(20):
        (root / f"f{i:02}.txt").write_text(f"File {i} text. " * 30)
    # Ctrl-C lands in the main thread, between two progress events.
    original = use_case.Library.sync

    def sync_with_ctrl_c(self, name=None, cancel=None):  # type: ignore[no-untyped-def]
        for event in original(self, name, cancel):
            yield event
            if event.files_done >= 5:
                raise KeyboardInterrupt

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(use_case.Library, "sync", sync_with_ctrl_c)
        assert main(["library", "add", "many", str(root)]) == 130
    assert "resumes" in capsys.readouterr().err
    with use_case.open_library() as library:
        states = [d.state for d in library.documents("many")]
        assert "in_progress" not in states and 5 <= states.count("indexed") < 20
    assert main(["library", "sync"]) == 0
    with use_case.open_library() as library:
        assert {d.state for d in library.documents("many")} == {"indexed"}


def test_watch_picks_up_a_change_within_seconds(fake_parts: CountingParser, folder: Path) -> None:
    with use_case.open_library() as library:
        use_case.add_collection(library, "notes", [folder])
        stop = threading.Event()
        events = use_case.watch(library, "notes", cancel=stop, reconcile_s=3600, debounce_s=0.3)
        syncs = 0
        written_at = None
        for event in events:
            if isinstance(event, SyncProgress) and event.phase == "done":
                syncs += 1
                if syncs == 1:
                    (folder / "new.txt").write_text("Fresh note about hovercraft.")
                    written_at = time.monotonic()
                elif library.search("hovercraft", k=1, mode="bm25"):
                    break
            if written_at and time.monotonic() - written_at > 20:
                pytest.fail("the change was not picked up within 20 s")
        stop.set()
        events.close()
        assert library.search("hovercraft", k=1)[0].path.endswith("new.txt")
        assert time.monotonic() - written_at < 20  # type: ignore[operator]


@pytest.mark.slow
def test_real_parse_workers_with_pdf_and_docx(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.store.document_factory import write_docx, write_pdf

    embedder = HashingEmbedder()
    monkeypatch.setattr(use_case, "default_embedder", lambda folder: embedder)
    root = tmp_path / "office"
    root.mkdir()
    write_pdf(root / "manual.pdf", ["Page one is about turbines.", "Page two covers propellers.", "Page three: rudders."])
    write_docx(root / "memo.docx")
    (root / "bad.pdf").write_bytes(b"%PDF-1.4 truncated garbage")
    assert main(["library", "add", "office", str(root)]) == 0
    with use_case.open_library() as library:
        states = {Path(d.path).name: d for d in library.documents("office")}
        assert states["manual.pdf"].state == "indexed" and states["manual.pdf"].pages == 3
        assert states["memo.docx"].state == "indexed"
        assert states["bad.pdf"].state in {"failed", "skipped"} and states["bad.pdf"].reason
        hit = library.search("propellers", k=1)[0]
        assert hit.path.endswith("manual.pdf") and hit.page == 2


def test_status_names_the_folders_it_could_not_read() -> None:
    from bastion.desktop.cli.library_cmd import format_status
    from bastion.store.library_types import CollectionStatus, FolderWarning

    status = CollectionStatus("docs", ["/d"], {"indexed": 1}, 3, [], "e", unreadable_folders=[
        FolderWarning("/d/a", "permission denied", "/d/a could not be read: permission denied"),
        FolderWarning("/d/b", "permission denied", "/d/b could not be read: permission denied")])
    assert "Warning: 2 folders could not be read: permission denied" in format_status(status)


def test_files_lists_every_file_with_its_state_and_reason(
    fake_parts: CountingParser, folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    assert main(["library", "add", "notes", str(folder), "--no-sync"]) == 0
    assert main(["library", "sync"]) == 0
    capsys.readouterr()

    assert main(["library", "files", "notes"]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines[0].split() == ["STATE", "CHUNKS", "FILE"]
    rows = {line.split()[2]: line for line in lines[1:]}
    assert set(rows) == {"blob.txt", "boats.txt", "soup.txt"}  # relative to the one folder
    assert rows["boats.txt"].startswith("indexed") and rows["blob.txt"].startswith("skipped")
    assert "binary" in rows["blob.txt"]
    assert "[3 files in notes]" in captured.err

    assert main(["library", "files", "notes", "--state", "skipped", "--json"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(Path(r["path"]).name, r["state"]) for r in records] == [("blob.txt", "skipped")]
    assert "binary" in records[0]["reason"] and records[0]["chunk_count"] == 0

    assert main(["library", "files", "notes", "--state", "failed"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and "[0 failed files in notes]" in captured.err


def test_files_refuses_an_unknown_collection_or_state(
    fake_parts: CountingParser, folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["library", "add", "notes", str(folder), "--no-sync"]) == 0
    capsys.readouterr()
    assert main(["library", "files", "nope"]) == 1
    assert "no collection named 'nope'" in capsys.readouterr().err
    assert main(["library", "files", "notes", "--state", "broken"]) == 1
    err = capsys.readouterr().err
    assert "no file state 'broken'" in err and "indexed, skipped, failed, quarantined" in err


def test_status_as_json_lines(fake_parts: CountingParser, folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    assert main(["library", "add", "notes", str(folder)]) == 0
    assert main(["library", "add", "more", str(folder), "--no-sync"]) == 0
    capsys.readouterr()
    assert main(["library", "status", "--json"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["name"] for r in records] == ["more", "notes"]
    notes = records[1]
    assert notes["counts"]["indexed"] == 2 and notes["counts"]["skipped"] == 1
    assert notes["roots"] == [str(folder)] and notes["chunks"] > 0 and notes["warnings"] == []
    assert [Path(f["path"]).name for f in notes["failures"]] == ["blob.txt"]


def test_hidden_entries_are_counted_in_status_and_the_setting_indexes_them(
    fake_parts: CountingParser, folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from bastion.desktop.paths import data_paths
    from bastion.desktop.settings import Settings

    (folder / ".git").mkdir()
    (folder / ".git" / "HEAD").write_text("ref: refs/heads/main")
    (folder / ".bashrc").write_text("alias ll='ls -l'")
    assert main(["library", "add", "notes", str(folder)]) == 0
    assert main(["library", "status"]) == 0
    out = capsys.readouterr().out
    assert "1 hidden folder and 1 hidden file skipped (set index_hidden to index them)." in out
    assert ".bashrc" not in out and "HEAD" not in out

    Settings(index_hidden=True).save(data_paths().settings_file)
    assert main(["library", "sync"]) == 0
    assert main(["library", "files", "notes", "--state", "indexed"]) == 0
    out = capsys.readouterr().out
    assert ".bashrc" in out and ".git/HEAD" in out


def test_watch_ignores_changes_inside_hidden_folders() -> None:
    from bastion.desktop.library import _under_hidden

    assert _under_hidden("/d", "/d/.git/objects/ab/cd")
    assert _under_hidden("/d", "/d/sub/.env")
    assert not _under_hidden("/d/.notes", "/d/.notes/plan.txt")  # a chosen root may be hidden
    assert not _under_hidden("/d", "/d/sub/plan.txt")
