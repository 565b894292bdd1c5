"""Chat history in ``bastion.db``: chats, their messages, sources and timings.

Separate from the rebuildable ``library.db``; opened with ``synchronous=FULL`` so a message that
was acknowledged survives a power cut. The user's message is committed before generation starts;
an answer is written as ``streaming`` first and finished as ``complete`` or ``interrupted``, so a
kill during streaming leaves an honest record, never a half-true one.

The connection runs with ``isolation_level=None``, so a statement outside a transaction commits
on its own: every write here runs in ``transactions.transaction`` (``BEGIN IMMEDIATE`` …
``COMMIT``), so one that takes several statements is saved whole or not at all.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import sqlite_utils

from .errors import StoreError
from .migrations import Migration, run_migrations
from .transactions import transaction

Role = Literal["system", "user", "assistant"]
MessageStatus = Literal["complete", "streaming", "interrupted", "failed"]
Mode = Literal["model", "docs", "both"]


@dataclass(frozen=True)
class Source:
    """A passage an answer cites, by its number ``n`` in the prompt."""

    n: int
    path: str
    page: int | None
    snippet: str
    score: float
    collection: str = ""
    char_start: int | None = None
    char_end: int | None = None
    cited: bool = False
    # How the citation was established: "marker" (the answer wrote [n]) or "overlap" (the
    # answer restates this passage's words without a marker, as small models often do).
    cited_by: str = ""


@dataclass(frozen=True)
class Message:
    id: int
    chat_id: int
    role: Role
    content: str
    status: MessageStatus
    created: float
    sources: list[Source] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    # The user marked this answer good ("✓ good answer"): a gold answer for a lab question set.
    marked_good: bool = False


@dataclass(frozen=True)
class Chat:
    id: int
    title: str
    mode: Mode
    collections: list[str]
    created: float
    updated: float
    # LoRA adapters the chat answers with, by catalog name, with their scales.
    adapters: list[tuple[str, float]] = field(default_factory=list)


def _migration_001_initial(db: sqlite_utils.Database) -> None:
    db.table("chats").create(
        {"id": int, "title": str, "mode": str, "collections": str, "created": float, "updated": float},
        pk="id",
        not_null={"title", "mode", "collections", "created", "updated"},
    )
    db.table("messages").create(
        {
            "id": int,
            "chat_id": int,
            "role": str,
            "content": str,
            "status": str,
            "created": float,
            "sources": str,
            "meta": str,
        },
        pk="id",
        foreign_keys=[("chat_id", "chats", "id")],
        not_null={"chat_id", "role", "content", "status", "created"},
    )
    db.table("messages").create_index(["chat_id", "id"])


def _migration_002_chat_adapters(db: sqlite_utils.Database) -> None:
    db.execute("ALTER TABLE chats ADD COLUMN adapters TEXT NOT NULL DEFAULT '[]'")


def _migration_003_marked_answers(db: sqlite_utils.Database) -> None:
    # When the user marked an answer good (NULL: not marked); a column rather than a meta key,
    # since finishing or re-storing an answer rewrites its meta.
    db.execute("ALTER TABLE messages ADD COLUMN marked_good_at REAL")


MIGRATIONS: list[tuple[str, Migration]] = [
    ("001_initial", _migration_001_initial),
    ("002_chat_adapters", _migration_002_chat_adapters),
    ("003_marked_answers", _migration_003_marked_answers),
]

# The ledger's timestamp column, as sqlite-utils created it in the first chat histories.
_APPLIED_COLUMN = "applied"


class ChatStore:
    """Chats and messages. Belongs to the thread that opened it."""

    def __init__(self, path: Path | str, *, check_same_thread: bool = True, timeout: float = 10.0):
        self.path = Path(path)
        conn: sqlite3.Connection | None = None
        try:
            conn = sqlite3.connect(str(path), timeout=timeout, check_same_thread=check_same_thread,
                                   isolation_level=None)
            self.db = sqlite_utils.Database(conn)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.execute("PRAGMA foreign_keys=ON")
            run_migrations(self.db, MIGRATIONS, applied_column=_APPLIED_COLUMN)
        except sqlite3.DatabaseError as error:
            if conn is not None:
                conn.close()
            raise StoreError(
                f"Could not open the chat history {path}: {error}. If another Bastion is running, "
                "close it; if the file is damaged, move it aside and Bastion starts a new one."
            ) from error
        self._recover_interrupted()

    def _recover_interrupted(self) -> None:
        """A run killed mid-answer left a ``streaming`` message: mark it interrupted, unless
        the process writing it is still alive (another Bastion window or command)."""
        rows = list(self.db.query("SELECT id, meta FROM messages WHERE status = 'streaming'"))
        dead = [r["id"] for r in rows if not _alive(json.loads(r["meta"] or "{}").get("writer_pid"))]
        if dead:
            with self._write():
                self.db.execute(
                    f"UPDATE messages SET status = 'interrupted' WHERE id IN ({','.join('?' * len(dead))})",
                    dead,
                )

    def close(self) -> None:
        self.db.conn.close()

    @contextmanager
    def _write(self) -> Iterator[None]:
        """One write transaction; a failure anywhere inside leaves the history as it was."""
        with transaction(self.db.conn, busy=self._busy_error):
            yield

    def _busy_error(self) -> StoreError:
        return StoreError(
            f"The chat history {self.path} is busy: another Bastion process is writing to it. "
            "Wait for it to finish (or close it) and try again."
        )

    # -- chats -------------------------------------------------------------------------------

    def create_chat(self, title: str = "New chat", mode: Mode = "model",
                    collections: Sequence[str] = (),
                    adapters: Sequence[tuple[str, float]] = ()) -> Chat:
        now = time.time()
        with self._write():
            chat_id = self.db.table("chats").insert(
                {"title": title, "mode": mode, "collections": json.dumps(list(collections)),
                 "adapters": _adapters_json(adapters), "created": now, "updated": now}
            ).last_pk
        return self.chat(_pk(chat_id))

    def chat(self, chat_id: int) -> Chat:
        rows = list(self.db.query("SELECT * FROM chats WHERE id = ?", [chat_id]))
        if not rows:
            raise StoreError(f"There is no chat {chat_id}. List chats with `bastion chats list`.")
        return _chat(rows[0])

    def chats(self, search: str | None = None) -> list[Chat]:
        """All chats, most recently updated first; ``search`` filters by title."""
        if search:
            pattern = "%" + search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            rows = self.db.query(
                "SELECT * FROM chats WHERE title LIKE ? ESCAPE '\\' ORDER BY updated DESC, id DESC",
                [pattern],
            )
        else:
            rows = self.db.query("SELECT * FROM chats ORDER BY updated DESC, id DESC")
        return [_chat(r) for r in rows]

    def update_chat(self, chat_id: int, *, title: str | None = None, mode: Mode | None = None,
                    collections: Sequence[str] | None = None,
                    adapters: Sequence[tuple[str, float]] | None = None) -> Chat:
        changes: dict[str, Any] = {"updated": time.time()}
        if title is not None:
            changes["title"] = title.strip() or "Untitled chat"
        if mode is not None:
            changes["mode"] = mode
        if collections is not None:
            changes["collections"] = json.dumps(list(collections))
        if adapters is not None:
            changes["adapters"] = _adapters_json(adapters)
        with self._write():
            self.chat(chat_id)  # inside: a chat deleted meanwhile is an error, not a no-op
            self.db.table("chats").update(chat_id, changes)
        return self.chat(chat_id)

    def delete_chat(self, chat_id: int) -> None:
        """Delete the chat and its messages, both or neither."""
        with self._write():
            self.chat(chat_id)
            self.db.execute("DELETE FROM messages WHERE chat_id = ?", [chat_id])
            self.db.execute("DELETE FROM chats WHERE id = ?", [chat_id])

    # -- messages ----------------------------------------------------------------------------

    def add_message(self, chat_id: int, role: Role, content: str, *,
                    status: MessageStatus = "complete", meta: dict[str, Any] | None = None,
                    sources: Sequence[Source] = ()) -> Message:
        """Append a message, committed (durably) before this returns.

        The message and its chat's ``updated`` time are written as one unit: both or neither.
        """
        now = time.time()
        if status == "streaming":
            meta = {**(meta or {}), "writer_pid": os.getpid()}
        with self._write():
            msg_id = self.db.table("messages").insert(
                {"chat_id": chat_id, "role": role, "content": content, "status": status,
                 "created": now, "sources": _sources_json(sources), "meta": json.dumps(meta or {})}
            ).last_pk
            self.db.table("chats").update(chat_id, {"updated": now})
        return self.message(_pk(msg_id))

    def finish_message(self, message_id: int, content: str, status: MessageStatus, *,
                       meta: dict[str, Any] | None = None, sources: Sequence[Source] = ()) -> Message:
        with self._write():
            self.db.table("messages").update(
                message_id,
                {"content": content, "status": status, "sources": _sources_json(sources),
                 "meta": json.dumps(meta or {})},
            )
        return self.message(message_id)

    def update_content(self, message_id: int, content: str) -> None:
        """Save streamed text so far (a kill keeps what was shown)."""
        with self._write():
            self.db.table("messages").update(message_id, {"content": content})

    def message(self, message_id: int) -> Message:
        rows = list(self.db.query("SELECT * FROM messages WHERE id = ?", [message_id]))
        if not rows:
            raise StoreError(f"There is no message {message_id}.")
        return _message(rows[0])

    def messages(self, chat_id: int) -> list[Message]:
        rows = self.db.query("SELECT * FROM messages WHERE chat_id = ? ORDER BY id", [chat_id])
        return [_message(r) for r in rows]

    def mark_good(self, message_id: int, good: bool = True) -> Message:
        """Mark a finished answer good (or take the mark back).

        Raises:
            StoreError: there is no such message, or it is not a finished answer.
        """
        with self._write():
            message = self.message(message_id)
            if message.role != "assistant" or message.status != "complete":
                raise StoreError("Only a finished answer can be marked good; this message is "
                                 f"{'a question' if message.role == 'user' else message.status}.")
            self.db.execute("UPDATE messages SET marked_good_at = ? WHERE id = ?",
                            [time.time() if good else None, message_id])
        return self.message(message_id)

    def marked_answers(self, chat_ids: Sequence[int] | None = None) -> list[tuple[Message, Message]]:
        """Each answer marked good, with the question before it, oldest first; only those of
        ``chat_ids`` if given. An answer with no question before it is left out.

        Raises:
            StoreError: a chat of ``chat_ids`` does not exist.
        """
        for chat_id in chat_ids or ():
            self.chat(chat_id)
        sql = "SELECT * FROM messages WHERE marked_good_at IS NOT NULL AND role = 'assistant'"
        params: list[Any] = []
        if chat_ids:
            sql += f" AND chat_id IN ({','.join('?' * len(chat_ids))})"
            params = list(chat_ids)
        pairs = []
        for row in self.db.query(sql + " ORDER BY chat_id, id", params):
            before = list(self.db.query(
                "SELECT * FROM messages WHERE chat_id = ? AND id < ? ORDER BY id DESC LIMIT 1",
                [row["chat_id"], row["id"]]))
            if before and before[0]["role"] == "user":
                pairs.append((_message(before[0]), _message(row)))
        return pairs

    def truncate_after(self, chat_id: int, message_id: int, *, inclusive: bool) -> None:
        """Delete the messages after (or from) ``message_id``: editing or regenerating a turn."""
        op = ">=" if inclusive else ">"
        with self._write():
            self.db.execute(f"DELETE FROM messages WHERE chat_id = ? AND id {op} ?", [chat_id, message_id])

    def integrity_ok(self) -> bool:
        return bool(self.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok")


def _pk(value: object) -> int:
    if not isinstance(value, int):
        raise StoreError("The chat history did not return a row id; the database may be damaged.")
    return value


def _alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _sources_json(sources: Sequence[Source]) -> str:
    return json.dumps([s.__dict__ for s in sources])


def _chat(row: dict[str, Any]) -> Chat:
    return Chat(id=row["id"], title=row["title"], mode=row["mode"],
                collections=list(json.loads(row["collections"] or "[]")),
                created=row["created"], updated=row["updated"],
                adapters=[(str(name), float(scale))
                          for name, scale in json.loads(row.get("adapters") or "[]")])


def _adapters_json(adapters: Sequence[tuple[str, float]]) -> str:
    return json.dumps([[str(name), float(scale)] for name, scale in adapters])


def _message(row: dict[str, Any]) -> Message:
    return Message(
        id=row["id"], chat_id=row["chat_id"], role=row["role"], content=row["content"],
        status=row["status"], created=row["created"],
        sources=[Source(**s) for s in json.loads(row["sources"] or "[]")],
        meta=dict(json.loads(row["meta"] or "{}")),
        marked_good=row.get("marked_good_at") is not None,
    )
