"""``answer_once``: one answer made without any chat storage (fakes for engine and retriever)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bastion.desktop.answering import (
    AnswerConfig,
    AnswerDelta,
    AnswerFinished,
    GenerationStarted,
    PassagesFound,
    answer_once,
)
from bastion.desktop.errors import BastionError
from bastion.desktop.grounding import NOT_FOUND_ANSWER
from bastion.models.engine_types import AdapterUse, Sampling
from tests.desktop.fakes import FakeEngine, FakeHit, FakeRetriever

VAULT = FakeHit("The access code for the north vault is 4417.\n", "/d/vault.pdf", page=2, char_start=10)


def test_a_grounded_answer_streams_then_ends_with_its_record(bastion_home: Path) -> None:
    engine = FakeEngine("The code is 4417 [1].")
    config = AnswerConfig(mode="docs", collections=("office",), sampling=Sampling(max_tokens=64))
    events = list(answer_once("What is the vault code?", config, engine, FakeRetriever([VAULT])))

    kinds = [type(e) for e in events]
    assert kinds[:2] == [PassagesFound, GenerationStarted] and kinds[-1] is AnswerFinished
    assert "".join(e.text for e in events if isinstance(e, AnswerDelta)) == "The code is 4417 [1]."
    record = events[-1].record
    assert record.complete and record.text == "The code is 4417 [1]." and not record.not_found
    assert [(s.path, s.page, s.cited) for s in record.citations] == [("/d/vault.pdf", 2, True)]
    assert record.passage_texts == [VAULT.text]  # whole, not the snippet
    assert record.model == "fake" and record.stats is not None and record.stats.generated_tokens == 5
    assert record.query == "What is the vault code?" and record.total_s >= record.retrieval_ms / 1000
    assert record.meta()["finish_reason"] == "stop" and record.meta()["collections"] == ["office"]
    assert list(bastion_home.iterdir()) == []  # nothing stored anywhere


def test_docs_mode_refuses_without_asking_the_model() -> None:
    engine = FakeEngine()
    weak = FakeHit("Cats sleep a lot.", "/d/cats.txt", vector_score=0.05, bm25_score=None)
    stream = answer_once("GDP of Peru?", AnswerConfig(mode="docs", collections=("d",)), engine,
                         FakeRetriever([weak]))
    events = list(stream)
    assert engine.prompts == [] and not any(isinstance(e, GenerationStarted) for e in events)
    assert stream.record is not None and stream.record.not_found and stream.record.complete
    assert stream.record.text == NOT_FOUND_ANSWER and stream.record.stats is None
    assert "relevant enough" in (stream.record.not_found_reason or "")


def test_history_reaches_the_prompt_and_a_follow_up_is_searched_with_it() -> None:
    engine, retriever = FakeEngine("Close it [1]."), FakeRetriever([VAULT])
    history = [{"role": "user", "content": "How do I open the north vault?"},
               {"role": "assistant", "content": "With the code."}]
    list(answer_once("and then?", AnswerConfig(mode="both", collections=("d",),
                                               system_prompt="Be brief."),
                     engine, retriever, history=history))
    prompt = engine.prompts[0]
    assert prompt[0] == {"role": "system", "content": "Be brief."}
    assert prompt[1:3] == history and prompt[-1]["content"].endswith("Question: and then?")
    assert retriever.queries[0][0] == "How do I open the north vault? and then?"


def test_closing_the_stream_stops_the_engine_and_keeps_an_incomplete_record() -> None:
    engine = FakeEngine("one two three four")
    stream = answer_once("Count", AnswerConfig(), engine)
    for event in stream:
        if isinstance(event, AnswerDelta):
            break
    stream.close()
    assert stream.record is not None and not stream.record.complete
    assert stream.record.text == "one" and stream.record.finish_reason == "cancelled"


def test_engine_cancel_ends_the_stream_with_an_incomplete_record() -> None:
    engine = FakeEngine("a b c d")
    stream = answer_once("letters", AnswerConfig(), engine)
    next(e for e in stream if isinstance(e, AnswerDelta))
    engine.cancel()
    finished = [e for e in stream if isinstance(e, AnswerFinished)]
    assert len(finished) == 1 and not finished[0].record.complete


def test_adapters_are_resolved_and_the_unknown_left_out() -> None:
    from bastion.models.errors import ModelNotFound

    def path_of(name: str) -> Path:
        if name == "gone":
            raise ModelNotFound("There is no adapter called 'gone'.")
        return Path(f"/a/{name}.gguf")

    engine = FakeEngine("Fine.")
    stream = answer_once("Hi", AnswerConfig(adapters=(("terse", 0.5), ("gone", 1.0))), engine,
                         adapter_path=path_of)
    list(stream)
    assert engine.adapters_used == [(AdapterUse("/a/terse.gguf", 0.5),)]
    assert stream.record is not None and stream.record.adapters == [{"name": "terse", "scale": 0.5}]
    assert stream.record.adapters_skipped[0]["name"] == "gone"


def test_an_empty_question_or_adapters_without_a_catalog_are_refused_at_once() -> None:
    with pytest.raises(BastionError, match="empty"):
        answer_once("  ", AnswerConfig(), FakeEngine())
    with pytest.raises(BastionError, match="adapter catalog"):
        answer_once("Hi", AnswerConfig(adapters=(("x", 1.0),)), FakeEngine())


def test_a_stop_sequence_ends_the_answer_before_it_and_is_never_streamed() -> None:
    engine = FakeEngine("alpha beta END gamma delta")
    stream = answer_once("Go", AnswerConfig(stop=("END", "zeta")), engine)
    streamed = "".join(e.text for e in stream if isinstance(e, AnswerDelta))
    assert streamed == "alpha beta " and engine.cancelled  # the engine was told to stop
    assert stream.record is not None and stream.record.complete
    assert stream.record.text == "alpha beta " and stream.record.finish_reason == "stop"


def test_text_that_only_starts_like_a_stop_sequence_is_streamed_in_full() -> None:
    stream = answer_once("Go", AnswerConfig(stop=("ENDS",)), FakeEngine("one END two"))
    assert "".join(e.text for e in stream if isinstance(e, AnswerDelta)) == "one END two"
