"""A citation shows its passage in full beside the chat, and opens the document at its page."""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path

import pytest
from PySide6.QtCore import QUrl
from pytestqt.qtbot import QtBot

from bastion.desktop.gui.chat_view import ChatView
from bastion.desktop.gui.main_window import MainWindow
from bastion.desktop.gui.message_view import link_citations, render_markdown
from bastion.desktop.open_document import NO_PAGE_VIEWER, OpenPlan, open_document
from bastion.desktop.source_preview import SourcePreview
from bastion.store.chats import Source
from tests.gui.conftest import RecordingReporter
from tests.gui.fakes import StreamingEngine

pytestmark = pytest.mark.qt_log_ignore("propagateSizeHints")

FILLER = " ".join(f"Page one sentence {i} talks about nothing much." for i in range(12))
# One sentence of 254 characters in 62 of the fake embedder's 64 tokens: one chunk, longer than
# the 240-character snippet an answer keeps.
CITED = ("The pump warranty runs seven years from the day of sale if the owner signs up within "
         "ninety days and keeps the bill, and all later fixes are done on site by a known tech, "
         "with parts sent free to any home in the land, so no one pays for a part or a visit.")
AFTER = " ".join(f"Closing sentence {i} on page two." for i in range(8))


def flat(text: str) -> str:
    return " ".join(text.split())


def ask(qtbot: QtBot, win: MainWindow, text: str) -> None:
    view = win.chat_view
    view.input.setPlainText(text)
    view.send()
    qtbot.waitUntil(lambda: not view.busy, timeout=10000)


@pytest.fixture
def manual(qtbot: QtBot, window: MainWindow, tmp_path: Path) -> Path:
    """A two-page "PDF" (the fake parser reads text; a form feed starts page 2) indexed in
    collection "manuals", and a docs-mode chat over it with one answer citing [1]."""
    folder = tmp_path / "manuals"
    folder.mkdir()
    doc = folder / "pump manual.pdf"
    doc.write_text(f"{FILLER}\f{CITED} {AFTER}", encoding="utf-8")
    library = window.library_view
    library.add_folder(folder, "manuals")
    qtbot.waitUntil(lambda: getattr(library.model.status_of("manuals"), "counts", {})
                    .get("indexed") == 1,
                    timeout=90000)
    view = window.chat_view
    qtbot.waitUntil(lambda: "manuals" in view.collection_names)
    view.set_mode("docs")
    qtbot.waitUntil(lambda: view.chat is not None and view.chat.mode == "docs")
    view.set_collections(["manuals"])
    qtbot.waitUntil(lambda: view.chat is not None and view.chat.collections == ["manuals"])
    ask(qtbot, window, "How long does the warranty cover the pump?")
    return doc


def preview_of(qtbot: QtBot, view: ChatView, source: Source) -> SourcePreview:
    view.open_source(source)
    qtbot.waitUntil(lambda: view.preview.preview is not None, timeout=10000)
    assert view.preview.preview is not None
    return view.preview.preview


def test_a_source_shows_its_full_passage_highlighted_with_its_page(
        qtbot: QtBot, window: MainWindow, manual: Path) -> None:
    view = window.chat_view
    source = view.messages.item(1).sources[0]
    assert source.page == 2 and len(source.snippet) <= 240
    card = view.message_list.widgets[1]
    card.sources.rows[0].activated.emit(card.sources.rows[0].source)
    qtbot.waitUntil(lambda: view.preview.preview is not None, timeout=10000)
    pane = view.preview
    assert pane.isVisibleTo(view)
    assert "pump manual.pdf · page 2" in pane.title.text()
    assert "manuals" in pane.where.text()
    passage = flat(pane.highlighted_text())
    # The whole stored chunk, not the 240-character snippet the answer kept.
    assert len(passage) > 240 and passage.startswith(flat(source.snippet).rstrip("…"))
    assert passage in flat(CITED + " " + AFTER)
    shown = flat(pane.text.toPlainText())
    assert len(shown) > len(passage) and passage in shown  # with text around it
    assert not pane.problem.isVisible()
    assert pane.open_button.isEnabled()
    assert pane.page_button.isVisible() and pane.page_button.text() == "Open at page 2"


