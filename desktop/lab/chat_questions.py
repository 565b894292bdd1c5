"""A lab question set from the user's own chats: the answers they marked "✓ good answer".

Each marked answer becomes one question: the question is the user's message before it, the one
gold answer is the marked answer's text without its citation markers, and ``source`` is the
file of its first cited passage, if it cites one. These gold answers are whole answers, which a
new answer never repeats word for word, so each question carries ``"match": "f1"``: the lab
counts an answer right when its token F1 against the marked answer reaches 0.5 (see
``questions``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bastion.desktop.errors import BastionError
from bastion.desktop.lab.metrics import strip_citations
from bastion.store.chats import ChatStore, Message


def question_row(question: Message, answer: Message) -> dict[str, Any]:
    """One marked answer (and the question before it) as a question set line."""
    cited = sorted((s for s in answer.sources if s.cited), key=lambda s: s.n)
    row: dict[str, Any] = {"id": f"chat{answer.chat_id}-{answer.id}", "question": question.content.strip(),
                           "answers": [strip_citations(answer.content)], "match": "f1"}
    if cited:
        row["source"] = cited[0].path
    return row


def questions_from_chats(chats: ChatStore, chat_ids: Sequence[int] | None = None) -> list[dict[str, Any]]:
    """The question set lines of the answers marked good (in ``chat_ids`` if given).

    Raises:
        StoreError: a chat of ``chat_ids`` does not exist.
        BastionError: no answer is marked good there.
    """
    rows = [question_row(q, a) for q, a in chats.marked_answers(chat_ids)]
    rows = [r for r in rows if r["question"] and r["answers"][0]]
    if not rows:
        where = f" in chat{'s' if len(chat_ids or ()) > 1 else ''} {', '.join(map(str, chat_ids))}" \
            if chat_ids else ""
        raise BastionError(f"No answer is marked good{where}. In the window, mark the answers you "
                           "trust with “✓ good answer” under them, then make the question set again.")
    return rows


def write_question_set(rows: Sequence[dict[str, Any]], out: Path, *, replace: bool = False) -> None:
    """Write ``rows`` as JSONL to ``out``, a file private to the user.

    Args:
        rows: The question set's lines.
        out: The file; it must be new unless ``replace`` (the user confirmed replacing it).
        replace: Replace an existing ``out`` (whole: written beside it, then renamed).

    Raises:
        BastionError: ``out`` exists already (without ``replace``), or cannot be written.
    """
    text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    target, out = out, out.with_name(f".{out.name}.{os.getpid()}.tmp") if replace else out
    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    except FileExistsError as error:
        raise BastionError(f"{out} exists already: give another file name, or remove it first.") from error
    except OSError as error:
        raise BastionError(f"Cannot write {out}: {error.strerror or error}.") from error
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    if replace:
        os.replace(out, target)
