"""The assistant flow with fakes: modes, grounding, persistence, citations, budget."""

from __future__ import annotations

from pathlib import Path

import pytest

from bastion.desktop.assistant import AnswerDelta, AnswerDone, Assistant, PassagesFound
from bastion.desktop.grounding import NOT_FOUND_ANSWER, PASSAGES_HEADER, RetrievalPolicy
from bastion.models.engine_types import AdapterUse
from bastion.store.chats import ChatStore
from tests.desktop.fakes import FakeEngine, FakeHit, FakeRetriever


@pytest.fixture
def store(tmp_path: Path) -> ChatStore:
    return ChatStore(tmp_path / "bastion.db")


def run(events) -> tuple[list, AnswerDone]:
    collected = list(events)
    done = collected[-1]
    assert isinstance(done, AnswerDone)
    return collected, done


def test_model_mode_never_retrieves(store: ChatStore) -> None:
    retriever = FakeRetriever([FakeHit("Paris is the capital of France.", "/d/a.txt")])
    assistant = Assistant(FakeEngine("Hello there."), store, retriever)
    chat = store.create_chat(mode="model", collections=["docs"])
    events, done = run(assistant.ask(chat.id, "Hi?"))
    assert retriever.queries == []
    assert not any(isinstance(e, PassagesFound) for e in events)
    assert done.message.content == "Hello there."
    assert done.message.status == "complete"
    assert done.message.meta["mode"] == "model"


def test_docs_mode_cites_passages_and_stores_sources(store: ChatStore) -> None:
    retriever = FakeRetriever([
        FakeHit("The launch code is 7741.", "/d/codes.pdf", page=3),
        FakeHit("Unrelated text about cats.", "/d/cats.txt", vector_score=0.1, bm25_score=None),
    ])
    engine = FakeEngine("The code is 7741 [1].")
    assistant = Assistant(engine, store, retriever)
    chat = store.create_chat(mode="docs", collections=["docs"])
    events, done = run(assistant.ask(chat.id, "What is the launch code?"))
    found = next(e for e in events if isinstance(e, PassagesFound))
    assert [s.path for s in found.sources] == ["/d/codes.pdf"]  # the cat passage is below threshold
    prompt_user = engine.prompts[0][-1]["content"]
    assert PASSAGES_HEADER in prompt_user and "[1] (codes.pdf, page 3)" in prompt_user
    assert prompt_user.endswith("Question: What is the launch code?")
    sources = done.message.sources
    assert len(sources) == 1 and sources[0].cited and sources[0].page == 3
    assert done.message.meta["passages_below_threshold"] == 1
    # Stored, and survives reopening.
    again = store.messages(chat.id)
    assert [m.role for m in again] == ["user", "assistant"]
    assert again[1].sources[0].path == "/d/codes.pdf"


def test_docs_mode_with_nothing_relevant_says_not_found_without_generating(store: ChatStore) -> None:
    retriever = FakeRetriever([FakeHit("Cats sleep a lot.", "/d/cats.txt", vector_score=0.05, bm25_score=None)])
    engine = FakeEngine()
    assistant = Assistant(engine, store, retriever)
    chat = store.create_chat(mode="docs", collections=["docs"])
    _, done = run(assistant.ask(chat.id, "What is the GDP of Peru?"))
    assert done.not_found and done.message.content == NOT_FOUND_ANSWER
    assert engine.prompts == []


def test_both_mode_answers_from_the_model_when_nothing_is_found(store: ChatStore) -> None:
    engine = FakeEngine("Lima is the capital.")
    assistant = Assistant(engine, store, FakeRetriever([]))
    chat = store.create_chat(mode="both", collections=["docs"])
    _, done = run(assistant.ask(chat.id, "What is the capital of Peru?"))
    assert done.message.content == "Lima is the capital."
    assert engine.prompts[0][-1]["content"] == "What is the capital of Peru?"


