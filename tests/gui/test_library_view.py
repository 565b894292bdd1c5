"""The library page over a real ``Library`` (hashing embedder, in-process parser): add, live
progress, pause/resume, cancel, the per-file table filtered by state, and remove."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from bastion.desktop.gui.library_models import (
    CollectionsModel,
    DocumentsModel,
    format_eta,
    progress_text,
)
from bastion.desktop.gui.main_window import MainWindow
from bastion.store.library_types import CollectionStatus, DocumentInfo, SyncProgress

pytestmark = pytest.mark.qt_log_ignore("propagateSizeHints")


@pytest.fixture
def library_delay() -> float:
    return 0.005  # per chunk embedded: a second or two for the folder below, enough to pause


def make_folder(root: Path, files: int = 200) -> Path:
    root.mkdir()
    for i in range(files):
        (root / f"doc{i:03}.txt").write_text(f"Document {i} talks about subject {i % 5}.\n" * 30)
    (root / "binary.txt").write_bytes(b"\x00\x01\x02 not text")
    return root


def indexed(view, name: str) -> int:
    status = view.model.status_of(name)
    return status.counts.get("indexed", 0) if status else 0


def test_add_index_pause_resume_and_failures(qtbot, window: MainWindow, tmp_path: Path) -> None:
    view = window.library_view
    names: list[list[str]] = []
    view.collections_changed.connect(names.append)
    view.add_folder(make_folder(tmp_path / "papers"), "papers")
    # Files are committed in embedding batches of 64 chunks: wait past the first batch.
    qtbot.waitUntil(lambda: view.syncing == "papers" and view.model.progress_of("papers")
                    is not None and view.model.progress_of("papers").files_done >= 70, timeout=30000)
    row = view.model.row_of("papers")
    assert "files" in view.model.index(row, 3).data()  # live progress in the table
    assert view.buttons["pause"].isEnabled()
    assert "Indexing papers" in window.library_label.text()

    with qtbot.waitSignal(view.collections_changed, timeout=20000):  # the status after the run
        view.pause()
    assert view.syncing is None and view.model.run_of("papers") == "paused"
    assert view.buttons["resume"].isEnabled() and not view.buttons["pause"].isEnabled()
    paused_at = indexed(view, "papers")
    assert 0 < paused_at < 200

    view.buttons["resume"].click()
    qtbot.waitUntil(lambda: view.syncing is None and indexed(view, "papers") == 200, timeout=60000)
    assert view.model.run_of("papers") == "idle"
    assert names and names[-1] == ["papers"]

    labels = [view.state_filter.itemText(i) for i in range(view.state_filter.count())]
    assert labels[:4] == ["All files (201)", "Not indexed (1)", "Indexed (200)", "Skipped (1)"]
    view.state_filter.setCurrentIndex(labels.index("Not indexed (1)"))
    qtbot.waitUntil(lambda: view.documents.rowCount() == 1)
    failure = view.documents.document(0)
    assert failure.path.endswith("binary.txt") and failure.state == "skipped" and failure.reason
    view.state_filter.setCurrentIndex(labels.index("Failed (0)"))
    qtbot.waitUntil(lambda: view.documents.rowCount() == 0)
    assert view.documents_label.text() == "Files of papers: failed"
    view.state_filter.setCurrentIndex(labels.index("Indexed (200)"))
    qtbot.waitUntil(lambda: view.documents.rowCount() == 200)
    view.state_filter.setCurrentIndex(0)
    qtbot.waitUntil(lambda: view.documents.rowCount() == 201)


def test_cancel_then_remove(qtbot, window: MainWindow, tmp_path: Path) -> None:
    view = window.library_view
    view.add_folder(make_folder(tmp_path / "letters"), "letters")
    qtbot.waitUntil(lambda: view.syncing == "letters" and (p := view.model.progress_of("letters"))
                    is not None and p.files_done >= 1, timeout=20000)
    view.cancel()
    qtbot.waitUntil(lambda: view.syncing is None, timeout=20000)
    assert view.model.run_of("letters") == "stopped"
    assert view.buttons["sync"].isEnabled()

    view.remove_collection("letters")
    qtbot.waitUntil(lambda: view.model.rowCount() == 0)
    assert window.chat_view.collection_names == []


def test_adding_a_second_folder_to_an_existing_collection(qtbot, window: MainWindow,
                                                         tmp_path: Path) -> None:
    view = window.library_view
    first, second = tmp_path / "a", tmp_path / "b"
    for folder in (first, second):
        folder.mkdir()
        (folder / "note.txt").write_text(f"A note in {folder.name}.\n")
    view.add_folder(first, "notes")
    qtbot.waitUntil(lambda: view.syncing is None and indexed(view, "notes") == 1, timeout=20000)
    view.add_folder(second, "notes")
    qtbot.waitUntil(lambda: view.syncing is None and indexed(view, "notes") == 2, timeout=20000)
    assert len(view.model.status_of("notes").roots) == 2


def test_adding_a_missing_folder_says_why(qtbot, window: MainWindow, reporter,
                                          tmp_path: Path) -> None:
    window.library_view.add_folder(tmp_path / "nowhere", "ghost")
    qtbot.waitUntil(lambda: bool(reporter.shown))
    assert reporter.shown[-1].known and "nowhere" in reporter.shown[-1].text


def test_library_models_pass_the_model_tester(qtmodeltester) -> None:
    collections = CollectionsModel()
    status = CollectionStatus("b", ["/x"], {"indexed": 2, "failed": 1}, 10, [], "e")
    collections.set_statuses([status, CollectionStatus("a", ["/y"], {"pending": 3}, 0, [], None)])
    collections.set_progress(SyncProgress("b", "index", 1, 3, 5, 1.0, 5.0, 2.0))
    assert collections.index(1, 3).data() == "33% · 1/3 files, 5 chunks"
    assert "failed" in collections.index(1, 6).data()
    qtmodeltester.check(collections)
    collections.set_statuses([status])
    qtmodeltester.check(collections)

    documents = DocumentsModel()
    documents.set_documents([DocumentInfo(1, "b", "/x/f.pdf", "failed", "It is encrypted.", 1,
                                          10, 1, None, "pdf", None, 0, None)])
    assert documents.index(0, 3).data() == "It is encrypted."
    qtmodeltester.check(documents)


def test_eta_reads_naturally() -> None:
    assert format_eta(None) == "—"
    assert format_eta(42) == "42 s"
    assert format_eta(125) == "2 min 05 s"
    assert format_eta(3 * 3600 + 60) == "3 h 01 min"


def test_a_collection_with_unreadable_folders_says_so_on_its_row() -> None:
    from bastion.store.library_types import FolderWarning

    collections = CollectionsModel()
    locked = [FolderWarning(f"/x/private{i}", "permission denied",
                            f"/x/private{i} could not be read: permission denied") for i in range(3)]
    collections.set_statuses([CollectionStatus("b", ["/x"], {"indexed": 2}, 10, [], "e",
                                               unreadable_folders=locked)])
    assert "⚠ 3 folders could not be read: permission denied" in collections.index(0, 6).data()
    assert "/x/private2" in collections.index(0, 0).data(Qt.ItemDataRole.ToolTipRole)


def _parsing_report(**changes: object) -> SyncProgress:
    base: dict[str, object] = dict(
        collection="papers", phase="index", files_done=1530, files_total=2423, chunks=9000,
        files_per_s=3.0, chunks_per_s=40.0, eta_s=125.0, current="/d/report.pdf",
        bytes_done=40 * 2**20, bytes_total=100 * 2**20, bytes_per_s=12.3 * 2**20,
        files_before=1210, action="parsing", action_s=14.0,
    )
    base.update(changes)
    return SyncProgress(**base)  # type: ignore[arg-type]


def test_a_first_sync_lists_its_files_and_counts_while_it_runs(
    qtbot, window: MainWindow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    view = window.library_view
    seen: list[tuple[str | None, int, str]] = []
    show = view._snapshot

    def spy(snapshot: object) -> None:
        show(snapshot)  # type: ignore[arg-type]
        row = view.model.row_of("papers")
        seen.append((view.syncing, view.documents.rowCount(), view.model.index(row, 1).data()))

    monkeypatch.setattr(view, "_snapshot", spy)
    view.add_folder(make_folder(tmp_path / "papers"), "papers")
    qtbot.waitUntil(lambda: view.syncing is None and indexed(view, "papers") == 200, timeout=60000)
    assert seen, "the page heard of the files during the sync"
    syncing, rows, files = seen[0]
    assert syncing == "papers" and rows == 201, "every file listed while the first sync ran"
    assert files.endswith("of 201 indexed") and not files.startswith("200 ")


def test_progress_names_the_file_at_work_and_goes_by_bytes(window: MainWindow) -> None:
    view = window.library_view
    view._progress(_parsing_report())
    assert view.progress.value() / view.progress.maximum() == 0.4  # bytes, not 1,530 of 2,423
    assert view.progress_label.text() == (
        "Indexing papers: 40% · 2,740 of 3,633 files · parsing report.pdf · 14 s · "
        "2 min 05 s left (1,210 of 3,633 files done before this sync)")


def test_progress_columns_show_bytes_per_second_and_what_was_done_before() -> None:
    collections = CollectionsModel()
    collections.set_statuses([CollectionStatus("papers", ["/d"], {"indexed": 1210}, 10, [], "e")])
    collections.set_progress(_parsing_report())
    assert collections.index(0, 3).data() == "40% · 2,740/3,633 files, 9,000 chunks"
    assert collections.index(0, 4).data().startswith("12.3 MiB/s, 3.0 files/s")
    assert collections.index(0, 5).data() == "2 min 05 s"


def test_progress_text_while_the_model_loads_and_without_an_estimate() -> None:
    loading = _parsing_report(action="loading", action_s=3.0, current=None)
    assert progress_text(loading) == "Indexing papers: loading the embedding model · 3 s"
    fresh = _parsing_report(files_before=0, eta_s=None, action=None, current=None)
    assert progress_text(fresh) == "Indexing papers: 40% · 1,530 of 2,423 files"
    counted = _parsing_report(files_before=0, eta_s=None, action=None, current=None, chunks_expected=21_480)
    assert progress_text(counted) == "Indexing papers: 40% · 1,530 of 2,423 files · 9,000 of ~21,480 chunks"
