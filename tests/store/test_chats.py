"""Chat history: durable, searchable, honest about interrupted answers."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import pytest
import sqlite_utils

from bastion.desktop.chat_export import export_chat
from bastion.store import chats
from bastion.store.chats import Chat, ChatStore, Source
from bastion.store.errors import StoreError
from bastion.store.migrations import run_migrations

from .sqlite_faults import FAULT, Write, fault_on, refuse_ledger_rows, snapshot


def test_chats_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "bastion.db"
    store = ChatStore(path)
    chat = store.create_chat("Taxes", mode="docs", collections=["finance"])
    store.add_message(chat.id, "user", "What is due in April?")
    store.add_message(chat.id, "assistant", "Form 7 [1].",
                      sources=[Source(n=1, path="/f/forms.pdf", page=2, snippet="Form 7 is due", score=0.5, cited=True)],
                      meta={"model": "m"})
    store.close()

    again = ChatStore(path)
    [reopened] = again.chats()
    assert (reopened.title, reopened.mode, reopened.collections) == ("Taxes", "docs", ["finance"])
    messages = again.messages(chat.id)
    assert [m.content for m in messages] == ["What is due in April?", "Form 7 [1]."]
    assert messages[1].sources[0].page == 2 and messages[1].meta == {"model": "m"}
    assert again.db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert again.integrity_ok()


def test_a_streaming_answer_left_by_a_crash_is_marked_interrupted(tmp_path: Path) -> None:
    path = tmp_path / "bastion.db"
    store = ChatStore(path)
    chat = store.create_chat()
    store.add_message(chat.id, "user", "q")
    answer = store.add_message(chat.id, "assistant", "", status="streaming")
    store.update_content(answer.id, "partial text")
    assert answer.meta["writer_pid"] == os.getpid()
    # As if the writing process had been killed: no finish_message, and its pid is gone.
    store.db["messages"].update(answer.id, {"meta": json.dumps({"writer_pid": _dead_pid()})})
    # Another process opening the store meanwhile must not touch a live writer's message.
    live = store.add_message(chat.id, "assistant", "", status="streaming")
    store.db.conn.close()
    again = ChatStore(path)
    message = again.message(answer.id)
    assert message.status == "interrupted" and message.content == "partial text"
    assert again.message(live.id).status == "streaming"


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_rename_delete_and_search_by_title(tmp_path: Path) -> None:
    store = ChatStore(tmp_path / "b.db")
    a = store.create_chat("Budget 2026")
    b = store.create_chat("Holiday plans")
    store.create_chat("100% literal_match")
    store.update_chat(b.id, title="Holiday plans (Norway)")
    assert [c.title for c in store.chats("norway")] == ["Holiday plans (Norway)"]
    assert [c.title for c in store.chats("%")] == ["100% literal_match"]
    assert [c.title for c in store.chats("_")] == ["100% literal_match"]
    store.add_message(a.id, "user", "x")
    store.delete_chat(a.id)
    assert all(c.id != a.id for c in store.chats())
    with pytest.raises(StoreError, match="no chat"):
        store.chat(a.id)


def test_locked_database_gives_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "b.db"
    ChatStore(path).close()
    blocker = sqlite3.connect(path)
    blocker.execute("PRAGMA locking_mode=EXCLUSIVE")
    blocker.execute("BEGIN EXCLUSIVE")
    with pytest.raises(StoreError, match="another Bastion"):
        store = ChatStore(path, timeout=0.2)
        store.create_chat()
    blocker.rollback()
    blocker.close()


def test_exports(tmp_path: Path) -> None:
    store = ChatStore(tmp_path / "b.db")
    chat = store.create_chat("Export me", mode="docs", collections=["c"])
    store.add_message(chat.id, "user", "Q1?")
    store.add_message(chat.id, "assistant", "A1 [1].",
                      sources=[Source(n=1, path="/x/y.pdf", page=4, snippet="snip", score=0.1, cited=True)])
    store.add_message(chat.id, "user", "Q2?")
    store.add_message(chat.id, "assistant", "A2 partial", status="interrupted")
    messages = store.messages(chat.id)

    md = export_chat(chat, messages, "md")
    assert md.startswith("# Export me") and "/x/y.pdf, page 4" in md and "(interrupted)" in md

    data = json.loads(export_chat(chat, messages, "json"))
    assert data["chat"]["title"] == "Export me" and len(data["messages"]) == 4

    lines = export_chat(chat, messages, "jsonl", system_prompt="Be brief.").splitlines()
    assert len(lines) == 1  # the interrupted answer is not training data
    pair = json.loads(lines[0])["messages"]
    assert [m["role"] for m in pair] == ["system", "user", "assistant"]
    assert pair[2]["content"] == "A1 [1]."


# -- atomicity: each write that takes several statements is saved whole or not at all ----------

# (write, the statement made to fail: the last one, after the others have run)
MULTI_STATEMENT_WRITES: dict[str, tuple[Callable[[ChatStore, Chat], object], Write, str]] = {
    # DELETE messages, then DELETE the chat
    "delete_chat": (lambda store, chat: store.delete_chat(chat.id), "DELETE", "chats"),
    # INSERT the message, then UPDATE the chat's `updated`
    "add_message": (lambda store, chat: store.add_message(chat.id, "user", "new"), "UPDATE", "chats"),
}


@pytest.mark.parametrize("name", sorted(MULTI_STATEMENT_WRITES))
def test_a_write_that_fails_half_way_leaves_the_history_as_it_was(tmp_path: Path, name: str) -> None:
    write, statement, table = MULTI_STATEMENT_WRITES[name]
    store = ChatStore(tmp_path / "b.db")
    chat = store.create_chat("Keep me")
    store.add_message(chat.id, "user", "q")
    store.add_message(chat.id, "assistant", "a")
    before = snapshot(store.db.conn)

    with fault_on(store.db.conn, statement, table), pytest.raises(sqlite3.IntegrityError, match=FAULT):
        write(store, chat)

    assert not store.db.conn.in_transaction
    assert snapshot(store.db.conn) == before
    store.close()
    with closing(sqlite3.connect(tmp_path / "b.db")) as other:  # and as another process sees it
        assert snapshot(other) == before
    again = ChatStore(tmp_path / "b.db")
    write(again, chat)  # without the fault the same write goes through
    assert snapshot(again.db.conn) != before


def test_delete_chat_of_a_missing_chat_changes_nothing(tmp_path: Path) -> None:
    store = ChatStore(tmp_path / "b.db")
    store.add_message(store.create_chat().id, "user", "q")
    before = snapshot(store.db.conn)
    with pytest.raises(StoreError, match="no chat"):
        store.delete_chat(999)
    assert snapshot(store.db.conn) == before and not store.db.conn.in_transaction


def test_a_chat_database_busy_past_the_timeout_gives_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "b.db"
    store = ChatStore(path, timeout=0.1)
    chat = store.create_chat()
    with closing(sqlite3.connect(path, isolation_level=None)) as other:
        other.execute("BEGIN IMMEDIATE")  # another process in the middle of a write
        with pytest.raises(StoreError, match="busy: another Bastion"):
            store.add_message(chat.id, "user", "q")
        other.execute("ROLLBACK")
    assert store.messages(chat.id) == [] and not store.db.conn.in_transaction
    store.add_message(chat.id, "user", "q")
    assert [m.content for m in store.messages(chat.id)] == ["q"]


@pytest.mark.parametrize("index", range(len(chats.MIGRATIONS)), ids=[n for n, _ in chats.MIGRATIONS])
def test_a_chat_migration_refused_its_version_bump_leaves_the_file_as_it_was(
    tmp_path: Path, index: int
) -> None:
    path = tmp_path / "bastion.db"
    with closing(sqlite_utils.Database(path)) as db:  # the history as the previous version left it
        run_migrations(db, chats.MIGRATIONS[:index], applied_column="applied")
        refuse_ledger_rows(db.conn, "applied")
        before = snapshot(db.conn)

    with pytest.raises(StoreError, match="Could not open the chat history"):
        ChatStore(path)

    with closing(sqlite3.connect(path)) as conn:
        assert snapshot(conn) == before
        conn.execute("DROP TRIGGER refuse_ledger_rows")
        conn.commit()
    ChatStore(path).close()  # once the fault is gone, the same migration goes through


def test_the_first_chat_migration_failing_midway_leaves_the_file_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "bastion.db"
    with closing(sqlite3.connect(path)) as conn:
        # 001 creates `chats`, then fails on `messages`, before its index and its ledger row.
        conn.execute("CREATE TABLE messages (x)")
        conn.commit()
        before = snapshot(conn)

    with pytest.raises(StoreError, match="already exists"):
        ChatStore(path)

    with closing(sqlite3.connect(path)) as conn:
        assert snapshot(conn) == before  # no `chats`, no `_migrations`


def test_a_chat_keeps_its_adapters_and_scales(tmp_path: Path) -> None:
    store = ChatStore(tmp_path / "bastion.db")
    chat = store.create_chat(adapters=[("legal-style", 0.8)])
    assert store.chat(chat.id).adapters == [("legal-style", 0.8)]
    store.update_chat(chat.id, adapters=[("legal-style", 1.0), ("terse", 0.5)])
    assert store.chat(chat.id).adapters == [("legal-style", 1.0), ("terse", 0.5)]
    assert store.update_chat(chat.id, adapters=[]).adapters == []
    store.close()


def test_a_history_from_before_adapters_opens_with_none(tmp_path: Path) -> None:
    import sqlite_utils

    from bastion.store.chats import MIGRATIONS
    from bastion.store.migrations import run_migrations

    path = tmp_path / "old.db"
    db = sqlite_utils.Database(path)
    run_migrations(db, MIGRATIONS[:1], applied_column="applied")
    db.table("chats").insert({"title": "old", "mode": "model", "collections": "[]",
                              "created": 1.0, "updated": 1.0})
    db.conn.close()
    store = ChatStore(path)
    assert [c.adapters for c in store.chats()] == [[]]
    store.close()


def test_a_history_from_before_marks_opens_with_every_answer_unmarked(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with closing(sqlite_utils.Database(path)) as db:  # as version 002 left it
        run_migrations(db, chats.MIGRATIONS[:2], applied_column="applied")
        chat_id = db.table("chats").insert({"title": "old", "mode": "model", "collections": "[]",
                                            "created": 1.0, "updated": 1.0}).last_pk
        for role, content in (("user", "Who?"), ("assistant", "Marta [1].")):
            db.table("messages").insert({"chat_id": chat_id, "role": role, "content": content,
                                         "status": "complete", "created": 1.0, "sources": "[]",
                                         "meta": "{}"})
    store = ChatStore(path)
    question, answer = store.messages(chat_id)
    assert not answer.marked_good and store.marked_answers() == []
    assert store.mark_good(answer.id).marked_good
    assert store.marked_answers() == [(question, store.message(answer.id))]
    store.close()
    with closing(sqlite3.connect(path)) as conn:
        names = [r[0] for r in conn.execute("SELECT name FROM _migrations ORDER BY name")]
    assert names == ["001_initial", "002_chat_adapters", "003_marked_answers"]


def test_marking_answers_good_and_listing_them_with_their_questions(tmp_path: Path) -> None:
    store = ChatStore(tmp_path / "bastion.db")
    first, second = store.create_chat(), store.create_chat()
    q1 = store.add_message(first.id, "user", "What is the code?")
    a1 = store.add_message(first.id, "assistant", "It is 4417 [1].")
    store.add_message(first.id, "user", "And the lot?")
    a2 = store.add_message(first.id, "assistant", "Lot C.")
    q3 = store.add_message(second.id, "user", "Who founded it?")
    a3 = store.add_message(second.id, "assistant", "Marta Quell.")
    streaming = store.add_message(second.id, "assistant", "Part", status="streaming")

    store.mark_good(a1.id)
    store.mark_good(a3.id)
    store.mark_good(a2.id)
    assert not store.mark_good(a2.id, good=False).marked_good  # taken back
    assert [(q.id, a.id) for q, a in store.marked_answers()] == [(q1.id, a1.id), (q3.id, a3.id)]
    assert [(q.id, a.id) for q, a in store.marked_answers([second.id])] == [(q3.id, a3.id)]
    # A finished answer keeps its mark when read back with the chat.
    assert [m.marked_good for m in store.messages(first.id)] == [False, True, False, False]

    with pytest.raises(StoreError, match="Only a finished answer can be marked good; this message is a question"):
        store.mark_good(q1.id)
    with pytest.raises(StoreError, match="this message is streaming"):
        store.mark_good(streaming.id)
    with pytest.raises(StoreError, match="There is no chat 99"):
        store.marked_answers([99])
    store.close()