def test_follow_up_retrieval_uses_the_previous_question(store: ChatStore) -> None:
    retriever = FakeRetriever([FakeHit("Step one: open the valve. Step two: close it.", "/d/m.txt")])
    assistant = Assistant(FakeEngine("Open the valve [1]."), store, retriever)
    chat = store.create_chat(mode="docs", collections=["docs"])
    run(assistant.ask(chat.id, "What are the steps of the valve procedure?"))
    run(assistant.ask(chat.id, "and the second one?"))
    assert retriever.queries[1][0] == "What are the steps of the valve procedure? and the second one?"
    assert retriever.queries[1][1] == ("docs",)
    assert retriever.queries[2][0] == "and the second one?"  # also searched on its own


def test_lowest_ranked_passages_are_dropped_to_fit_the_budget(store: ChatStore) -> None:
    long_text = "word " * 600  # ~750 fake tokens each
    hits = [FakeHit(f"{long_text} passage {i}", f"/d/{i}.txt") for i in range(6)]
    engine = FakeEngine("ok [1].", n_ctx=2048)
    assistant = Assistant(engine, store, FakeRetriever(hits), policy=RetrievalPolicy(k=6))
    chat = store.create_chat(mode="docs", collections=["docs"])
    events, done = run(assistant.ask(chat.id, "question?"))
    kept = next(e for e in events if isinstance(e, PassagesFound)).sources
    assert 0 < len(kept) < 6
    assert [s.path for s in kept] == [f"/d/{i}.txt" for i in range(len(kept))]  # best first kept
    assert done.message.meta["passages_dropped_for_budget"] == 6 - len(kept)


def test_user_message_is_committed_before_generation(store: ChatStore) -> None:
    assistant = Assistant(FakeEngine("one two three four"), store)
    chat = store.create_chat()
    events = assistant.ask(chat.id, "Count to four")
    first = next(events)  # the first delta: generation has started
    assert isinstance(first, AnswerDelta)
    stored = store.messages(chat.id)
    assert stored[0].role == "user" and stored[0].content == "Count to four"
    assert stored[1].status == "streaming"
    events.close()  # the user pressed Stop
    final = store.messages(chat.id)
    assert final[1].status == "interrupted" and final[1].content == "one"


def test_cancel_stores_an_interrupted_answer(store: ChatStore) -> None:
    engine = FakeEngine("a b c d e f")
    assistant = Assistant(engine, store)
    chat = store.create_chat()
    events = assistant.ask(chat.id, "letters")
    next(events)
    assistant.cancel()
    rest = list(events)
    done = rest[-1]
    assert isinstance(done, AnswerDone) and done.message.status == "interrupted"


def test_regenerate_replaces_the_last_answer(store: ChatStore) -> None:
    engine = FakeEngine("first")
    assistant = Assistant(engine, store)
    chat = store.create_chat()
    run(assistant.ask(chat.id, "q"))
    engine.reply = "second"
    run(assistant.regenerate(chat.id))
    messages = store.messages(chat.id)
    assert [(m.role, m.content) for m in messages] == [("user", "q"), ("assistant", "second")]


def test_edit_and_resend_replaces_the_question_and_what_followed(store: ChatStore) -> None:
    engine = FakeEngine("answer")
    assistant = Assistant(engine, store)
    chat = store.create_chat()
    run(assistant.ask(chat.id, "first question"))
    run(assistant.ask(chat.id, "second question"))
    first_q = store.messages(chat.id)[0]
    run(assistant.edit_and_resend(chat.id, first_q.id, "edited question"))
    assert [m.content for m in store.messages(chat.id)] == ["edited question", "answer"]


def test_chat_gets_a_title_from_its_first_question(store: ChatStore) -> None:
    assistant = Assistant(FakeEngine("x"), store)
    chat = store.create_chat()
    run(assistant.ask(chat.id, "How do I renew a passport in Norway?"))
    assert store.chat(chat.id).title == "How do I renew a passport in Norway?"


def test_empty_question_is_refused(store: ChatStore) -> None:
    from bastion.desktop.errors import BastionError

    assistant = Assistant(FakeEngine(), store)
    chat = store.create_chat()
    with pytest.raises(BastionError, match="empty"):
        list(assistant.ask(chat.id, "   "))
    assert store.messages(chat.id) == []


