"""Grounded training data from a question set and a collection: what retrieval returns becomes the
evidence and the distractors, in the app's documents-mode prompt; ``bastion finetune --questions``
builds it before anything loads."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from bastion.desktop import grounding
from bastion.desktop.cli import main
from bastion.desktop.grounded_training import GroundedOptions, answer_sentence, build_grounded_data
from bastion.desktop.lab.questions import load_questions
from bastion.desktop.paths import data_paths
from bastion.models.finetune_data import read_chat_jsonl
from tests.desktop.fakes import FakeHit
from tests.store.fakes import CountingParser

FACTS = {
    "orvane": ("What colour is the lighthouse of Orvane?", "blue",
               "The harbour of Orvane is old. Its lighthouse is painted blue every spring. Boats dock there."),
    "mereth": ("What is Captain Mereth's ship called?", "the Kestrel",
               "Captain Mereth sails the Kestrel, a two-masted schooner."),
    "tallow": ("Which way does the river Tallow flow?", "north",
               "The river Tallow flows north into the Grey Sea."),
    "vell": ("When is the Vell festival held?", "in March",
             "Every year the Vell festival is held in March, with lanterns."),
}


def question_file(tmp_path: Path, extra: list[dict[str, object]] = ()) -> Path:  # type: ignore[assignment]
    rows = [{"id": key, "question": q, "answers": [a]} for key, (q, a, _) in FACTS.items()]
    rows += list(extra)
    path = tmp_path / "questions.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def fake_search(query: str) -> list[FakeHit]:
    """Every passage, the one about the question's subject first."""
    hits = [FakeHit(text, f"/docs/{key}.txt") for key, (_, _, text) in FACTS.items()]
    return sorted(hits, key=lambda h: not any(w.lower() in h.text.lower() for w in query.split()[-2:]))


def test_answer_sentence_is_the_sentence_holding_the_answer() -> None:
    text = FACTS["orvane"][2]
    assert answer_sentence(text, "Blue") == "Its lighthouse is painted blue every spring."
    assert answer_sentence(text, "green") is None


def test_examples_use_the_apps_prompt_and_cite_the_evidence(tmp_path: Path) -> None:
    unanswerable = {"id": "u1", "question": "Who built the Vell lanterns?", "answers": [], "unanswerable": True}
    questions = load_questions(question_file(tmp_path, [unanswerable]))
    out = tmp_path / "run" / "grounded.jsonl"
    data = build_grounded_data(questions, fake_search, out, system_prompt="Be brief.",
                               options=GroundedOptions(passages=2, abstention_fraction=0.25, seed=3))
    examples = read_chat_jsonl(out)
    assert data.examples == len(examples) and data.not_retrieved == 0
    assert {e.kind for e in examples} == {"grounded", "abstention"}
    for e in examples:
        system, user, assistant = (m["content"] for m in e.messages)
        assert system == "Be brief."
        assert user.startswith(grounding.DOCS_INSTRUCTION) and grounding.PASSAGES_HEADER in user
        assert user.count("[end of passage") == 2
        if e.kind == "grounded":
            # The sentence holding the answer, citing the passage it came from.
            sentence, n = assistant.rsplit(" [", 1)
            assert sentence in user.split(f"[{n.rstrip(']')}] (")[1].split("[end of passage")[0]
        else:
            assert assistant == grounding.NOT_FOUND_ANSWER
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["questions_sha256"] == questions.sha256 and record["examples"] == data.examples


def test_the_citation_first_style_teaches_the_evidence_sentence_after_its_citation(tmp_path: Path) -> None:
    questions = load_questions(question_file(tmp_path))
    out = tmp_path / "grounded.jsonl"
    build_grounded_data(questions, fake_search, out, system_prompt=None,
                        options=GroundedOptions(passages=2, abstention_fraction=0.0,
                                                answer_style="citation-first"))
    examples = read_chat_jsonl(out)
    assert len(examples) == len(FACTS)
    for e in examples:
        user, assistant = (m["content"] for m in e.messages)
        number, sentence = assistant.split(" ", 1)
        assert number[0] == "[" and number[-1] == "]"
        assert sentence in user.split(f"{number} (")[1].split("[end of passage")[0]
    answers = {e.messages[1]["content"].split(" ", 1)[1] for e in examples}
    assert "Its lighthouse is painted blue every spring." in answers  # the sentence, not "blue"
    assert json.loads(out.with_suffix(".json").read_text())["options"]["answer_style"] == "citation-first"


