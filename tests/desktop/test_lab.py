"""The lab's pieces on hand-made data: metrics, bootstrap intervals, question sets, arms."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bastion.desktop.errors import BastionError
from bastion.desktop.grounding import NOT_FOUND_ANSWER
from bastion.desktop.lab.arms import Arm, make_arms
from bastion.desktop.lab.metrics import (
    Passage,
    citation_hit,
    contains_gold,
    normalise,
    same_source,
    score,
    token_f1,
)
from bastion.desktop.lab.questions import Question, QuestionSetError, load_questions
from bastion.desktop.lab.run_folder import AnswerRecord
from bastion.desktop.lab.stats import bootstrap_difference, bootstrap_mean
from bastion.desktop.lab.summary import summarise

# -- metrics ---------------------------------------------------------------------------------


def test_normalise_drops_case_punctuation_articles_and_spacing() -> None:
    assert normalise("  The Eiffel   Tower, in PARIS! ") == "eiffel tower in paris"
    assert normalise("An apple a day") == "apple day"


@pytest.mark.parametrize(("answer", "gold", "expected"), [
    ("It is in France.", ["France"], True),
    ("the 10th and 11th centuries", ["10th and 11th centuries"], True),
    ("THE NORMANS, of course", ["Normans"], True),
    ("In 1973 it began.", ["1"], False),  # whole words only: "1" is not in "1973"
    ("Frances", ["France"], False),
    ("Lyon", ["Paris", "Lyon"], True),
    ("anything", ["the"], False),  # a gold string that normalises to nothing never matches
    ("anything", [], False),
])
def test_contains_gold_is_normalised_and_whole_word(answer: str, gold: list[str], expected: bool) -> None:
    assert contains_gold(answer, gold) is expected


def test_token_f1_takes_the_best_gold_answer() -> None:
    assert token_f1("Paris", ["Paris"]) == 1.0
    assert token_f1("nothing here", ["Paris"]) == 0.0
    # "in paris france": precision 2/3 against "paris france" (recall 1) → F1 0.8
    assert token_f1("in Paris, France", ["Lyon", "Paris France"]) == pytest.approx(0.8)
    assert token_f1("", ["Paris"]) == 0.0


def test_same_source_matches_trailing_path_parts() -> None:
    assert same_source("/home/u/docs/Normans.txt", "Normans.txt")
    assert same_source("/home/u/docs/articles/Normans.txt", "articles/Normans.txt")
    assert not same_source("/home/u/docs/Normans.txt", "other/Normans.txt")
    assert not same_source("/home/u/docs/NotNormans.txt", "Normans.txt")


def test_citation_hit_by_gold_source_or_gold_string() -> None:
    right_file = Passage(1, "/d/Normans.txt", "text without the answer", cited=True, cited_by="marker")
    holds_answer = Passage(2, "/d/other.txt", "Normandy is in France.", cited=True, cited_by="overlap")
    uncited = Passage(3, "/d/other.txt", "Normandy is in France.", cited=False)
    wrong = Passage(4, "/d/cats.txt", "Cats sleep a lot.", cited=True, cited_by="marker")
    assert citation_hit([right_file], ["France"], "Normans.txt") is True
    assert citation_hit([holds_answer], ["France"], None) is True
    assert citation_hit([wrong, uncited], ["France"], "Normans.txt") is False
    assert citation_hit([uncited], ["France"], None) is None  # nothing cited: nothing to judge


def test_score_abstention_and_false_abstention() -> None:
    passages = [Passage(1, "/d/a.txt", "Normandy is in France.", cited=False)]
    declined = score(NOT_FOUND_ANSWER, True, passages, [], unanswerable=True)
    assert declined.correct and declined.abstained and declined.contains_gold is None
    said_so = score("The passages do not contain this.", False, passages, [], unanswerable=True)
    assert said_so.correct and said_so.abstained
    invented = score("It was 1066.", False, passages, [], unanswerable=True)
    assert not invented.correct and not invented.abstained

    wrongly_declined = score(NOT_FOUND_ANSWER, True, passages, ["France"], unanswerable=False)
    assert wrongly_declined.abstained and not wrongly_declined.correct
    assert wrongly_declined.contains_gold is False and wrongly_declined.f1 == 0.0

    cited = [Passage(1, "/d/a.txt", "Normandy is in France.", cited=True, cited_by="marker")]
    good = score("France [1].", False, cited, ["France"], unanswerable=False, source="a.txt")
    assert good.correct and good.contains_gold and good.f1 == 1.0
    assert good.cites and good.cites_marker and good.citation_hit is True and not good.abstained


# -- bootstrap -------------------------------------------------------------------------------


def test_identical_arms_have_no_measurable_difference() -> None:
    values = [1, 0, 1, 1, 0, 0, 1, 0, 1, 1] * 5
    diff = bootstrap_difference(values, values, seed=3)
    assert diff is not None
    assert diff.estimate == 0.0 and diff.contains_zero
    assert diff.points() == "+0 points [0, 0]"


def test_clearly_different_arms_exclude_zero() -> None:
    better = [1] * 45 + [0] * 5
    worse = [0] * 40 + [1] * 10
    diff = bootstrap_difference(better, worse, seed=0)
    assert diff is not None and not diff.contains_zero
    assert 0 < diff.low < diff.estimate < diff.high <= 1
    assert diff.estimate == pytest.approx(0.7)
    reverse = bootstrap_difference(worse, better, seed=0)
    assert reverse is not None and reverse.high < 0 and "−" in reverse.points()


def test_noisy_small_difference_contains_zero_and_is_seeded() -> None:
    a = [1, 0] * 10
    b = [0, 1] * 9 + [1, 1]  # one more right answer out of 20
    first = bootstrap_difference(a, b, seed=7)
    again = bootstrap_difference(a, b, seed=7)
    assert first == again and first is not None and first.contains_zero


def test_bootstrap_mean_interval_and_empty() -> None:
    interval = bootstrap_mean([1] * 30 + [0] * 70, seed=1)
    assert interval is not None and interval.low < 0.3 < interval.high and interval.n == 100
    assert bootstrap_mean([]) is None
    with pytest.raises(ValueError):
        bootstrap_difference([1, 0], [1])


# -- question sets ---------------------------------------------------------------------------


def write_lines(path: Path, lines: list[object]) -> Path:
    path.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n",
                    encoding="utf-8")
    return path


def test_question_set_loads_with_defaults(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "q.jsonl", [
        {"question": "Where is Normandy?", "answers": ["France"], "source": "Normans.txt"},
        "",
        {"id": "u1", "question": "Who ruled the moon?", "answers": [], "unanswerable": True},
        {"id": 7, "question": "When?", "answers": [" 1066 "], "extra": "kept out"},
    ])
    qset = load_questions(path)
    assert [q.id for q in qset.questions] == ["line-1", "u1", "7"]
    first, second, third = qset.questions
    assert first.source == "Normans.txt" and not first.unanswerable and first.line == 1
    assert second.unanswerable and second.answers == () and second.line == 3
    assert third.answers == ("1066",)
    assert qset.answerable == 2 and len(qset.sha256) == 64


@pytest.mark.parametrize(("bad", "reason"), [
    ("{not json", "not valid JSON"),
    (json.dumps(["a list"]), "expected an object"),
    (json.dumps({"answers": ["x"]}), "'question' is missing"),
    (json.dumps({"question": "  ", "answers": ["x"]}), "non-empty text"),
    (json.dumps({"question": "Q?"}), "'answers' is missing"),
    (json.dumps({"question": "Q?", "answers": "France"}), "list of strings"),
    (json.dumps({"question": "Q?", "answers": []}), "'answers' is empty"),
    (json.dumps({"question": "Q?", "answers": ["x"], "unanswerable": "yes"}), "true or false"),
    (json.dumps({"question": "Q?", "answers": ["x"], "source": 3}), "'source'"),
    (json.dumps({"id": "a", "question": "Q?", "answers": ["x"]}), "already used on line 1"),
])
def test_question_set_names_the_first_bad_line(tmp_path: Path, bad: str, reason: str) -> None:
    path = write_lines(tmp_path / "q.jsonl", [
        {"id": "a", "question": "Fine?", "answers": ["yes"]},
        "",
        bad,
        "{also bad",  # only the first bad line is reported
    ])
    with pytest.raises(QuestionSetError) as caught:
        load_questions(path)
    message = str(caught.value)
    assert f"{path} line 3:" in message and reason in message, message


def test_question_set_file_errors(tmp_path: Path) -> None:
    with pytest.raises(QuestionSetError, match="Cannot read"):
        load_questions(tmp_path / "missing.jsonl")
    with pytest.raises(QuestionSetError, match="no questions"):
        load_questions(write_lines(tmp_path / "empty.jsonl", ["", "  "]))
    (tmp_path / "latin1.jsonl").write_bytes(b'{"question": "caf\xe9?", "answers": ["x"]}\n')
    with pytest.raises(QuestionSetError, match="not UTF-8"):
        load_questions(tmp_path / "latin1.jsonl")


# -- arms ------------------------------------------------------------------------------------


def test_arms_cover_modes_per_adapter() -> None:
    arms = make_arms(["model", "docs", "both"], [("legal", 1.0), ("tone", 0.5)])
    assert [a.key for a in arms] == ["model", "docs", "both", "model+legal", "docs+legal",
                                     "both+legal", "model+tone@0.5", "docs+tone@0.5", "both+tone@0.5"]
    assert arms[4].label == "base + adapter legal + documents"
    assert arms[6].label == "base + adapter tone at 0.5"
    assert Arm.from_dict(arms[7].to_dict()) == arms[7]


def test_arms_without_a_collection_are_model_only() -> None:
    assert [a.key for a in make_arms(["model", "docs"], [("legal", 1.0)], with_documents=False)] == [
        "model", "model+legal"]
    with pytest.raises(BastionError, match="--collection"):
        make_arms(["docs"], with_documents=False)


# -- recommendation --------------------------------------------------------------------------


def _records(arm: Arm, right: set[int], n: int, seconds: float) -> list[AnswerRecord]:
    return [AnswerRecord(question_id=f"q{i}", arm=arm.key, answer="Paris" if i in right else "Lyon",
                         not_found=False, passages=[], seconds=seconds) for i in range(n)]


def _questions(n: int) -> list[Question]:
    return [Question(id=f"q{i}", question=f"Question {i}?", answers=("Paris",)) for i in range(n)]


def test_a_cheaper_arm_not_measurably_worse_is_recommended() -> None:
    model, docs = Arm("model"), Arm("docs")
    records = _records(model, set(range(20)), 40, 1.0) + _records(docs, set(range(1, 22)), 40, 5.0)
    summary = summarise(_questions(40), [model, docs], records)
    first = summary.recommendation[0]
    assert first.startswith("Recommended route: **base** — the cheapest arm not measurably less "
                            "accurate than the most accurate one, base + documents (+2 points")
    assert "no index to build and keep; 1.0 s per answer against 5.0 s" in first
    assert "Documents make no measurable difference" in summary.recommendation[1]


def test_a_measurably_better_arm_is_recommended_and_zero_everywhere_says_so() -> None:
    model, docs = Arm("model"), Arm("docs")
    records = _records(model, set(range(5)), 40, 1.0) + _records(docs, set(range(30)), 40, 5.0)
    lines = summarise(_questions(40), [model, docs], records).recommendation
    assert lines[0].startswith(
        "Recommended route: **base + documents** — the most accurate arm (accuracy 75% [")
    assert lines[1].startswith("Documents add 62 points [")

    nothing = _records(model, set(), 10, 1.0) + _records(docs, set(), 10, 2.0)
    [only] = summarise(_questions(10), [model, docs], nothing).recommendation
    assert only.startswith("No arm answered any question correctly")


def test_a_tie_at_the_same_upkeep_and_about_the_same_time_keeps_the_most_accurate() -> None:
    docs, both = Arm("docs"), Arm("both")
    records = _records(docs, set(range(14)), 40, 18.3) + _records(both, set(range(13)), 40, 17.3)
    first = summarise(_questions(40), [docs, both], records).recommendation[0]
    assert first.startswith("Recommended route: **base + documents** — the most accurate arm")
    faster = _records(docs, set(range(14)), 40, 18.3) + _records(both, set(range(13)), 40, 9.0)
    first = summarise(_questions(40), [docs, both], faster).recommendation[0]
    assert first.startswith("Recommended route: **base + documents (both mode)** — the cheapest")


def test_an_arm_that_declines_most_answerable_questions_is_not_recommended() -> None:
    docs, adapted = Arm("docs"), Arm("docs", (("grounded", 1.0),))
    questions = _questions(20) + [Question(id=f"u{i}", question=f"Unknown {i}?", answers=(),
                                           unanswerable=True) for i in range(20)]
    declined = "I could not find this in your documents."
    records = (_records(docs, set(range(8)), 20, 5.0)
               + [AnswerRecord(question_id=f"u{i}", arm=docs.key, answer="Lyon", not_found=False,
                               passages=[], seconds=5.0) for i in range(20)]
               + [AnswerRecord(question_id=q.id, arm=adapted.key, answer=declined, not_found=True,
                               passages=[], seconds=5.0) for q in questions])
    summary = summarise(questions, [docs, adapted], records)
    best = max(summary.arms, key=lambda s: s.accuracy.estimate if s.accuracy else 0)
    assert best.arm == adapted  # 50 % by declining everything, against 20 % for documents
    lines = summary.recommendation
    assert lines[0].startswith("Recommended route: **base + documents**")
    assert lines[1].startswith("Not recommended whatever its accuracy") and "100% (20/20)" in lines[1]
