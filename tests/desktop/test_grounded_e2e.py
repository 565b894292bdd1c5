"""Grounded answers end to end: real SmolLM2, real MiniLM, a small generated document folder."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bastion.desktop.app import App
from bastion.desktop.assistant import AnswerDone, PassagesFound
from bastion.desktop.grounding import NOT_FOUND_ANSWER
from bastion.desktop.library import add_collection
from bastion.models.engine_types import Sampling

pytestmark = pytest.mark.slow

FACTS = {
    "vault.txt": "Security procedures.\n\nThe access code for the north vault is 4417. "
                 "Only the night supervisor may open the north vault.",
    "cafeteria.txt": "Cafeteria.\n\nThe cafeteria serves lunch from noon until two o'clock. "
                     "On Fridays the cafeteria serves fish soup.",
    "parking.txt": "Parking.\n\nVisitors park in lot C, next to the main gate. "
                   "Staff park in lot A behind the laboratory.",
}


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    home = tmp_path_factory.mktemp("home")
    docs = tmp_path_factory.mktemp("docs")
    for name, text in FACTS.items():
        (docs / name).write_text(text, encoding="utf-8")
    mp = pytest.MonkeyPatch()
    mp.setenv("BASTION_HOME", str(home))
    with App() as app:
        app.settings.n_ctx = 2048
        add_collection(app.library, "office", [docs])
        for _ in app.library.sync("office"):
            pass
        yield app
    mp.undo()


def ask(app: App, question: str, mode: str = "docs", chat_id: int | None = None):
    assistant = app.assistant()
    assistant.sampling = Sampling(max_tokens=48, temperature=0.0, repeat_penalty=1.1)
    if chat_id is None:
        chat_id = app.chats.create_chat(mode=mode, collections=["office"]).id  # type: ignore[arg-type]
    events = list(assistant.ask(chat_id, question))
    done = events[-1]
    assert isinstance(done, AnswerDone)
    return events, done, chat_id


def test_documents_answer_cites_the_passage_holding_the_fact(app: App) -> None:
    events, done, _ = ask(app, "What is the access code for the north vault?")
    found = next(e for e in events if isinstance(e, PassagesFound))
    assert found.sources and found.sources[0].path.endswith("vault.txt")
    assert "4417" in done.message.content
    cited = [s for s in done.message.sources if s.cited]
    assert cited and cited[0].path.endswith("vault.txt")
    assert done.message.meta["retrieval_ms"] > 0 and done.message.meta["time_to_first_token_s"] > 0


def test_unanswerable_question_takes_the_not_found_path(app: App) -> None:
    _, done, _ = ask(app, "What is the boiling point of liquid nitrogen in kelvin?")
    assert done.not_found
    assert done.message.content == NOT_FOUND_ANSWER


def test_long_history_plus_passages_fits_the_context(app: App) -> None:
    chat_id = app.chats.create_chat(mode="docs", collections=["office"]).id
    filler = "We talked about many unrelated things at length. " * 40  # ~400 tokens a message
    for i in range(8):
        app.chats.add_message(chat_id, "user", f"Question {i}. {filler}")
        app.chats.add_message(chat_id, "assistant", f"Answer {i}. {filler}")
    _, done, _ = ask(app, "Where do visitors park?", chat_id=chat_id)
    meta = done.message.meta
    assert done.message.status == "complete", done.message
    assert meta.get("history_messages_dropped", 0) > 0, done.message
    assert meta["prompt_tokens"] + 48 <= 2048