def test_questions_whose_answer_retrieval_misses_are_left_out_and_counted(tmp_path: Path) -> None:
    missing = {"id": "m", "question": "What is the capital of Zembla?", "answers": ["Onhava"]}
    questions = load_questions(question_file(tmp_path, [missing]))
    data = build_grounded_data(questions, fake_search, tmp_path / "g.jsonl", system_prompt=None,
                               options=GroundedOptions(abstention_fraction=0.0))
    assert data.not_retrieved == 1 and data.stats.answerable == 4
    assert "1 questions left out because no retrieved passage holds their answer" in data.summary()
    with pytest.raises(Exception, match="has its answer in a passage"):
        build_grounded_data(questions, lambda q: [], tmp_path / "none.jsonl", system_prompt=None)


def test_options_outside_what_can_work_are_refused(tmp_path: Path) -> None:
    questions = load_questions(question_file(tmp_path))
    with pytest.raises(Exception, match="abstention share"):
        build_grounded_data(questions, fake_search, tmp_path / "g.jsonl", system_prompt=None,
                            options=GroundedOptions(abstention_fraction=0.8))
    with pytest.raises(Exception, match="Unknown answer style 'cited-last'"):
        build_grounded_data(questions, fake_search, tmp_path / "g.jsonl", system_prompt=None,
                            options=GroundedOptions(answer_style="cited-last"))  # type: ignore[arg-type]


def test_cli_builds_the_data_from_a_real_collection_before_training(
    fake_parts: CountingParser, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
    capsys: pytest.CaptureFixture[str]
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    for key, (_, _, text) in FACTS.items():
        (docs / f"{key}.txt").write_text(text + "\n")
    assert main(["library", "add", "lore", str(docs)]) == 0
    questions = question_file(tmp_path)

    # Refusals come first, with what to do.
    assert main(["finetune", "lore-a", "--questions", str(questions)]) == 2
    assert "--collection" in capsys.readouterr().err
    assert main(["finetune", "lore-a", "--questions", str(questions), "--collection", "nope"]) == 1
    assert "There is no collection 'nope'" in capsys.readouterr().err
    assert main(["finetune", "lore-a", "--questions", str(questions), "--data", str(questions)]) == 2
    with pytest.raises(SystemExit):
        main(["finetune", "lore-a", "--questions", str(questions), "--collection", "lore",
              "--abstention", "0.9"])
    assert "give a number from 0 to 0.5" in capsys.readouterr().err

    # The data is built from the collection; training is stopped right after (no model here).
    import bastion.desktop.finetuning as finetuning

    def no_training(*args: object, **kwargs: object) -> Iterator[object]:
        raise KeyboardInterrupt  # Ctrl-C as the first event is awaited
        yield  # a generator, as train is

    monkeypatch.setattr(finetuning, "train", no_training)
    monkeypatch.setattr("bastion.models.finetune_process.FinetuneProcess.cancel", lambda self: None)
    assert main(["finetune", "lore-a", "--questions", str(questions), "--collection", "lore",
                 "--passages", "2", "--abstention", "0"]) == 130
    err = capsys.readouterr().err
    assert "4 grounded examples from 4 questions: 4 answered from passages" in err
    assert "--questions" in err and "--collection lore --resume" in err
    built = data_paths().home / "finetune" / "lore-a" / "grounded.jsonl"
    examples = read_chat_jsonl(built)
    assert len(examples) == 4 and all("[end of passage 2]" in e.messages[-2]["content"] for e in examples)
