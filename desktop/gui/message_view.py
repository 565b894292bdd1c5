"""One message on screen: Markdown rendered inertly, its sources, timings and actions.

Inert means: markdown-it-py with raw HTML disabled turns the text into HTML for a QTextBrowser
that follows no link and loads no resource (``loadResource`` answers nothing for any URL, so an
image in an answer or a document can never fetch a file or reach a network). Links are shown and
reported to the window on click, never opened by themselves.

While an answer streams, the text grows on every token but is re-rendered at most every
``RENDER_INTERVAL_MS``, so the cost per token is a string append.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Collection
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QSize, Qt, QTimer, QUrl, Signal
from PySide6.QtGui import QPalette, QResizeEvent
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QSizePolicy,
    QTextBrowser,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from bastion.desktop.gui.chat_header import MODE_LABELS, AdapterChoice, describe_adapters
from bastion.desktop.gui.chat_list_model import MessageItem
from bastion.desktop.gui.sources_view import SourcesView

if TYPE_CHECKING:
    from markdown_it import MarkdownIt

RENDER_INTERVAL_MS = 80


@functools.cache
def _markdown() -> MarkdownIt:
    """The renderer, made on first use (markdown-it's import is not needed to show the window)."""
    from markdown_it import MarkdownIt

    renderer = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    renderer.enable(["table", "strikethrough"])
    return renderer


def render_markdown(text: str) -> str:
    """HTML for ``text``; raw HTML in it is escaped, never interpreted."""
    html: str = _markdown().render(text)
    return html


CITATION_SCHEME = "cite"
_TAG = re.compile(r"(<[^>]*>)")
_MARKER = re.compile(r"\[(\d{1,3})\]")
_NO_LINKS_INSIDE = ("a", "code", "pre")


def link_citations(rendered: str, numbers: Collection[int]) -> str:
    """``rendered`` HTML with each ``[n]`` marker of a source in ``numbers`` made a ``cite:n``
    link; markers in code, in links and in tag attributes stay text."""
    if not numbers:
        return rendered
    out: list[str] = []
    inside: dict[str, int] = dict.fromkeys(_NO_LINKS_INSIDE, 0)
    for part in _TAG.split(rendered):
        if part.startswith("<"):
            name = part.strip("</>").split(None, 1)[0].lower() if part.strip("</>") else ""
            if name in inside:
                inside[name] += -1 if part.startswith("</") else 1
            out.append(part)
        elif any(inside.values()):
            out.append(part)
        else:
            out.append(_MARKER.sub(
                lambda m: (f"<a href='{CITATION_SCHEME}:{m.group(1)}'>{m.group(0)}</a>"
                           if int(m.group(1)) in numbers else m.group(0)), part))
    return "".join(out)


class InertTextBrowser(QTextBrowser):
    """Shows rich text, follows no link and loads no resource."""

    link_clicked = Signal(QUrl)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setOpenLinks(False)
        self.setOpenExternalLinks(False)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setTextInteractionFlags(Qt.TextInteractionFlag.TextBrowserInteraction)
        self.viewport().setAutoFillBackground(False)
        self.anchorClicked.connect(self.link_clicked)
        self.document().setDocumentMargin(2)
        self.document().contentsChanged.connect(self._fit)
        self.requested_resources: list[str] = []

    def loadResource(self, kind: int, name: QUrl | str) -> Any:
        # Nothing is loaded: not remote URLs, not local files, not data URLs.
        self.requested_resources.append(name.toString() if isinstance(name, QUrl) else str(name))
        return None

    def setSource(self, name: QUrl | str, kind: Any = None) -> None:
        # Never navigate, whatever asks (keyboard activation, backward/forward).
        return

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._fit()

    def _fit(self) -> None:
        document = self.document()
        document.setTextWidth(max(self.viewport().width(), 50))
        height = math.ceil(document.size().height()) + 2 * self.frameWidth() + 2
        if height != self.height():
            self.setFixedHeight(height)

    def sizeHint(self) -> QSize:
        return QSize(400, self.height())


class MessageWidget(QFrame):
    """A message card. Emits requests; the chat view decides what they do."""

    copy_requested = Signal(object)
    regenerate_requested = Signal(object)
    edit_requested = Signal(object)
    link_clicked = Signal(QUrl)
    source_activated = Signal(object)
    good_toggled = Signal(object, bool)  # the user marked (True) or unmarked the answer good

    def __init__(self, item: MessageItem, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.item = item
        self.setObjectName("userMessage" if item.role == "user" else "assistantMessage")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(12, 8, 12, 8)
        layout.setSpacing(4)

        self.author = QLabel("You" if item.role == "user" else "Bastion")
        self.author.setObjectName("messageAuthor")
        layout.addWidget(self.author)

        self.body = InertTextBrowser(self)
        self.body.setObjectName("messageBody")
        self.body.link_clicked.connect(self._body_link)
        layout.addWidget(self.body)

        self.note = QLabel()
        self.note.setObjectName("messageNote")
        self.note.setWordWrap(True)  # a refusal's reason is a sentence; it must not widen the card
        self.note.setVisible(False)
        layout.addWidget(self.note)

        self.sources = SourcesView(self)
        self.sources.source_activated.connect(self.source_activated)
        layout.addWidget(self.sources)

        footer = QHBoxLayout()
        footer.setSpacing(6)
        self.stats = QLabel()
        self.stats.setObjectName("messageStats")
        # Wrapped: a long model name plus its adapters must not widen every card past the view.
        self.stats.setWordWrap(True)
        footer.addWidget(self.stats, 1)
        self.copy_button = self._action(footer, "Copy", self.copy_requested)
        if item.role == "user":
            self.edit_button: QToolButton | None = self._action(footer, "Edit", self.edit_requested)
            self.regenerate_button: QToolButton | None = None
        else:
            self.edit_button = None
            self.regenerate_button = self._action(footer, "Regenerate", self.regenerate_requested)
        self.good_button = self._good_toggle(footer) if item.role == "assistant" else None
        layout.addLayout(footer)

        self._render_timer = QTimer(self)
        self._render_timer.setSingleShot(True)
        self._render_timer.setInterval(RENDER_INTERVAL_MS)
        self._render_timer.timeout.connect(self._render)
        self.renders = 0
        self._seen_text = item.text
        self._linked: frozenset[int] = frozenset()  # the citation markers rendered as links
        self.set_item(item)

    def _action(self, layout: QHBoxLayout, text: str, signal: Any) -> QToolButton:
        button = QToolButton(self)
        button.setText(text)
        button.setAutoRaise(True)
        button.setObjectName(f"{text.lower()}Button")
        button.clicked.connect(lambda: signal.emit(self))
        layout.addWidget(button)
        return button

    def _good_toggle(self, layout: QHBoxLayout) -> QToolButton:
        button = QToolButton(self)
        button.setText("✓ good answer")
        button.setCheckable(True)
        button.setAutoRaise(True)
        button.setObjectName("goodButton")
        button.setToolTip("Mark this answer good: `bastion lab questions-from-chats` makes a lab "
                          "question set from the answers you marked.")
        # clicked, not toggled: showing a stored mark (setChecked) must not store it again.
        button.clicked.connect(lambda checked: self.good_toggled.emit(self, checked))
        layout.addWidget(button)
        return button

    # -- updates ---------------------------------------------------------------------------

    def set_item(self, item: MessageItem) -> None:
        """Show ``item``; while it streams, text is re-rendered at most every 80 ms."""
        # Compared with the text last seen, not the item: the model grows one item in place.
        text_changed = (item.text != self._seen_text or self.renders == 0
                        or citation_numbers(item) != self._linked)
        self._seen_text = item.text
        self.item = item
        streaming = item.status == "streaming"
        if text_changed:
            if streaming:
                if not self._render_timer.isActive():
                    self._render_timer.start()
            else:
                self._render_timer.stop()
                self._render()
        note = item.note or answer_note(item)
        self.note.setText(note)
        self.note.setVisible(bool(note))
        if item.role == "assistant":
            self.sources.set_sources(item.sources, answered=not streaming)
        self.stats.setText(stats_line(item))
        for button in (self.copy_button, self.edit_button, self.regenerate_button):
            if button is not None:
                button.setEnabled(not streaming)
        if self.good_button is not None:  # only a stored, finished answer can be marked
            self.good_button.setVisible(item.status == "complete" and item.id is not None)
            self.good_button.setChecked(item.marked_good)

    def set_actions_enabled(self, enabled: bool) -> None:
        """Edit and Regenerate are off while another answer streams."""
        for button in (self.edit_button, self.regenerate_button):
            if button is not None:
                button.setEnabled(enabled and self.item.status != "streaming")

    def _render(self) -> None:
        text = self.item.text
        self._linked = citation_numbers(self.item)
        if self.item.status == "streaming" and not text:
            waiting = self.palette().color(QPalette.ColorRole.PlaceholderText).name()
            self.body.setHtml(f"<p style='color:{waiting}'>…</p>")
        else:
            self.body.setHtml(link_citations(render_markdown(text), self._linked))
        self.renders += 1

    def _body_link(self, url: QUrl) -> None:
        # A citation marker shows its source's passage; any other link goes to the chat view,
        # which never follows it.
        if url.scheme() == CITATION_SCHEME:
            number = url.path()
            source = next((s for s in self.item.sources if str(s.n) == number), None)
            if source is not None:
                self.source_activated.emit(source)
            return
        self.link_clicked.emit(url)


def citation_numbers(item: MessageItem) -> frozenset[int]:
    """The source numbers a finished answer's ``[n]`` markers link to."""
    if item.role != "assistant" or item.status == "streaming":
        return frozenset()
    return frozenset(s.n for s in item.sources)


def answer_note(item: MessageItem) -> str:
    """Why a stored answer is what it is, when that needs saying: a documents-only answer
    refused because no passage was relevant enough (``meta["not_found_reason"]``)."""
    reason = item.meta.get("not_found_reason") if item.role == "assistant" else None
    if not isinstance(reason, str) or not reason or item.status == "streaming":
        return ""
    return (f"Not answered from your documents: {reason}. To let the model answer on its own "
            f"when nothing is relevant, switch this chat to “{MODE_LABELS['both']}”.")


def stats_line(item: MessageItem) -> str:
    """Speed and provenance under an answer: tokens/s, time to first token, model and the LoRA
    adapters it answered with."""
    if item.role != "assistant":
        return ""
    meta = item.meta
    parts: list[str] = []
    if item.status == "streaming":
        return "Answering…"
    if meta.get("generated_tokens"):
        parts.append(f"{meta.get('generation_tps', 0):.1f} tokens/s")
        parts.append(f"first token {meta.get('time_to_first_token_s', 0):.2f} s")
        parts.append(f"{meta['generated_tokens']} tokens")
    if meta.get("retrieval_ms"):
        parts.append(f"search {meta['retrieval_ms']:.0f} ms")
    adapters = answer_adapters(meta)
    if meta.get("model") or adapters:
        with_adapters = f" + LoRA {describe_adapters(adapters)}" if adapters else ""
        parts.append(f"{meta.get('model') or 'model'}{with_adapters}")
    skipped = [s.get("name") for s in meta.get("adapters_skipped", []) if isinstance(s, dict)]
    if skipped:
        parts.append(f"without LoRA {', '.join(str(n) for n in skipped)} (no longer usable)")
    if item.status == "interrupted":
        parts.append("stopped")
    elif item.status == "failed":
        parts.append("failed")
    if meta.get("finish_reason") == "length":
        parts.append("cut at the answer length limit")
    return " · ".join(parts)


def answer_adapters(meta: dict[str, Any]) -> list[AdapterChoice]:
    """The adapters and scales an answer was made with (``meta["adapters"]``: name/scale
    records); entries that are not such records (older or hand-edited histories) are skipped."""
    adapters: list[AdapterChoice] = []
    raw = meta.get("adapters")
    for record in raw if isinstance(raw, list) else []:
        if isinstance(record, dict) and isinstance(record.get("name"), str):
            try:
                adapters.append((record["name"], float(record.get("scale", 1.0))))
            except (TypeError, ValueError):
                continue
    return adapters
