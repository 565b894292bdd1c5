"""The pane beside the chat that previews a cited passage and opens its file: the passage is
read on the core thread, the file opened from the files thread, the latest request wins."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QWidget

from bastion.desktop.errors import user_message
from bastion.desktop.gui import core_tasks
from bastion.desktop.gui.backend import Backend
from bastion.desktop.gui.passage_preview import PassagePreview

if TYPE_CHECKING:
    from bastion.store.chats import Source


class SourcePane(PassagePreview):
    """A ``PassagePreview`` that fetches what it shows through the backend.

    ``busy`` says whether an answer is streaming (the preview then says it may wait for it).
    ``document_opener`` opens a file at a page (``open_document.open_document``); tests inject
    their own.
    """

    status_message = Signal(str)

    def __init__(self, backend: Backend, busy: Callable[[], bool],
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.backend, self.busy = backend, busy
        self.document_opener: Any = None
        self._preview_request = 0
        self.open_requested.connect(self.open_document)

    def open_source(self, source: Source) -> None:
        """Preview the cited passage of ``source`` (read on the core thread)."""
        self._preview_request += 1
        request = self._preview_request
        self.show_loading(source, waiting=self.busy())
        self.backend.run(self.backend.core, partial(core_tasks.source_preview, source=source),
                         "preview the source",
                         on_result=lambda preview: self._show(request, preview),
                         on_error=lambda error: self._failed(request, source, error))

    def _show(self, request: int, preview: Any) -> None:
        if request == self._preview_request and self.source is not None:
            self.show_preview(preview)

    def _failed(self, request: int, source: Source, error: BaseException) -> bool:
        message = user_message(error)
        if request == self._preview_request and self.source is not None:
            self.show_failed(source, message or "The passage could not be read; the error was "
                             "logged. The excerpt saved with the answer is below.")
        return message is None  # a bug still gets its dialog and log reference

    def open_document(self, preview: Any, at_page: bool) -> None:
        """Open the previewed file, at its page when ``at_page`` and a viewer can (files thread)."""
        page = preview.page if at_page else None
        self.backend.run(self.backend.files,
                         partial(core_tasks.open_document, path=preview.file_path, page=page,
                                 roots=list(preview.roots), opener=self.document_opener),
                         "open the file", on_result=lambda plan: self._opened(preview.name, plan))

    def _opened(self, name: str, plan: Any) -> None:
        if plan.note:
            text = f"{name}: {plan.note}."
        elif plan.page is not None:
            text = f"Opened {name} at page {plan.page} in {plan.viewer}."
        else:
            text = f"Opened {name}."
        self.set_status(text)
        self.status_message.emit(text)
