"""Answers and documents are rendered inertly: no raw HTML, no resources loaded, no navigation;
streaming re-renders in batches."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import QUrl

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


def test_sources_show_file_page_and_snippet_cited_first(qtbot) -> None:
    view = SourcesView()
    qtbot.addWidget(view)
    view.set_sources([Source(1, "/docs/a.pdf", 4, "Some **bold** text", 0.5),
                      Source(2, "/docs/b.txt", None, "## Heading here", 0.4, cited=True)])
    assert [row.source.n for row in view.rows] == [2, 1]
    assert "b.txt" in view.rows[0].title_label.text()
    assert "page 4" in view.rows[1].title_label.text()
    assert "1 cited" in view.header.text()
    assert describe(Source(1, "/x/y.pdf", 2, "", 0.0)) == "y.pdf · page 2"
    assert readable_snippet("## Heading **here**") == "Heading here"


def test_a_refused_answer_says_why_under_it(qtbot) -> None:
    reason = "no passage in “history” was relevant enough (best match 0.30, needed 0.45)"
    item = MessageItem("assistant", "I could not find this in your documents.", "complete", id=4,
                       meta={"not_found": True, "not_found_reason": reason})
    widget = MessageWidget(item)
    qtbot.addWidget(widget)
    assert widget.note.isVisibleTo(widget)
    assert reason in widget.note.text() and "Model + documents" in widget.note.text()
    plain = MessageWidget(MessageItem("assistant", "Paris [1].", "complete", id=5))
    qtbot.addWidget(plain)
    assert not plain.note.isVisibleTo(plain)
