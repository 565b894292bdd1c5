"""Grounding's pure functions: the relevance floor and the words that explain a refusal."""

from __future__ import annotations

from bastion.desktop.grounding import Grounding, RetrievalPolicy, refusal_reason, select_passages
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


def test_the_defaults_are_the_calibrated_floor() -> None:
    # bench/relevance_floor_bench.py chose these; the README's table shows what they cost.
    policy = RetrievalPolicy()
    assert 0.2 < policy.min_similarity_with_terms <= policy.min_similarity < 0.7


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