def test_an_answer_without_markers_cites_the_passage_it_restates(store: ChatStore) -> None:
    retriever = FakeRetriever([
        FakeHit("The reactor was commissioned in 1987 near the northern lake.", "/d/plant.txt"),
        FakeHit("The cafeteria opens at noon every weekday.", "/d/menu.txt"),
    ])
    assistant = Assistant(FakeEngine("It was commissioned in 1987 near the northern lake."), store, retriever)
    chat = store.create_chat(mode="docs", collections=["docs"])
    _, done = run(assistant.ask(chat.id, "When was the reactor commissioned?"))
    cited = [s for s in done.message.sources if s.cited]
    assert [(s.path, s.cited_by) for s in cited] == [("/d/plant.txt", "overlap")]


def test_an_unrelated_answer_cites_nothing(store: ChatStore) -> None:
    retriever = FakeRetriever([FakeHit("The reactor was commissioned in 1987.", "/d/plant.txt")])
    assistant = Assistant(FakeEngine("Bananas are yellow and sweet fruits."), store, retriever)
    chat = store.create_chat(mode="docs", collections=["docs"])
    _, done = run(assistant.ask(chat.id, "When was the reactor commissioned?"))
    assert not any(s.cited for s in done.message.sources)


def test_a_short_numeric_answer_cites_its_passage(store: ChatStore) -> None:
    retriever = FakeRetriever([
        FakeHit("International trips must be approved at least 21 days before departure.", "/d/travel.md"),
        FakeHit("Meals are reimbursed up to 45 euros a day.", "/d/meals.md"),
    ])
    assistant = Assistant(FakeEngine("The answer is: 21 days."), store, retriever)
    chat = store.create_chat(mode="docs", collections=["docs"])
    _, done = run(assistant.ask(chat.id, "How far in advance must a trip be approved?"))
    assert [s.path for s in done.message.sources if s.cited] == ["/d/travel.md"]


def test_a_chat_answers_with_its_adapters_and_records_them(tmp_path: Path) -> None:
    engine = FakeEngine("Fine.")
    chats = ChatStore(tmp_path / "bastion.db")
    files = {"terse": tmp_path / "terse.gguf"}
    assistant = Assistant(engine=engine, chats=chats, adapter_path=files.__getitem__)
    chat = chats.create_chat(adapters=[("terse", 0.5)])
    done = [e for e in assistant.ask(chat.id, "Hello?") if isinstance(e, AnswerDone)][-1]
    assert engine.adapters_used == [(AdapterUse(str(files["terse"]), 0.5),)]
    assert done.message.meta["adapters"] == [{"name": "terse", "scale": 0.5}]
    chats.close()


def test_an_adapter_gone_from_the_catalog_is_left_out_and_said_so(tmp_path: Path) -> None:
    from bastion.models.errors import ModelNotFound

    engine = FakeEngine("Fine.")
    chats = ChatStore(tmp_path / "bastion.db")

    def path_of(name: str) -> Path:
        if name == "removed":
            raise ModelNotFound("There is no adapter called 'removed'.")
        return tmp_path / f"{name}.gguf"

    assistant = Assistant(engine=engine, chats=chats, adapter_path=path_of)
    chat = chats.create_chat(adapters=[("removed", 1.0), ("terse", 0.5)])
    done = [e for e in assistant.ask(chat.id, "Hello?") if isinstance(e, AnswerDone)][-1]
    assert engine.adapters_used == [(AdapterUse(str(tmp_path / "terse.gguf"), 0.5),)]
    assert done.message.meta["adapters"] == [{"name": "terse", "scale": 0.5}]
    assert done.message.meta["adapters_skipped"] == [
        {"name": "removed", "reason": "There is no adapter called 'removed'."}]
    chats.close()


def test_docs_mode_below_the_relevance_floor_refuses_and_says_why(store: ChatStore) -> None:
    # Passages were found, and even matched words of the question, but none is similar enough.
    retriever = FakeRetriever([FakeHit("Normans settled in Normandy.", "/d/normans.txt", vector_score=0.3),
                               FakeHit("The Duchy of Normandy.", "/d/normans.txt", char_start=90,
                                       vector_score=0.25)])
    engine = FakeEngine("The Normans ate cheese [1].")
    assistant = Assistant(engine, store, retriever, policy=RetrievalPolicy(min_similarity=0.45,
                                                                          min_similarity_with_terms=0.45))
    chat = store.create_chat(mode="docs", collections=["history"])
    events, done = run(assistant.ask(chat.id, "Does cholesterol feed breast cancer cells?"))
    assert engine.prompts == []  # the model was never asked
    assert done.not_found and done.message.content == NOT_FOUND_ANSWER
    assert [e.text for e in events if isinstance(e, AnswerDelta)] == [NOT_FOUND_ANSWER]
    reason = done.message.meta["not_found_reason"]
    assert reason == "no passage in “history” was relevant enough (best match 0.30, needed 0.45)"
    assert store.messages(chat.id)[1].meta["not_found_reason"] == reason  # kept with the answer


