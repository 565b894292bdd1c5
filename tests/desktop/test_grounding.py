"""Grounding's pure functions: the relevance floor, the words that explain a refusal, and the
cleaning of the prompt's layout a small model echoes into its answer."""

from __future__ import annotations

import pytest

from bastion.desktop.grounding import (
    DOCS_INSTRUCTION,
    NOT_FOUND_ANSWER,
    PASSAGES_HEADER,
    Grounding,
    RetrievalPolicy,
    cited_and_retrieved,
    clean_answer,
    mark_cited,
    refusal_reason,
    select_passages,
)
from bastion.store.chats import Source
from tests.desktop.fakes import FakeHit


def count(texts: object) -> list[int]:
    return [len(str(t)) // 4 for t in texts]  # type: ignore[attr-defined]


def test_a_passage_passes_on_similarity_or_on_its_words_with_a_lower_similarity() -> None:
    policy = RetrievalPolicy(min_similarity=0.45, min_similarity_with_terms=0.35)
    hits = [FakeHit("a", "/d/a.txt", vector_score=0.5, bm25_score=None),
            FakeHit("b", "/d/b.txt", vector_score=0.4, bm25_score=3.0),
            FakeHit("c", "/d/c.txt", vector_score=0.4, bm25_score=None),
            FakeHit("d", "/d/d.txt", vector_score=None, bm25_score=9.0)]
    grounding = select_passages(hits, policy, 10_000, count, "q")
    assert [s.path for s in grounding.sources] == ["/d/a.txt", "/d/b.txt"]
    assert grounding.below_threshold == 2 and grounding.found == 4
    assert grounding.best_similarity == 0.5


def test_the_default_floor_refuses_weak_matches_that_the_old_one_let_through() -> None:
    # bench/relevance_floor_bench.py chose the defaults; the README's table shows what they cost.
    policy = RetrievalPolicy()

    def passes(similarity: float, words: bool) -> bool:
        hit = FakeHit("t", "/d/t.txt", vector_score=similarity, bm25_score=4.0 if words else None)
        return bool(select_passages([hit], policy, 10_000, count, "q").sources)

    assert passes(0.50, words=False) and passes(0.32, words=True)
    # Off-topic questions typically reach 0.2-0.35 through a common word: no longer enough.
    assert not passes(0.40, words=False) and not passes(0.25, words=True)


def test_a_refusal_says_where_nothing_was_relevant_enough() -> None:
    policy = RetrievalPolicy(min_similarity=0.45)
    below = Grounding(found=4, below_threshold=4, best_similarity=0.312)
    assert refusal_reason(below, ["contracts"], policy) == (
        "no passage in “contracts” was relevant enough (best match 0.31, needed 0.45)")
    assert refusal_reason(below, ["a", "b", "c"], policy).startswith("no passage in “a”, “b” and “c” ")
    assert refusal_reason(Grounding(), ["contracts"], policy) == "nothing in “contracts” matched the question"
    assert refusal_reason(Grounding(), [], policy) == "this chat searches no document collection"
    too_long = Grounding(found=2, dropped_for_budget=2)
    assert "did not fit in the model's context" in refusal_reason(too_long, ["contracts"], policy)


@pytest.mark.parametrize(
    ("answer", "cleaned"),
    [
        ("[end of passage 2]", NOT_FOUND_ANSWER),
        ("  [End of passage 2]\n[end of passage 3] ", NOT_FOUND_ANSWER),
        ("The code is 7741 [1].\n[end of passage 1]", "The code is 7741 [1]."),
        ("The code is 7741 [end of passage 1].", "The code is 7741."),
        ("[3] (codes.pdf, page 4)\nThe valve opens at dawn [3].", "The valve opens at dawn [3]."),
        ("Paris is the capital [2] (geo.txt, page 4).", "Paris is the capital [2]."),
        ("Question: What is the code?\nAnswer: 7741 [1]", "7741 [1]"),
        ("Question: What is the code?", NOT_FOUND_ANSWER),
        (f"{PASSAGES_HEADER}\n\n[1] (a.pdf)\n[end of passage 1]", NOT_FOUND_ANSWER),
        (f"{DOCS_INSTRUCTION}\n\nLot C [1].", "Lot C [1]."),
        ("Steps:\n\n    keep  this  code\n[end of passage 1]", "Steps:\n\n    keep  this  code"),
        # Nothing to clean: returned as it was, citations and all.
        ("The code is 7741 [1] and [2, 3].", "The code is 7741 [1] and [2, 3]."),
        ("[1]", "[1]"),
        ("", ""),
        ("See passage [1] (the first one).", "See passage [1] (the first one)."),
        ("Use version 3 [1] (version 3.5).", "Use version 3 [1] (version 3.5)."),
        # A citation first (the grounded adapter's "citation-first" style) is a citation, not a
        # passage header: it stays, with or without debris after it.
        ("[2] The valve opens at dawn.", "[2] The valve opens at dawn."),
        ("[2] The valve opens at dawn.\n[end of passage 2]", "[2] The valve opens at dawn."),
        ("[1, 3] Lot C (see the map).", "[1, 3] Lot C (see the map)."),
    ],
)
def test_clean_answer_strips_the_prompt_layout_and_keeps_citations(answer: str, cleaned: str) -> None:
    assert clean_answer(answer) == cleaned


def test_an_answer_citing_first_lists_what_it_cites_apart_from_what_was_only_retrieved() -> None:
    sources = [Source(n, f"/d/{n}.txt", None, "", 0.1) for n in (1, 2, 3)]
    answer = clean_answer("[2] The valve opens at dawn.\n[end of passage 2]")
    cited, retrieved = cited_and_retrieved(mark_cited(sources, answer))
    assert [s.n for s in cited] == [2]
    assert [s.n for s in retrieved] == [1, 3]
    assert all(s.cited_by == "marker" for s in cited)


def test_an_answer_of_only_debris_can_become_something_else_than_the_abstention() -> None:
    assert clean_answer("[end of passage 1]", empty="") == ""


def test_the_cleaned_answer_cites_what_it_still_cites() -> None:
    sources = [Source(1, "/d/a.txt", None, "", 0.1), Source(2, "/d/b.txt", None, "", 0.1)]
    answer = clean_answer("[2] (b.txt)\nLot C, by the gate [1].\n[end of passage 2]")
    assert [s.n for s in mark_cited(sources, answer) if s.cited] == [1]
