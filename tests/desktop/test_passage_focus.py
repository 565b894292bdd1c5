"""Passages trimmed to the sentences a question needs: which sentences stay, in what order, and
that the prompt, not the citation, is what is trimmed — for answers and for training alike."""

from __future__ import annotations

import json
from pathlib import Path

from bastion.desktop import grounding
from bastion.desktop.grounded_training import GroundedOptions, build_grounded_data
from bastion.desktop.grounding import RetrievalPolicy, select_passages
from bastion.desktop.lab.questions import load_questions
from bastion.desktop.passage_focus import FocusPolicy, focus_passages, split_sentences
from bastion.models.finetune_data import read_chat_jsonl
from tests.desktop.fakes import FakeHit

HARBOUR = ("The harbour of Orvane is old. Fishing boats leave before dawn. "
           "Its lighthouse was built in 1821 by the engineer Alma Ruske. She also drew the pier. "
           "The town holds a market on Sundays. Tourists come in summer.")


def count(texts: object) -> list[int]:
    return [len(str(t)) // 4 for t in texts]  # type: ignore[attr-defined]


def test_sentences_end_at_stops_and_at_blank_lines_and_list_items() -> None:
    text = "Intro line\n\nFirst sentence here. Second one!\n- an item\n- another item"
    assert split_sentences(text) == ["Intro line", "First sentence here.", "Second one!", "- an item",
                                     "- another item"]


def test_the_best_sentence_and_the_one_after_it_stay_in_order_with_gaps_marked() -> None:
    [focused] = focus_passages("Who built the lighthouse of Orvane?", [HARBOUR], FocusPolicy(sentences=2))
    # "lighthouse" is the rarest question word; "Orvane" picks the opening sentence second.
    assert focused == ("The harbour of Orvane is old. … Its lighthouse was built in 1821 by the "
                       "engineer Alma Ruske. She also drew the pier. …")


def test_rare_words_outweigh_common_ones_across_the_passages() -> None:
    other = "Orvane is a town. Orvane has a port. Orvane is in the north. Orvane sells fish."
    focused = focus_passages("When was the Orvane lighthouse built?", [HARBOUR, other],
                             FocusPolicy(sentences=1, follow=False))
    assert focused[0] == "… Its lighthouse was built in 1821 by the engineer Alma Ruske. …"


def test_short_passages_and_policy_zero_keep_the_whole_text() -> None:
    short = "One sentence. Two sentences. Three."
    assert focus_passages("anything at all", [short], FocusPolicy(sentences=2)) == [short]
    assert focus_passages("lighthouse", [HARBOUR], FocusPolicy(sentences=0)) == [HARBOUR]


def test_a_passage_sharing_no_word_keeps_its_opening() -> None:
    [focused] = focus_passages("zebra quagga", [HARBOUR], FocusPolicy(sentences=2))
    assert focused == "The harbour of Orvane is old. Fishing boats leave before dawn. …"


def test_the_prompt_gets_the_trimmed_passage_and_the_source_the_whole_one() -> None:
    hit = FakeHit(HARBOUR, "/d/orvane.txt", vector_score=0.6, bm25_score=2.0)
    trimmed = select_passages([hit], RetrievalPolicy(sentences=1), 10_000, count, "Who built the lighthouse?")
    whole = select_passages([hit], RetrievalPolicy(sentences=0), 10_000, count, "Who built the lighthouse?")
    assert "Alma Ruske" in trimmed.texts[0] and "Sundays" not in trimmed.texts[0]
    assert "Sundays" in whole.texts[0]
    assert trimmed.sources[0].snippet == whole.sources[0].snippet  # the citation names the whole passage
    assert (trimmed.sources[0].char_start, trimmed.sources[0].char_end) == (hit.char_start, hit.char_end)


def test_training_prompts_are_trimmed_like_answers_and_teach_a_kept_sentence(tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    path.write_text(json.dumps({"id": "1", "question": "Who built the lighthouse?",
                                "answers": ["Alma Ruske"]}) + "\n" +
                    json.dumps({"id": "2", "question": "Who built the lighthouse in town?",
                                "answers": ["tourists"]}) + "\n")
    market = ("Markets: the Sunday market sells fish. Tourists rarely come. The church is old. "
              "Bells ring at noon.")
    out = tmp_path / "g.jsonl"
    data = build_grounded_data(load_questions(path), lambda q: [FakeHit(HARBOUR, "/d/a.txt"),
                                                                FakeHit(market, "/d/b.txt")],
                               out, system_prompt=None,
                               options=GroundedOptions(passages=2, abstention_fraction=0.0,
                                                       answer_style="citation-first", sentences=1))
    [example] = read_chat_jsonl(out)
    user, assistant = (m["content"] for m in example.messages)
    assert assistant == "[1] Its lighthouse was built in 1821 by the engineer Alma Ruske."
    assert "Sundays" not in user and user.startswith(grounding.DOCS_INSTRUCTION)
    # "tourists" is only in sentences the trimming drops: that question is left out, counted.
    assert data.not_retrieved == 1
