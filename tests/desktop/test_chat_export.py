"""A chat exported as Markdown lists each answer's cited sources, then the others it was shown."""

from __future__ import annotations

from bastion.desktop.chat_export import to_markdown
from bastion.store.chats import Chat, Message, Source


def answer(sources: list[Source]) -> list[Message]:
    return [Message(1, 1, "user", "Where?", "complete", 0.0),
            Message(2, 1, "assistant", "Lot C [2].", "complete", 0.0, sources=sources)]


CHAT = Chat(1, "Parking", "docs", ["office"], 0.0, 0.0)


def test_cited_sources_first_and_the_others_nested_under_also_retrieved() -> None:
    md = to_markdown(CHAT, answer([Source(1, "/d/a.txt", 3, "Alpha.", 0.1),
                                   Source(2, "/d/b.txt", None, "Beta.", 0.1, cited=True)]))
    assert ("Sources:\n- [2] /d/b.txt — Beta.\n- Also retrieved:\n  - [1] /d/a.txt, page 3 — Alpha.\n"
            in md)


def test_an_answer_citing_nothing_says_so() -> None:
    md = to_markdown(CHAT, answer([Source(1, "/d/a.txt", None, "Alpha.", 0.1)]))
    assert "Sources: no passage cited\n- Also retrieved:\n  - [1] /d/a.txt — Alpha.\n" in md
    assert "Sources" not in to_markdown(CHAT, answer([]))
