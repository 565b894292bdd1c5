"""The background jobs without Qt: a Stop said before generation begins still stops it."""

from __future__ import annotations

from typing import Any

from bastion.desktop.assistant import AnswerDone
from bastion.desktop.gui import core_tasks
from tests.gui.fakes import FakeApp, StreamingEngine


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
