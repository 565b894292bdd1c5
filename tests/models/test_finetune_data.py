"""Training data for fine-tuning: JSONL checked line by line, RAFT-style grounded examples, the
held-out split, and the plain-data settings and events of a run (no model is loaded here)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from bastion.models.finetune_data import (
    ChatExample,
    GroundedPrompt,
    GroundedStats,
    Passage,
    QAPair,
    grounded_examples,
    parse_chat_jsonl,
    read_chat_jsonl,
    split_held_out,
    write_chat_jsonl,
)
from bastion.models.finetune_types import (
    Cancelled,
    FinetuneConfig,
    FinetuneError,
    StepDone,
    TrainingDataError,
    UnsupportedBaseModel,
    check_base_model,
    event_from_json,
    event_to_json,
)
from tests.models.gguf_factory import write_tiny_gguf

GOOD = {"messages": [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello."}]}


def jsonl(*lines: object) -> list[bytes]:
    return [(line if isinstance(line, str) else json.dumps(line)).encode() + b"\n" for line in lines]


def test_reads_what_chat_export_writes(tmp_path: Path) -> None:
    from bastion.desktop.chat_export import to_jsonl
    from bastion.store.chats import Message

    messages = [Message(id=i, chat_id=1, role=role, content=text, status="complete", created=0.0)
                for i, (role, text) in enumerate([("user", "What is GGUF?"), ("assistant", "A file format."),
                                                  ("user", "Who made it?"), ("assistant", "ggml.")])]
    path = tmp_path / "chat.jsonl"
    path.write_text(to_jsonl(messages, system_prompt="You are Bastion."), encoding="utf-8")
    examples = read_chat_jsonl(path)
    assert [e.line for e in examples] == [1, 2]
    assert examples[0].messages == ({"role": "system", "content": "You are Bastion."},
                                    {"role": "user", "content": "What is GGUF?"},
                                    {"role": "assistant", "content": "A file format."})


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        ("{not json", "not valid JSON"),
        ('"just a string"', "not a JSON object"),
        ({"text": "hello"}, 'no "messages" list'),
        ({"messages": []}, "conversation is empty"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "role 'robot'"),
        ({"messages": [{"role": "user", "content": 3}]}, "no text content"),
        ({"messages": [{"role": "user", "content": "  "}, {"role": "assistant", "content": "x"}]}, "message 1 (user) is empty"),
        ({"messages": [{"role": "assistant", "content": "x"}]}, "should be from the user"),
        ({"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]}, "should be from the assistant"),
        ({"messages": [{"role": "user", "content": "a"}]}, "does not end with an assistant reply"),
        ({"messages": [{"role": "user", "content": "a"}, {"role": "system", "content": "s"},
                       {"role": "assistant", "content": "b"}]}, "only the first may be one"),
        ({**GOOD, "kind": "other"}, '"kind" must be one of'),
    ],
)
def test_the_first_bad_line_is_named_with_the_reason(bad: object, why: str) -> None:
    with pytest.raises(TrainingDataError) as raised:
        parse_chat_jsonl(jsonl(GOOD, "", GOOD, bad, GOOD))
    assert raised.value.line == 4
    assert str(raised.value).startswith("Line 4 of the training data is unusable")
    assert why in str(raised.value)


def test_counts_the_other_bad_lines_and_rejects_non_utf8_and_empty_files() -> None:
    with pytest.raises(TrainingDataError, match=r"Line 2 .*\(2 more bad lines: 3, 5…\)") as raised:
        parse_chat_jsonl(jsonl(GOOD, "[]", "{}", GOOD, "x"))
    assert raised.value.line == 2
    with pytest.raises(TrainingDataError, match=r"Line 1 .* not UTF-8"):
        parse_chat_jsonl([b'{"messages": "\xff"}\n'])
    with pytest.raises(TrainingDataError, match="no conversations"):
        parse_chat_jsonl([b"\n", b"  \n"])
    assert len(parse_chat_jsonl([b"\xef\xbb\xbf" + json.dumps(GOOD).encode()])) == 1  # BOM


def test_refuses_links_and_special_files(tmp_path: Path) -> None:
    real = tmp_path / "real.jsonl"
    real.write_text(json.dumps(GOOD) + "\n")
    (tmp_path / "link.jsonl").symlink_to(real)
    with pytest.raises(TrainingDataError, match="cannot be opened"):
        read_chat_jsonl(tmp_path / "link.jsonl")
    os.mkfifo(tmp_path / "fifo.jsonl")
    with pytest.raises(TrainingDataError, match="not a regular file"):
        read_chat_jsonl(tmp_path / "fifo.jsonl")
    with pytest.raises(TrainingDataError, match="cannot be opened"):
        read_chat_jsonl(tmp_path / "missing.jsonl")


def test_write_and_read_back_keeps_kinds(tmp_path: Path) -> None:
    examples = [ChatExample(tuple(GOOD["messages"]), kind=k) for k in ("chat", "grounded", "abstention")]
    assert write_chat_jsonl(tmp_path / "d.jsonl", examples) == 3
    assert (tmp_path / "d.jsonl").stat().st_mode & 0o777 == 0o600
    assert [e.kind for e in read_chat_jsonl(tmp_path / "d.jsonl")] == ["chat", "grounded", "abstention"]


def test_held_out_split_is_stratified_and_reproducible() -> None:
    examples = [ChatExample(tuple(GOOD["messages"]), kind="abstention" if i % 5 == 0 else "grounded", line=i)
                for i in range(100)]
    train, held = split_held_out(examples, 0.1, seed=3)
    assert len(held) == 10 and len(train) == 90
    assert sum(e.kind == "abstention" for e in held) == 2
    assert {e.line for e in train} | {e.line for e in held} == set(range(100))
    assert split_held_out(examples, 0.1, seed=3) == (train, held)
    assert split_held_out(examples[:4], 0.1) == (examples[:4], [])
    assert len(split_held_out(examples, 0.4, max_held_out=7)[1]) == 7


# -- grounded examples ---------------------------------------------------------------------------

PROMPT = GroundedPrompt(instruction="Answer from the passages.", passages_header="Passages:",
                        abstention="I could not find this in your documents.",
                        system_prompt="You are Bastion, a helpful assistant.")


def pairs(n: int) -> list[QAPair]:
    return [QAPair(f"What is the code of vault {i}?", f"The code is {1000 + i}.",
                   (Passage(f"Vault {i} opens with code {1000 + i}, set in 1999.", f"/docs/vault{i}.txt", i),),
                   (Passage(f"Vault {i} is painted blue.", f"/docs/paint{i}.txt"),))
            for i in range(n)]


def test_abstention_share_is_exact_and_abstentions_never_show_the_answer() -> None:
    stats = GroundedStats()
    examples = grounded_examples(pairs(40), PROMPT, abstention_fraction=0.25, distractors=2, seed=1, stats=stats)
    assert len(examples) == 40
    abstaining = [e for e in examples if e.kind == "abstention"]
    assert len(abstaining) == 10 and stats.abstention == 10 and stats.answerable == 30
    for e, pair in zip(examples, pairs(40), strict=True):
        system, user, assistant = e.messages
        assert system["content"] == PROMPT.system_prompt
        assert user["content"].startswith("Answer from the passages.\n\nPassages:\n\n[1] (")
        assert user["content"].endswith(f"\n\nQuestion: {pair.question}")
        assert user["content"].count("[end of passage") == 3  # same length either way
        code = str(1000 + int(pair.question.split()[-1].rstrip("?")))
        if e.kind == "abstention":
            assert assistant["content"] == PROMPT.abstention
            assert code not in user["content"]
        else:
            # The answer cites the passage that holds it, wherever it landed.
            n = int(assistant["content"].rsplit("[", 1)[1].rstrip("]"))
            assert f"[{n}] (vault" in user["content"] and code in user["content"].split(f"[{n}] (")[1].split("[end")[0]
    # The answer passage is not always first.
    assert len({e.messages[1]["content"].index("opens with code") // 100 for e in examples if e.kind == "grounded"}) > 1


def test_a_citation_first_answer_starts_with_the_passage_holding_it() -> None:
    examples = grounded_examples(pairs(20), PROMPT, abstention_fraction=0.1, distractors=2, seed=4,
                                 citation_first=True)
    grounded = [e for e in examples if e.kind == "grounded"]
    assert len(grounded) == 18
    for e in grounded:
        user, answer = e.messages[1]["content"], e.messages[2]["content"]
        # Every answering target opens with the same token, "[", then the answer itself.
        n, rest = answer[1:].split("] ", 1)
        code = rest.split()[-1].rstrip(".")
        assert rest == f"The code is {code}." and "[" not in rest
        assert code in user.split(f"[{n}] (")[1].split("[end")[0]
    assert all(e.messages[2]["content"] == PROMPT.abstention for e in examples if e.kind == "abstention")


def test_hard_distractors_come_first_and_nothing_holding_the_answer_is_a_distractor() -> None:
    pool = [Passage("Another note: the code is 1000.", "/docs/leak.txt")]  # holds pair 0's answer
    [example] = grounded_examples(pairs(1), PROMPT, distractor_pool=pool, distractors=1,
                                  abstention_fraction=0.0)
    assert "painted blue" in example.messages[1]["content"]
    assert "leak.txt" not in example.messages[1]["content"]
    assert grounded_examples(pairs(5), PROMPT, abstention_fraction=0.2, cite=False)[0].messages[2]["content"] in {
        "The code is 1000.", PROMPT.abstention}


def test_matches_the_prompt_the_application_sends() -> None:
    """With the application's wording passed in, a training prompt is the very prompt the app
    builds for a documents-mode answer (desktop/grounding.py)."""
    from bastion.desktop import grounding

    @dataclass
    class Hit:
        text: str
        path: str
        page: int | None

    passages = [Passage("Clause 7: notice is 21 days.", "/home/u/contracts/lease.pdf", 3),
                Passage("Rent is due monthly.", "/home/u/notes.txt")]
    app = grounding.grounded_user_message(
        "What is the notice period?",
        grounding.Grounding(texts=[grounding.format_passage(i, Hit(p.text, p.source, p.page))  # type: ignore[arg-type]
                                   for i, p in enumerate(passages, start=1)]),
        "docs")
    prompt = GroundedPrompt(grounding.DOCS_INSTRUCTION, grounding.PASSAGES_HEADER, grounding.NOT_FOUND_ANSWER)
    assert prompt.user_message("What is the notice period?", passages) == app


def test_pairs_without_passages_are_skipped_with_a_reason() -> None:
    stats = GroundedStats()
    bad = [QAPair("Q?", "A.", ()), QAPair(" ", "A.", (Passage("t", "s"),))]
    assert grounded_examples(bad, PROMPT, stats=stats) == []
    assert len(stats.skipped) == 2 and "no passage" in stats.skipped[0]
    with pytest.raises(TrainingDataError):
        grounded_examples(pairs(2), PROMPT, abstention_fraction=1.5)


# -- settings, base check, events ------------------------------------------------------------------


def test_config_round_trips_as_json_and_refuses_nonsense(tmp_path: Path) -> None:
    config = FinetuneConfig(base=tmp_path / "b.gguf", data=tmp_path / "d.jsonl", output=tmp_path / "a.gguf",
                            work_dir=tmp_path / "w", targets=("q_proj", "v_proj"), max_steps=3)
    assert FinetuneConfig.from_json(json.loads(json.dumps(config.to_json()))) == config
    assert config.record_path == tmp_path / "a.training.json"
    config.check()
    with pytest.raises(FinetuneError, match="rank must be between 1 and 256; targets must be among"):
        FinetuneConfig(**{**config.__dict__, "rank": 0, "targets": ("lm_head",)}).check()
    with pytest.raises(FinetuneError, match="Unknown fine-tuning settings: colour"):
        FinetuneConfig.from_json({**config.to_json(), "colour": "red"})


def test_base_models_are_checked_up_front(tmp_path: Path) -> None:
    assert check_base_model(write_tiny_gguf(tmp_path / "llama.gguf")).architecture == "llama"
    with pytest.raises(UnsupportedBaseModel, match="'phi3' model; Bastion can fine-tune llama, qwen2, qwen3"):
        check_base_model(write_tiny_gguf(tmp_path / "phi.gguf", arch="phi3"))
    with pytest.raises(UnsupportedBaseModel, match="is a LoRA adapter"):
        check_base_model(write_tiny_gguf(tmp_path / "ad.gguf", kv={"general.type": "adapter"}))


def test_events_cross_the_process_boundary_as_json() -> None:
    event = StepDone(3, 10, 1, 2.5, 1e-4, 512, 180.0, 2.8, 19.6, 900.0)
    assert event_from_json(json.loads(json.dumps(event_to_json(event)))) == event
    assert event_from_json({"type": "Cancelled", "step": 2, "checkpoint": None}) == Cancelled(2, None)
    for bad in ({"type": "os.system"}, {"type": "Cancelled", "step": 1, "evil": 1}, {"type": "Cancelled"}):
        with pytest.raises(FinetuneError):
            event_from_json(bad)


def test_unanswerable_pairs_fill_half_the_abstention_share_at_most() -> None:
    answerable = pairs(40)
    impossible = [QAPair(f"Who painted vault {i} red?", "", (), (Passage(f"Vault {i} is painted blue.",
                                                                          f"/docs/paint{i}.txt"),),
                         answerable=False) for i in range(30)]
    stats = GroundedStats()
    examples = grounded_examples(answerable + impossible, PROMPT, abstention_fraction=0.2,
                                 distractors=2, seed=2, stats=stats)
    # 40 answerable: 4 real unanswerable (half of 20%), so 44 examples, 9 abstaining in all.
    assert len(examples) == 44 and stats.abstention == 9 and stats.answerable == 35
    assert stats.unanswerable_left_out == 26
    real = [e for e in examples if e.messages[1]["content"].endswith("red?")]
    assert len(real) == 4
    for e in real:
        assert e.kind == "abstention" and e.messages[2]["content"] == PROMPT.abstention
        assert "painted blue" in e.messages[1]["content"]  # its retrieved passage is shown
    # Without passages to show, an unanswerable pair cannot teach anything.
    lone = QAPair("Who?", "", (), (), answerable=False)
    stats = GroundedStats()
    assert grounded_examples([lone], PROMPT, stats=stats) == [] and "no passage" in stats.skipped[0]
