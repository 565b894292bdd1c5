"""What the window previews of a cited source: the passage in full, the text around it, and
whether the file can still be opened. Qt-free; runs off the GUI thread.

The passage comes from the index (``Library.passage``), not from the file and not from the
240-character snippet the answer stored. When the index no longer has it (the document was
removed, or re-indexed and changed), the preview falls back to that snippet and says why.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bastion.desktop.grounding import snippet
from bastion.desktop.open_document import is_pdf
from bastion.store.chats import Source


@dataclass(frozen=True)
class SourcePreview:
    """A cited passage ready to show: ``before`` + ``passage`` + ``after`` is the text, with
    ``passage`` the cited part.

    ``file_path`` and ``roots`` are what opening the file needs (None/empty: it cannot be
    opened, and ``problem`` says why); ``problem`` is a sentence for the user, "" when all is
    well; ``changed`` means the index holds other text there than when the answer was made.
    """

    source: Source
    name: str
    page: int | None
    passage: str
    before: str = ""
    after: str = ""
    file_path: str | None = None
    roots: list[str] = field(default_factory=list)
    collection: str = ""
    problem: str = ""
    changed: bool = False

    @property
    def can_open(self) -> bool:
        return self.file_path is not None and bool(self.roots)

    @property
    def opens_at_page(self) -> bool:
        """Whether "Open at page N" applies: a PDF with a known page."""
        return self.can_open and self.page is not None and is_pdf(self.file_path or "")


def preview_source(library: Any, source: Source) -> SourcePreview:
    """The preview of ``source`` (a citation under an answer) from ``library``.

    Never raises for a document or file that has gone: the preview says so instead.
    """
    name = Path(source.path).name
    if source.char_start is None or source.char_end is None:
        stored = None
    else:
        stored = library.passage(source.path, source.page, source.char_start, source.char_end,
                                 source.collection)
    if stored is None:
        where = f"the collection “{source.collection}”" if source.collection else "the library"
        return SourcePreview(
            source, name, source.page, source.snippet,
            problem=(f"{name} is no longer in {where}: it was removed, or its folder was taken "
                     "out of the collection. Below is the excerpt saved with the answer. To "
                     "search it and open it from here again, add its folder on the Library page."))
    base = SourcePreview(source, name, source.page, source.snippet, file_path=stored.file_path,
                         roots=list(stored.roots), collection=stored.collection)
    missing = _file_problem(stored.file_path, name)
    if not stored.found:
        problem = (f"{name} has changed since this answer, and the cited passage is no longer "
                   "in the index. Below is the excerpt saved with the answer; open the file to "
                   "read it as it is now.")
        return replace(base, problem=missing or problem, file_path=None if missing else stored.file_path)
    text = stored.context
    passage = text[stored.start:stored.end]
    changed = snippet(passage) != source.snippet
    note = ("The document was re-indexed since this answer; the highlighted text is what the "
            "index holds there now." if changed else "")
    return replace(base, passage=passage, before=text[:stored.start], after=text[stored.end:],
                 changed=changed, problem=missing or note,
                 file_path=None if missing else stored.file_path)


def _file_problem(path: str, name: str) -> str:
    """"" when ``path`` is still a regular file, else what happened and what to do."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return (f"The file {path} is no longer there: it was moved or deleted. The text below "
                "is what the index kept of it. Sync the collection on the Library page to "
                "bring the index up to date.")
    except OSError as error:
        return (f"Bastion cannot reach {path} ({error.strerror or error}). The text below is "
                "what the index kept of it. Check that its drive or network folder is "
                "connected.")
    if not stat.S_ISREG(st.st_mode):
        return (f"{name} is no longer a regular file. The text below is what the index kept of "
                "it. Sync the collection on the Library page to bring the index up to date.")
    return ""
