"""What ``bastion ask`` and ``bastion chat`` print under an answer (no model: scripted events)."""

from __future__ import annotations

import io
from typing import Any

from bastion.desktop.assistant import AnswerDelta, AnswerDone, PassagesFound
from bastion.desktop.cli.chat_cmd import stream_answer
from bastion.desktop.grounding import NOT_FOUND_ANSWER
from bastion.store.chats import Message, Source


def printed(text: str, sources: list[Source], meta: dict[str, Any]) -> tuple[str, str]:
    message = Message(id=2, chat_id=1, role="assistant", content=text, status="complete", created=0.0,
                      sources=sources, meta=meta)
    out, err = io.StringIO(), io.StringIO()
    stream_answer([PassagesFound(sources, 3.0, "q"), AnswerDelta(text), AnswerDone(message)], out, err)
    return out.getvalue(), err.getvalue()


def test_a_refused_answer_says_why_and_what_to_do() -> None:
    reason = "no passage in “history” was relevant enough (best match 0.30, needed 0.45)"
    out, err = printed(NOT_FOUND_ANSWER, [], {"not_found": True, "not_found_reason": reason})
    assert out.strip() == NOT_FOUND_ANSWER
    assert f"not answered from your documents: {reason}." in err and "--mode both" in err


def test_a_cleaned_answer_is_printed_as_stored_after_what_streamed() -> None:
    source = Source(1, "/d/parking.txt", None, "Visitors park in lot C.", 0.03, cited=True)
    message = Message(id=2, chat_id=1, role="assistant", content="In lot C [1].", status="complete",
                      created=0.0, sources=[source], meta={"debris_removed": True})
    out, err = io.StringIO(), io.StringIO()
    stream_answer([AnswerDelta("In lot C [1]. [end of passage 1]"), AnswerDone(message)], out, err)
    assert "the answer as stored" in err.getvalue()
    assert out.getvalue().startswith("In lot C [1]. [end of passage 1]\nIn lot C [1].\n")


def test_an_answer_streamed_clean_is_printed_once() -> None:
    out, _ = printed("In lot C [1].", [], {})
    assert out.count("In lot C") == 1
