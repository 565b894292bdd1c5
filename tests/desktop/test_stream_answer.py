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


def test_sources_list_what_the_answer_cites_then_the_others_indented() -> None:
    sources = [Source(1, "/d/a.txt", 3, "Alpha text.", 0.031),
               Source(2, "/d/b.txt", None, "Beta text.", 0.030, cited=True, cited_by="marker"),
               Source(3, "/d/c.txt", None, "Gamma text.", 0.029)]
    out, _ = printed("Beta [2].", sources, {})
    listing = out.split("\n\nSources:")[1].splitlines()
    assert listing == [
        "",
        "  [2] /d/b.txt  (score 0.030)",
        "      Beta text.",
        "  Also retrieved:",
        "    [1] /d/a.txt, page 3  (score 0.031)",
        "        Alpha text.",
        "    [3] /d/c.txt  (score 0.029)",
        "        Gamma text.",
    ]


def test_an_answer_citing_nothing_says_so_and_lists_every_passage_as_also_retrieved() -> None:
    sources = [Source(1, "/d/a.txt", None, "Alpha text.", 0.031)]
    out, _ = printed("Something.", sources, {})
    assert "\nSources: no passage cited\n  Also retrieved:\n    [1] /d/a.txt  (score 0.031)\n" in out


def test_an_answer_without_sources_lists_none() -> None:
    out, _ = printed("Hello.", [], {})
    assert "Sources" not in out
