"""A lab run with fakes: every arm answers through the real assistant, resumes, and reports."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from bastion.desktop.errors import BastionError
from bastion.desktop.grounding import PASSAGES_HEADER
from bastion.desktop.lab.arms import Arm, make_arms
from bastion.desktop.lab.questions import QuestionSet, load_questions
from bastion.desktop.lab.report import write_reports
from bastion.desktop.lab.run_folder import RunFolder, RunInfo
from bastion.desktop.lab.runner import (
    LabAnswered,
    LabFinished,
    LabParts,
    LabPlan,
    LabStarted,
    greedy,
    run_lab,
)
from bastion.models.engine_types import AdapterUse, ChatEvent, Sampling
from tests.desktop.fakes import FakeEngine, FakeHit, FakeRetriever

CAPITALS = {"France": "Paris", "Italy": "Rome", "Spain": "Madrid", "Peru": "Lima"}


class ReadingEngine(FakeEngine):
    """Answers from the passages when it is given some (citing [1]), guesses wrong without.

    With an adapter attached it answers exactly as without: the adapter changes nothing.
    """

    def __init__(self, fail_after: int | None = None):
        super().__init__()
        self.calls = 0
        self.fail_after = fail_after

    def chat(self, messages: Sequence[dict[str, str]], sampling: Sampling | None = None,
             adapters: Sequence[AdapterUse] = ()) -> Iterator[ChatEvent]:
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt  # the user stops the run (or the process is killed)
        self.calls += 1
        prompt = messages[-1]["content"]
        capital = next((c for c in CAPITALS.values() if f"is {c}." in prompt), None)
        if PASSAGES_HEADER in prompt and capital:
            self.reply = f"It is {capital} [1]."
        else:
            self.reply = "I think it is Berlin."
        yield from super().chat(messages, sampling, adapters)


def questions_file(tmp_path: Path) -> QuestionSet:
    lines = [{"id": country.lower(), "question": f"What is the capital of {country}?",
              "answers": [capital], "source": f"{country}.txt"} for country, capital in CAPITALS.items()]
    lines.append({"id": "moon", "question": "What is the capital of the Moon?", "answers": [],
                  "unanswerable": True})
    path = tmp_path / "capitals.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    return load_questions(path)


def retriever() -> FakeRetriever:
    hits = [FakeHit(f"The capital of {country} is {capital}.", f"/docs/{country}.txt")
            for country, capital in CAPITALS.items()]

    class ByWord(FakeRetriever):
        def search(self, query, collections, k):  # type: ignore[no-untyped-def]
            self.queries.append((query, tuple(collections or ()), k))
            return [h for h in self.hits if h.path.rsplit("/", 1)[-1][:-4] in query][:k]

    return ByWord(hits)


def start(tmp_path: Path, arms: list[Arm]) -> tuple[RunFolder, QuestionSet, Sampling]:
    qset = questions_file(tmp_path)
    sampling = greedy(Sampling(), max_tokens=32, seed=5)
    folder = RunFolder(tmp_path / "run")
    folder.start(RunInfo(questions_file=str(qset.path), questions_sha256=qset.sha256,
                         collection="atlas", model="fake", model_file="/fake.gguf", arms=arms,
                         sampling=sampling.to_dict(), system_prompt="Be brief."), qset)
    return folder, qset, sampling


def parts(engine: FakeEngine, sampling: Sampling) -> LabParts:
    return LabParts(engine=engine, retriever=retriever(), sampling=sampling, system_prompt="Be brief.",
                    adapter_path=lambda name: Path(f"/adapters/{name}.gguf"))


ARMS = make_arms(["model", "docs"], [("geo", 1.0)])


def test_every_arm_answers_every_question_greedy_and_recorded(tmp_path: Path) -> None:
    folder, qset, sampling = start(tmp_path, ARMS)
    engine = ReadingEngine()
    events = list(run_lab(LabPlan(qset.questions, ARMS, "atlas"), parts(engine, sampling), folder))

    assert isinstance(events[0], LabStarted) and events[0].total == 5 * 4 and events[0].already_done == 0
    answered = [e for e in events if isinstance(e, LabAnswered)]
    assert [e.done for e in answered] == list(range(1, 21))
    assert answered[-1].eta_s == 0 and all(e.eta_s is not None for e in answered)
    assert isinstance(events[-1], LabFinished) and events[-1].answered == 20
    assert sampling.temperature == 0.0 and sampling.seed == 5 and sampling.max_tokens == 32
    # Adapter arms really ran with the adapter attached, the others without (the Moon in docs
    # mode finds no passage and never reaches the model: 5 model + 4 docs calls per adapter set).
    assert engine.adapters_used.count((AdapterUse("/adapters/geo.gguf", 1.0),)) == 9
    assert engine.adapters_used.count(()) == 9
    by = {(e.question.id, e.arm.key): e for e in answered}
    assert by[("france", "docs")].scores.correct and by[("france", "docs")].scores.citation_hit
    assert not by[("france", "model")].scores.correct
    assert by[("moon", "docs")].scores.abstained  # nothing retrieved: "not found", no model call
    assert by[("france", "docs")].record.passages[0].text == "The capital of France is Paris."
    assert len(folder.answers()) == 20
    assert not (folder.path / "lab.db").exists()  # answers are made without throwaway chats


def test_the_users_chat_history_is_untouched(tmp_path: Path, bastion_home: Path) -> None:
    folder, qset, sampling = start(tmp_path, ARMS[:2])
    list(run_lab(LabPlan(qset.questions, ARMS[:2], "atlas"), parts(ReadingEngine(), sampling), folder))
    assert not (bastion_home / "bastion.db").exists()


def test_a_stopped_run_continues_without_redoing_answers(tmp_path: Path) -> None:
    folder, qset, sampling = start(tmp_path, ARMS)
    plan = LabPlan(qset.questions, ARMS, "atlas")
    first = ReadingEngine(fail_after=7)
    with pytest.raises(KeyboardInterrupt):
        for _ in run_lab(plan, parts(first, sampling), folder):
            pass
    # docs-mode "not found" answers need no model call, so count what was recorded
    recorded = len(folder.answers())
    assert 7 <= recorded < 20
    # A kill in the middle of a write leaves half a line: it is dropped and asked again.
    with folder.answers_file.open("a", encoding="utf-8") as out:
        out.write('{"question_id": "peru", "arm": "do')

    second = ReadingEngine()
    events = list(run_lab(plan, parts(second, sampling), folder))
    assert isinstance(events[0], LabStarted) and events[0].already_done == recorded
    assert sum(isinstance(e, LabAnswered) for e in events) == 20 - recorded
    keys = [(r.question_id, r.arm) for r in folder.answers()]
    assert len(keys) == len(set(keys)) == 20
    assert folder.answers_file.read_text(encoding="utf-8").endswith("}\n")

    # Nothing is left: a third run asks nothing.
    third = ReadingEngine()
    assert sum(isinstance(e, LabAnswered) for e in run_lab(plan, parts(third, sampling), folder)) == 0
    assert third.calls == 0


def test_closing_the_generator_keeps_what_was_answered(tmp_path: Path) -> None:
    folder, qset, sampling = start(tmp_path, ARMS)
    events = run_lab(LabPlan(qset.questions, ARMS, "atlas"), parts(ReadingEngine(), sampling), folder)
    for event in events:
        if isinstance(event, LabAnswered) and event.done == 3:
            break
    events.close()
    assert len(folder.answers()) == 3


def test_a_folder_with_another_experiment_is_refused(tmp_path: Path) -> None:
    folder, qset, sampling = start(tmp_path, ARMS)
    other = RunInfo(questions_file=str(qset.path), questions_sha256=qset.sha256, collection="atlas",
                    model="fake", model_file="/other.gguf", arms=ARMS, sampling=sampling.to_dict(),
                    system_prompt="Be brief.")
    with pytest.raises(BastionError, match="different model_file"):
        folder.start(other, qset)
    same = RunInfo(**{**other.__dict__, "model_file": "/fake.gguf", "limit": 2})
    folder.start(same, qset)  # the limit may change between runs


def test_a_damaged_line_in_the_middle_is_named(tmp_path: Path) -> None:
    folder, qset, sampling = start(tmp_path, ARMS)
    list(run_lab(LabPlan(qset.questions[:1], ARMS, "atlas"), parts(ReadingEngine(), sampling), folder))
    lines = folder.answers_file.read_text(encoding="utf-8").splitlines(keepends=True)
    lines[1] = "garbage\n"
    folder.answers_file.write_text("".join(lines), encoding="utf-8")
    with pytest.raises(BastionError, match="line 2 is damaged"):
        folder.answers()


def test_report_files_name_the_arms_and_the_recommendation_follows_the_numbers(tmp_path: Path) -> None:
    folder, qset, sampling = start(tmp_path, ARMS)
    list(run_lab(LabPlan(qset.questions, ARMS, "atlas"), parts(ReadingEngine(), sampling), folder))
    files = write_reports(folder)

    markdown = files.markdown.read_text(encoding="utf-8")
    html = files.html.read_text(encoding="utf-8")
    for arm in ARMS:
        assert arm.label in markdown and arm.label in html
    assert "<svg" in html and "<script" not in html and "http://" not in html.replace(
        'xmlns="http://www.w3.org/2000/svg"', "")
    assert "What is the capital of Peru?" in html

    # docs: 4/4 answerable right + the moon declined = 100%; model: only... nothing right = 0%.
    by_arm = {s.arm.key: s for s in files.summary.arms}
    assert by_arm["docs"].accuracy is not None and by_arm["docs"].accuracy.estimate == 1.0
    assert by_arm["model"].accuracy is not None and by_arm["model"].accuracy.estimate == 0.0
    assert str(by_arm["docs"].citation_hit) == "100% (4/4)"
    assert str(by_arm["docs"].abstention) == "100% (1/1)"
    assert str(by_arm["model"].false_abstention) == "0% (0/4)"
    recommendation = "\n".join(files.summary.recommendation)
    assert "Recommended route: **base + documents**" in recommendation
    assert "Documents add 100 points [100, 100] (base + documents vs base)" in recommendation
    assert "The adapter geo makes no measurable difference" in recommendation
    assert "Recommended route" in markdown and "## Differences between arms" in markdown

    rows = list(csv.DictReader(files.csv.read_text(encoding="utf-8").splitlines()))
    assert len(rows) == 20 and {r["arm"] for r in rows} == {a.key for a in ARMS}
    data = json.loads(files.json.read_text(encoding="utf-8"))
    assert len(data["answers"]) == 20 and data["answers"][0]["passages"] is not None
    assert [a["label"] for a in data["arms"]] == [a.label for a in ARMS]


def test_a_partial_run_reports_what_it_has(tmp_path: Path) -> None:
    folder, qset, sampling = start(tmp_path, ARMS)
    events = run_lab(LabPlan(qset.questions, ARMS, "atlas"), parts(ReadingEngine(), sampling), folder)
    for event in events:
        if isinstance(event, LabAnswered) and event.done == 6:
            break
    events.close()
    files = write_reports(folder)
    assert "incomplete (6 of 8 answers" in "\n".join(files.summary.recommendation)
    empty = RunFolder(tmp_path / "empty-run")
    empty.start(RunInfo(**{**folder.info().__dict__}), qset)
    assert write_reports(empty).summary.recommendation == [
        "No answers are recorded yet: nothing to recommend."]