def test_both_mode_below_the_relevance_floor_lets_the_model_answer_alone(store: ChatStore) -> None:
    retriever = FakeRetriever([FakeHit("Normans settled in Normandy.", "/d/normans.txt", vector_score=0.3)])
    engine = FakeEngine("Some studies suggest so.")
    assistant = Assistant(engine, store, retriever, policy=RetrievalPolicy(min_similarity=0.45,
                                                                          min_similarity_with_terms=0.45))
    chat = store.create_chat(mode="both", collections=["history"])
    _, done = run(assistant.ask(chat.id, "Does cholesterol feed breast cancer cells?"))
    assert engine.prompts[0][-1]["content"] == "Does cholesterol feed breast cancer cells?"
    assert done.message.content == "Some studies suggest so."
    assert not done.not_found and "not_found_reason" not in done.message.meta
    assert done.message.sources == []


def test_an_answer_of_only_echoed_delimiters_is_stored_as_the_abstention(store: ChatStore) -> None:
    retriever = FakeRetriever([FakeHit("Visitors park in lot C.", "/d/parking.txt")])
    assistant = Assistant(FakeEngine("[end of passage 1]"), store, retriever)
    chat = store.create_chat(mode="docs", collections=["docs"])
    events, done = run(assistant.ask(chat.id, "Where do visitors park?"))
    assert "".join(e.text for e in events if isinstance(e, AnswerDelta)) == "[end of passage 1]"  # as streamed
    assert done.message.content == NOT_FOUND_ANSWER and done.not_found
    assert done.message.meta["debris_removed"] is True
    assert not any(s.cited for s in done.message.sources)
    assert store.messages(chat.id)[1].content == NOT_FOUND_ANSWER


def test_echoed_delimiters_are_cut_from_a_real_answer_and_its_citation_kept(store: ChatStore) -> None:
    retriever = FakeRetriever([FakeHit("Visitors park in lot C.", "/d/parking.txt", page=2)])
    assistant = Assistant(FakeEngine("Question: Where do visitors park?\nIn lot C [1]. [end of passage 1]"),
                          store, retriever)
    chat = store.create_chat(mode="docs", collections=["docs"])
    _, done = run(assistant.ask(chat.id, "Where do visitors park?"))
    assert done.message.content == "In lot C [1]."
    assert not done.not_found
    assert [(s.n, s.cited_by) for s in done.message.sources if s.cited] == [(1, "marker")]


def test_a_model_answering_alone_is_not_cleaned(store: ChatStore) -> None:
    reply = "Question: what is 2 + 2?\nAnswer: 4."  # a quiz the user asked for
    assistant = Assistant(FakeEngine(reply), store)
    chat = store.create_chat(mode="model")
    _, done = run(assistant.ask(chat.id, "Write me a one-line quiz."))
    assert done.message.content == reply and "debris_removed" not in done.message.meta


def test_a_stopped_answer_of_only_delimiters_is_stored_empty(store: ChatStore) -> None:
    retriever = FakeRetriever([FakeHit("Visitors park in lot C.", "/d/parking.txt")])
    assistant = Assistant(FakeEngine("[end of passage 1] and more words"), store, retriever)
    chat = store.create_chat(mode="docs", collections=["docs"])
    events = assistant.ask(chat.id, "Where do visitors park?")
    for event in events:
        if isinstance(event, AnswerDelta) and "1]" in event.text:
            break
    events.close()  # stopped right after "[end of passage 1]"
    stored = store.messages(chat.id)[1]
    assert stored.status == "interrupted" and stored.content == ""
