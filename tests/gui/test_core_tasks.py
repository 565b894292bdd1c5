"""The background jobs without Qt: a Stop said before generation begins still stops it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bastion.desktop.assistant import AnswerDone
from bastion.desktop.gui import core_tasks
from bastion.store.library import Library
from bastion.store.library_types import SyncProgress
from tests.gui.fakes import FakeApp, StreamingEngine
from tests.store.fakes import HashingEmbedder, text_pool


class CancelledJob:
    """A job whose Stop was pressed before it ran (what ``workers.Job`` does, minus Qt)."""

    cancelled = True

    def set_canceller(self, canceller: Any) -> None:
        canceller()  # as Job.set_canceller does when the job is already cancelled

    def report(self, value: object) -> None:
        pass


def test_an_early_stop_reaches_the_answer_once_it_runs() -> None:
    engine = StreamingEngine(" ".join(f"w{i}" for i in range(300)))
    app = FakeApp(engine)
    try:
        session = core_tasks.CoreSession(app)
        chat = app.chats.create_chat()
        events = list(core_tasks.answer(session, CancelledJob(), chat.id, "ask", "Hello?"))
        done = next(e for e in events if isinstance(e, AnswerDone))
        assert done.message.status == "interrupted"
        assert len(done.message.content.split()) < 5
        assert isinstance(events[-1], core_tasks.ChatSynced)
        assert [m.role for m in events[-1].messages] == ["user", "assistant"]
    finally:
        app.close()


class _Job:
    cancelled = False


def test_a_sync_reports_the_files_it_found_and_how_they_move_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    for i in range(5):
        (folder / f"note{i}.txt").write_text(f"Note {i} on harbour lights.\n" * 20)
    library = Library(tmp_path / "library.db", lambda _folder: HashingEmbedder(), text_pool)
    library.add_collection("docs", [folder])
    monkeypatch.setattr(core_tasks, "SNAPSHOT_EVERY_S", 0.0)  # one after every event
    monkeypatch.setattr(core_tasks, "SNAPSHOT_COST_SHARE", 0)
    events = list(core_tasks.sync_collection(library, _Job(), "docs"))
    snapshots = [e for e in events if isinstance(e, core_tasks.SyncSnapshot)]
    assert snapshots, "the page hears of the files before the sync ends"
    first = snapshots[0]
    assert first.collection == "docs" and len(first.documents) == 5
    assert sum(first.statuses[0].counts.values()) == 5
    assert first.statuses[0].counts.get("indexed", 0) < 5, "taken while the sync was under way"
    assert snapshots[-1].statuses[0].counts.get("indexed") == 5, "the counts move on"
    done = next(i for i, e in enumerate(events) if isinstance(e, SyncProgress) and e.phase == "done")
    assert events.index(first) < done
    library.close()