def test_open_at_page_runs_the_viewer_with_the_page_and_the_absolute_path(
        qtbot: QtBot, window: MainWindow, manual: Path) -> None:
    view = window.chat_view
    started: list[OpenPlan] = []
    view.document_opener = partial(open_document, platform="linux",
                                   which=lambda name: "/usr/bin/okular" if name == "okular" else None,
                                   default_app=lambda: None, start=started.append)
    messages: list[str] = []
    view.status_message.connect(messages.append)
    preview_of(qtbot, view, view.messages.item(1).sources[0])
    view.preview.page_button.click()
    qtbot.waitUntil(lambda: bool(started), timeout=10000)
    assert started[0].command == ("/usr/bin/okular", "--page", "2", os.path.realpath(manual))
    qtbot.waitUntil(lambda: view.preview.status.text() != "")
    assert view.preview.status.text() == "Opened pump manual.pdf at page 2 in Okular."
    assert messages[-1] == view.preview.status.text()

    # No viewer that takes a page: the file opens all the same, and the pane says how.
    started.clear()
    view.document_opener = partial(open_document, platform="linux",
                                   which=lambda name: "/usr/bin/xdg-open" if name == "xdg-open" else None,
                                   default_app=lambda: None, start=started.append)
    view.preview.page_button.click()
    qtbot.waitUntil(lambda: bool(started), timeout=10000)
    assert list(started[0].command or ()) == ["/usr/bin/xdg-open", os.path.realpath(manual)]
    qtbot.waitUntil(lambda: NO_PAGE_VIEWER in view.preview.status.text())


def test_a_file_outside_the_collections_folders_is_refused(qtbot: QtBot, window: MainWindow, reporter: RecordingReporter,
                                                           manual: Path, tmp_path: Path) -> None:
    view = window.chat_view
    started: list[OpenPlan] = []
    view.document_opener = partial(open_document, platform="linux", which=lambda name: None,
                                   default_app=lambda: None, start=started.append)
    preview = preview_of(qtbot, view, view.messages.item(1).sources[0])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    view.open_document(SourcePreview(preview.source, preview.name, 2, "x",
                                     file_path=str(manual), roots=[str(elsewhere)]), True)
    qtbot.waitUntil(lambda: bool(reporter.shown), timeout=10000)
    assert "not inside the collection's folders" in reporter.shown[-1].text
    assert started == []


def test_a_deleted_file_still_shows_what_the_index_kept_and_says_what_to_do(
        qtbot: QtBot, window: MainWindow, manual: Path) -> None:
    view = window.chat_view
    manual.unlink()
    preview = preview_of(qtbot, view, view.messages.item(1).sources[0])
    pane = view.preview
    assert "no longer there: it was moved or deleted" in pane.problem.text()
    assert "Sync the collection on the Library page" in pane.problem.text()
    assert pane.problem.isVisibleTo(view)
    assert flat(pane.highlighted_text()) == flat(preview.passage) and len(preview.passage) > 240
    assert not pane.open_button.isEnabled() and not pane.page_button.isVisibleTo(view)


def test_a_removed_collection_shows_the_saved_excerpt_and_says_so(
        qtbot: QtBot, window: MainWindow, manual: Path) -> None:
    view = window.chat_view
    source = view.messages.item(1).sources[0]
    # Removed through the core thread's own library, which runs jobs in order: the removal is
    # done before the preview is read.
    window.backend.run(window.backend.core,
                       lambda session, job: session.app.library.remove_collection("manuals"),
                       "remove the collection")
    preview_of(qtbot, view, source)
    pane = view.preview
    assert "no longer in the collection “manuals”" in pane.problem.text()
    assert "add its folder on the Library page" in pane.problem.text()
    assert flat(pane.highlighted_text()) == flat(source.snippet)
    assert not pane.open_button.isEnabled()


def test_the_citation_marker_in_the_answer_opens_the_preview(
        qtbot: QtBot, window: MainWindow, manual: Path, engine: StreamingEngine) -> None:
    view = window.chat_view
    card = view.message_list.widgets[1]
    assert "cite:1" in card.body.toHtml()  # "[1]" in "The answer is **42** [1]." is a link
    card.body.anchorClicked.emit(QUrl("cite:1"))
    qtbot.waitUntil(lambda: view.preview.preview is not None, timeout=10000)
    assert view.preview.source is not None and view.preview.source.n == 1
    card.body.anchorClicked.emit(QUrl("cite:9"))  # no such source: nothing happens
    assert view.preview.source is not None and view.preview.source.n == 1


def test_only_markers_of_known_sources_outside_code_and_links_become_links() -> None:
    rendered = render_markdown("See [1] and [2], not [7]. `code [1]` and [a link [1]](http://x.test/)")
    linked = link_citations(rendered, {1, 2})
    assert "<a href='cite:1'>[1]</a>" in linked and "<a href='cite:2'>[2]</a>" in linked
    assert "cite:7" not in linked
    assert linked.count("cite:1") == 1  # not inside code, not inside the other link
    assert link_citations(rendered, set()) == rendered
