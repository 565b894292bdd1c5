"""Reading a cited passage back from the index, with the text around it.

An answer's citation keeps the document's path, page and the character range of the passage in
that page's text. The index keeps every chunk as that exact slice of its page, and neighbouring
chunks overlap, so the text around a passage is rebuilt from the chunks beside it on the same
page: no file is read, and a file that has since gone still shows what the index kept of it.
Read-only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import sqlite_utils

# Chunks taken on each side of the passage's own for context (each is a few hundred tokens).
CONTEXT_CHUNKS = 1

# A gap this small between two chunks is whitespace the chunker stepped over.
_SMALL_GAP = 4
_GAP_MARK = "\n…\n"


@dataclass(frozen=True)
class StoredPassage:
    """A cited passage as the index has it now.

    ``context[start:end]`` is the passage itself; ``found`` is False when no chunk of the
    document covers the cited range any more (it was re-indexed and changed), and then
    ``context`` is empty.
    """

    collection: str
    path: str  # as shown (undecodable bytes replaced)
    file_path: str  # the file-system name, to open the file
    roots: list[str]  # the collection's folders (file-system names)
    state: str  # the document's state (indexed, unavailable, …)
    page: int | None
    context: str
    start: int
    end: int
    found: bool


def find_passage(
    db: sqlite_utils.Database,
    path: str,
    page: int | None,
    char_start: int,
    char_end: int,
    collection: str = "",
    context_chunks: int = CONTEXT_CHUNKS,
) -> StoredPassage | None:
    """The passage of document ``path`` on ``page`` between ``char_start`` and ``char_end``.

    Args:
        collection: Look only in this collection ("" : in any, the first that has ``path``).
        context_chunks: Neighbouring chunks to add on each side.

    Returns:
        The passage with its context, or None when no collection holds ``path`` any more.
    """
    sql = (
        "SELECT d.id, d.path, d.path_bytes, d.state, co.id, co.name FROM documents d "
        "JOIN collections co ON co.id = d.collection_id WHERE d.path = ?"
    )
    params: list[object] = [path]
    if collection:
        sql += " AND co.name = ?"
        params.append(collection)
    row = db.execute(sql + " ORDER BY co.name LIMIT 1", params).fetchone()
    if row is None:
        return None
    document_id, shown, path_bytes, state, collection_id, collection_name = row
    roots = [
        os.fsdecode(bytes(r[0]))
        for r in db.execute(
            "SELECT root_bytes FROM folders WHERE collection_id = ? ORDER BY id", [collection_id]
        ).fetchall()
    ]
    chunks = [
        (int(r[0]), str(r[1]), int(r[2]), int(r[3]))
        for r in db.execute(
            "SELECT ordinal, text, char_start, char_end FROM chunks "
            "WHERE document_id = ? AND page IS ? ORDER BY ordinal",
            [document_id, page],
        ).fetchall()
    ]
    cited = [c for c in chunks if c[2] < char_end and char_start < c[3]]
    context, start, end = "", 0, 0
    if cited:
        first = min(c[0] for c in cited) - context_chunks
        last = max(c[0] for c in cited) + context_chunks
        near = [c for c in chunks if first <= c[0] <= last]
        context, start, end = _join(near, char_start, char_end)
    return StoredPassage(
        collection=str(collection_name), path=str(shown), file_path=os.fsdecode(bytes(path_bytes)),
        roots=roots, state=str(state), page=page, context=context, start=start, end=end,
        found=bool(cited),
    )


def _join(
    chunks: list[tuple[int, str, int, int]], char_start: int, char_end: int
) -> tuple[str, int, int]:
    """The page text the overlapping ``chunks`` cover, and where ``char_start``/``char_end``
    fall in it."""
    parts: list[str] = []
    length = 0
    covered: int | None = None  # page offset covered so far
    start: int | None = None
    end: int | None = None
    for _, text, c_start, c_end in sorted(chunks, key=lambda c: (c[2], c[3])):
        if covered is None:
            covered = c_start
        if c_end <= covered:
            continue
        if c_start > covered:  # a gap: whitespace, or text no chunk kept
            gap = c_start - covered
            filler = " " * gap if gap <= _SMALL_GAP else _GAP_MARK
            parts.append(filler)
            length += len(filler)
            covered = c_start
        piece = text[covered - c_start:]
        if start is None and char_start < c_end:
            start = length + max(char_start - covered, 0)
        if end is None and char_end <= c_end:
            end = length + max(char_end - covered, 0)
        parts.append(piece)
        length += len(piece)
        covered = c_end
    joined = "".join(parts)
    start = min(start if start is not None else 0, len(joined))
    end = min(max(end if end is not None else len(joined), start), len(joined))
    return joined, start, end
