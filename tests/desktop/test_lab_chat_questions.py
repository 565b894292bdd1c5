"""``bastion lab questions-from-chats``: the answers marked good become a question set scored
by token F1, which ``bastion lab run`` takes as it is."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bastion.desktop.cli import main
from bastion.desktop.lab.metrics import Passage, score, strip_citations
from bastion.desktop.lab.questions import load_questions
from bastion.desktop.paths import data_paths
from bastion.store.chats import ChatStore, Source


def chat_history() -> tuple[ChatStore, list[int]]:
    store = ChatStore(data_paths().chats_db)
    vault, lunch = store.create_chat(), store.create_chat()
    store.add_message(vault.id, "user", "What is the code of the north vault?")
    good = store.add_message(
        vault.id, "assistant", "The code of the north vault is 4417 [2]. Ask the guard [1, 2].",
        sources=[Source(1, "/docs/guards.txt", None, "…", 0.5, cited=True),
                 Source(2, "/docs/vault.txt", 3, "…", 0.9, cited=True)])
    store.add_message(vault.id, "user", "And the south vault?")
    store.add_message(vault.id, "assistant", "I could not find that.")  # not marked
    store.add_message(lunch.id, "user", "What is served on Fridays?")
    soup = store.add_message(lunch.id, "assistant", "Fish soup is served on Fridays.")
    store.mark_good(good.id)
    store.mark_good(soup.id)
    return store, [vault.id, lunch.id]


def test_marked_answers_become_a_question_set(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store, (_vault, lunch) = chat_history()
    store.close()
    out = tmp_path / "mine.jsonl"
    assert main(["lab", "questions-from-chats", str(out)]) == 0
    said = capsys.readouterr().out
    assert said.startswith(f"Wrote 2 questions from 2 chats to {out}.") and "token F1" in said
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert rows[0]["question"] == "What is the code of the north vault?"
    assert rows[0]["answers"] == ["The code of the north vault is 4417. Ask the guard."]
    assert rows[0]["source"] == "/docs/guards.txt"  # the first cited passage by number
    assert rows[0]["match"] == "f1"
    assert rows[1] == {"id": rows[1]["id"], "question": "What is served on Fridays?",
                       "answers": ["Fish soup is served on Fridays."], "match": "f1"}
    assert oct(out.stat().st_mode & 0o777) == "0o600"

    qset = load_questions(out)  # the lab reads it as any question set
    assert [q.match for q in qset.questions] == ["f1", "f1"]

    only = tmp_path / "lunch.jsonl"
    assert main(["lab", "questions-from-chats", str(only), "--chat", str(lunch)]) == 0
    assert [json.loads(line)["question"] for line in only.read_text().splitlines()] == [
        "What is served on Fridays?"]


def test_nothing_marked_an_existing_file_and_an_unknown_chat_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = ChatStore(data_paths().chats_db)
    chat = store.create_chat()
    store.add_message(chat.id, "user", "Hello?")
    store.add_message(chat.id, "assistant", "Hello.")
    store.close()
    out = tmp_path / "mine.jsonl"
    assert main(["lab", "questions-from-chats", str(out)]) == 1
    assert "No answer is marked good. In the window, mark the answers you trust with " \
           "“✓ good answer”" in capsys.readouterr().err
    assert not out.exists()
    assert main(["lab", "questions-from-chats", str(out), "--chat", "99"]) == 1
    assert "There is no chat 99" in capsys.readouterr().err
    out.write_text("mine\n", encoding="utf-8")
    chat_history()[0].close()
    assert main(["lab", "questions-from-chats", str(out)]) == 1
    assert "exists already: give another file name, or remove it first" in capsys.readouterr().err
    assert out.read_text(encoding="utf-8") == "mine\n"


def test_a_whole_gold_answer_is_scored_by_token_f1() -> None:
    gold = ["The code of the north vault is 4417. Ask the guard."]
    close = score("The north vault code is 4417 [1].", False, [], gold, False, match="f1")
    assert close.correct and not close.contains_gold and close.f1 is not None and close.f1 >= 0.5
    far = score("It is 4417.", False, [], gold, False, match="f1")
    assert not far.correct and far.f1 is not None and far.f1 < 0.5
    declined = score("The documents do not contain the code of the north vault.", False, [], gold,
                     False, match="f1")
    assert not declined.correct and declined.abstained and (declined.f1 or 0) >= 0.5
    assert score("It is 4417.", False, [Passage(1, "/v.txt", "", False)], ["4417"], False).correct
    assert strip_citations("It is 4417 [1]. See [2, 3].\nDone [4]") == "It is 4417. See.\nDone"


def test_a_bad_match_value_is_refused(tmp_path: Path) -> None:
    from bastion.desktop.lab.questions import QuestionSetError

    path = tmp_path / "q.jsonl"
    path.write_text(json.dumps({"question": "Q?", "answers": ["a"], "match": "exact"}) + "\n")
    with pytest.raises(QuestionSetError, match="line 1: 'match' must be \"contains\""):
        load_questions(path)
