"""Answers and documents are rendered inertly: no raw HTML, no resources loaded, no navigation;
streaming re-renders in batches."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import Qt, QUrl

from bastion.desktop.gui.chat_list_model import MessageItem
from bastion.desktop.gui.message_view import InertTextBrowser, MessageWidget, render_markdown
from bastion.desktop.gui.sources_view import SourcesView, describe, readable_snippet
from bastion.store.chats import Source

pytestmark = pytest.mark.qt_log_ignore("propagateSizeHints")  # the offscreen plugin's notice


def test_raw_html_is_escaped_not_interpreted() -> None:
    html = render_markdown('<script>alert(1)</script> <img src="file:///etc/passwd"> **bold**')
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "<img" not in html.replace("&lt;img", "")
    assert "<strong>bold</strong>" in html


def test_no_resource_is_loaded_and_no_link_is_followed(qtbot, tmp_path: Path) -> None:
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"\x89PNG\r\n\x1a\n")
    browser = InertTextBrowser()
    qtbot.addWidget(browser)
    browser.setHtml(render_markdown(
        f"![remote](http://192.0.2.1/pixel.png) ![local]({secret.as_uri()}) [link](http://x.test/)"))
    browser.resize(400, 200)
    browser.show()
    qtbot.wait(50)
    # Qt asked for the images, and got nothing back.
    assert any("192.0.2.1" in r for r in browser.requested_resources)
    assert browser.loadResource(2, QUrl(secret.as_uri())) is None
    browser.setSource(QUrl("http://x.test/"))
    assert browser.source().isEmpty()
    assert browser.openLinks() is False and browser.openExternalLinks() is False


def test_streaming_text_is_rendered_in_batches(qtbot) -> None:
    item = MessageItem("assistant", "", "streaming")
    widget = MessageWidget(item)
    qtbot.addWidget(widget)
    for i in range(200):
        item.text += f"word{i} "
        widget.set_item(item)
    assert widget.renders <= 2  # nothing re-rendered per token
    qtbot.waitUntil(lambda: "word199" in widget.body.toPlainText(), timeout=2000)
    widget.set_item(MessageItem("assistant", item.text + "end.", "complete", id=3))
    assert widget.body.toPlainText().rstrip().endswith("end.")  # final text at once


def test_sources_list_what_the_answer_cites_and_fold_the_rest(qtbot) -> None:
    view = SourcesView()
    qtbot.addWidget(view)
    view.set_sources([Source(1, "/docs/a.pdf", 4, "Some **bold** text", 0.5),
                      Source(2, "/docs/b.txt", None, "## Heading here", 0.4, cited=True),
                      Source(3, "/docs/c.txt", None, "Other", 0.3)])
    view.show()
    assert view.header.text() == "Sources"
    assert [row.source.n for row in view.cited_rows] == [2]
    assert [row.source.n for row in view.also_rows] == [1, 3]
    assert [row.source.n for row in view.rows] == [2, 1, 3]  # cited first
    assert "b.txt" in view.cited_rows[0].title_label.text()
    assert "page 4" in view.also_rows[0].title_label.text()
    assert view.cited_rows[0].isVisible()
    # The others are folded under "Also retrieved", collapsed until clicked.
    assert view.also_button.text() == "Also retrieved (2)" and view.also_button.isVisible()
    assert not view.also_box.isVisible() and not view.also_rows[0].isVisible()
    qtbot.mouseClick(view.also_button, Qt.MouseButton.LeftButton)
    assert view.also_box.isVisible() and view.also_rows[0].isVisible()
    assert view.also_box.layout().contentsMargins().left() > 0  # indented under its button
    qtbot.mouseClick(view.also_button, Qt.MouseButton.LeftButton)
    assert not view.also_box.isVisible()
    assert describe(Source(1, "/x/y.pdf", 2, "", 0.0)) == "y.pdf · page 2"
    assert readable_snippet("## Heading **here**") == "Heading here"


def test_an_answer_citing_nothing_says_so_and_folds_every_passage(qtbot) -> None:
    view = SourcesView()
    qtbot.addWidget(view)
    view.set_sources([Source(1, "/docs/a.pdf", 4, "A", 0.5), Source(2, "/docs/b.txt", None, "B", 0.4)])
    view.show()
    assert view.header.text() == "Sources — no passage cited"
    assert view.cited_rows == [] and not view.cited_box.isVisible()
    assert view.also_button.text() == "Also retrieved (2)" and not view.also_box.isVisible()


def test_while_the_answer_streams_the_passages_found_wait_under_the_fold(qtbot) -> None:
    sources = [Source(1, "/docs/a.pdf", 4, "A", 0.5)]
    item = MessageItem("assistant", "Lot", "streaming", sources=sources)
    widget = MessageWidget(item)
    qtbot.addWidget(widget)
    widget.show()
    assert widget.sources.header.text() == "Sources — 1 passage found"
    assert "no passage cited" not in widget.sources.header.text()
    cited = [Source(1, "/docs/a.pdf", 4, "A", 0.5, cited=True, cited_by="marker")]
    widget.set_item(MessageItem("assistant", "Lot C [1].", "complete", id=3, sources=cited))
    assert widget.sources.header.text() == "Sources"
    assert [row.source.n for row in widget.sources.cited_rows] == [1]
    assert not widget.sources.also_button.isVisible()


def test_no_sources_no_list(qtbot) -> None:
    view = SourcesView()
    qtbot.addWidget(view)
    view.set_sources([])
    assert view.isHidden() and view.rows == []


def test_a_refused_answer_says_why_under_it(qtbot) -> None:
    reason = "no passage in “history” was relevant enough (best match 0.30, needed 0.45)"
    item = MessageItem("assistant", "I could not find this in your documents.", "complete", id=4,
                       meta={"not_found": True, "not_found_reason": reason})
    widget = MessageWidget(item)
    qtbot.addWidget(widget)
    assert widget.note.isVisibleTo(widget)
    assert reason in widget.note.text() and "Model + documents" in widget.note.text()
    widget.resize(400, 300)
    widget.show()
    assert widget.width() <= 400  # the sentence wraps; the card does not widen
    plain = MessageWidget(MessageItem("assistant", "Paris [1].", "complete", id=5))
    qtbot.addWidget(plain)
    assert not plain.note.isVisibleTo(plain)
