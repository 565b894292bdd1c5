"""The freshness experiment on a fake engine and a real library (hashing embedder): facts are
changed in a copy only, the documents route follows the change, the model alone keeps the old
fact, the re-sync is timed, and the scratch collection is gone at the end, however it ends."""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from bastion.desktop import library as library_use_case
from bastion.desktop.app import App
from bastion.desktop.cli import main
from bastion.desktop.grounding import PASSAGES_HEADER
from bastion.desktop.lab.fact_changes import answer_kind, apply_changes, new_value, plan_changes
from bastion.desktop.lab.freshness import (
    SCRATCH_FOLDER,
    FreshnessIndexed,
    FreshnessPlanned,
    FreshnessRequest,
    run_freshness,
    scratch_name,
)
from bastion.desktop.lab.questions import load_questions
from bastion.desktop.paths import data_paths
from bastion.models.engine_types import AdapterUse, ChatEvent, Sampling
from tests.desktop.fakes import FakeEngine
from tests.models.adapter_fixtures import random_lora
from tests.store.fakes import CountingParser, HashingEmbedder

DOCS = {
    "vault.txt": "Security.\n\nThe access code for the north vault is 4417. Ask the guard.\n",
    "history/founding.txt": "The company was founded by Marta Quell in 1987, in a garage.\n",
    "lunch.txt": "The cafeteria serves fish soup on Fridays.\n",
}
QUESTIONS = [
    {"id": "vault", "question": "What is the access code for the north vault?", "answers": ["4417"],
     "source": "vault.txt"},
    {"id": "founder", "question": "Who founded the company?", "answers": ["Marta Quell"],
     "source": "founding.txt"},
    {"id": "year", "question": "In what year was the company founded?", "answers": ["1987"],
     "source": "history/founding.txt"},
    {"id": "soup", "question": "What soup is served on Fridays?", "answers": ["fish soup"],
     "source": "lunch.txt"},
    {"id": "ceo", "question": "Who is the chief executive?", "answers": [], "unanswerable": True},
]
# question keyword → (where the documents state it, what the model "knows" from training)
FACTS = {"access code": (r"north vault is (\d+)", "4417"),
         "Who founded": (r"founded by ([A-Z]\w+ [A-Z]\w+)", "Marta Quell"),
         "what year": (r"in (\d{4})", "1987"),
         "soup": (r"serves (\w+ soup)", "fish soup")}


class KnowingEngine(FakeEngine):
    """Reads the fact from the passages when it has some; alone, answers what it was trained on."""

    gguf_info = None

    def chat(self, messages: Sequence[dict[str, str]], sampling: Sampling | None = None,
             adapters: Sequence[AdapterUse] = ()) -> Iterator[ChatEvent]:
        prompt = messages[-1]["content"]
        question = prompt.rsplit("Question: ", 1)[-1]
        pattern, known = next(v for k, v in FACTS.items() if k in question)
        found = re.search(pattern, prompt) if PASSAGES_HEADER in prompt else None
        self.reply = f"It is {found.group(1)} [1]." if found else f"It is {known}."
        yield from super().chat(messages, sampling, adapters)


@pytest.fixture
def docs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    parser, embedder = CountingParser(), HashingEmbedder()
    monkeypatch.setattr(library_use_case, "default_embedder", lambda folder: embedder)
    monkeypatch.setattr(library_use_case, "default_parse_pool", parser.pool)
    monkeypatch.setattr(App, "engine", lambda self, model=None, reload=False: KnowingEngine())
    folder = tmp_path / "office"
    for name, text in DOCS.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text, encoding="utf-8")
    assert main(["library", "add", "office", str(folder)]) == 0
    return folder


def questions(tmp_path: Path) -> Path:
    path = tmp_path / "office.jsonl"
    path.write_text("".join(json.dumps(q) + "\n" for q in QUESTIONS), encoding="utf-8")
    return path


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def collections() -> list[str]:
    with App() as app:
        return [c.name for c in app.library.collections()]


def test_new_values_are_of_the_same_kind_and_deterministic() -> None:
    rng = random.Random(3)
    code = new_value("4417", "number", rng)
    assert re.fullmatch(r"[1-9]\d{3}", code) and code != "4417"
    year = new_value("1987", "number", rng)
    assert 1000 <= int(year) <= 2099 and year != "1987"
    name = new_value("Marta Quell", "name", rng)
    assert len(name.split()) == 2 and all(w[0].isupper() for w in name.split()) and name != "Marta Quell"
    assert new_value("4417", "number", random.Random(3)) == code
    assert answer_kind("lot 7") == "number" and answer_kind("Marta Quell") == "name"
    assert answer_kind("fish soup") is None


def test_the_plan_changes_exactly_the_chosen_answers(tmp_path: Path) -> None:
    qset = load_questions(questions(tmp_path)).questions
    texts = {f"/docs/{name}": text for name, text in DOCS.items()}
    plan = plan_changes(qset, texts, fraction=1.0, seed=0)
    assert [c.question_id for c in plan.changes] == ["vault", "founder", "year"]
    assert plan.candidates == 3
    assert plan.passed_over == {"gold answer is neither a number nor a name": 1}
    changed = {path: apply_changes(text, [c for c in plan.changes if c.path == path])
               for path, text in texts.items()}
    for change in plan.changes:
        assert change.new in changed[change.path] and change.old not in changed[change.path]
        assert changed[change.path].replace(change.new, change.old) == texts[change.path] or \
            change.path.endswith("founding.txt")
    founding = "/docs/history/founding.txt"
    undo = changed[founding]
    for change in plan.changes:
        if change.path == founding:
            undo = undo.replace(change.new, change.old)
    assert undo == texts[founding]
    assert changed["/docs/lunch.txt"] == texts["/docs/lunch.txt"]

    fewer = plan_changes(qset, texts, fraction=0.3, seed=0)
    assert len(fewer.changes) == 1 and fewer.passed_over["not drawn"] == 2
    assert plan_changes(qset, texts, fraction=0.3, seed=0) == fewer


def test_the_copy_is_changed_and_the_original_is_not(tmp_path: Path, docs: Path) -> None:
    before = snapshot(docs)
    out = tmp_path / "fresh"
    request = FreshnessRequest(questions=questions(tmp_path), collection="office", fraction=1.0, out=out)
    with App() as app:
        events = run_freshness(app, request)
        planned = next(events)
        assert isinstance(planned, FreshnessPlanned) and planned.documents == 3
        indexed = next(events)
        assert isinstance(indexed, FreshnessIndexed) and indexed.changed_files == 2
        assert indexed.build_s > 0 and indexed.resync_s > 0
        copies = {str(p.relative_to(out / SCRATCH_FOLDER / "documents" / "1")): p.read_text("utf-8")
                  for p in (out / SCRATCH_FOLDER / "documents").rglob("*.txt")}
        by_path = {str(Path(c.path).relative_to(docs)): c for c in planned.plan.changes}
        for name, text in DOCS.items():
            mine = [c for c in planned.plan.changes if str(Path(c.path).relative_to(docs)) == name]
            assert copies[name] == apply_changes(text, mine), name
        assert set(by_path) == {"vault.txt", "history/founding.txt"}
        assert scratch_name("office") in [c.name for c in app.library.collections()]
        events.close()  # cancelled between the re-sync and the questions
        assert [c.name for c in app.library.collections()] == ["office"]
    assert not (out / SCRATCH_FOLDER).exists()
    assert snapshot(docs) == before


def test_a_stop_during_the_build_removes_the_scratch_collection(tmp_path: Path, docs: Path) -> None:
    out = tmp_path / "fresh"
    request = FreshnessRequest(questions=questions(tmp_path), collection="office", fraction=1.0, out=out)
    stop: list[bool] = []
    with App() as app:
        events = []
        for event in run_freshness(app, request, should_stop=lambda: bool(stop)):
            events.append(event)
            stop.append(True)  # asked at the first sync event
        assert [type(e) for e in events] == [FreshnessPlanned]
        assert [c.name for c in app.library.collections()] == ["office"]
    assert not (out / SCRATCH_FOLDER).exists()


def test_freshness_run_reports_who_follows_the_change(
    tmp_path: Path, docs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    adapters = data_paths().adapters_dir
    adapters.mkdir(parents=True, exist_ok=True)
    random_lora(adapters / "facts.gguf")
    (adapters / "facts.training.json").write_text(json.dumps({"wall_s": 754.2}), encoding="utf-8")
    before = snapshot(docs)
    out = tmp_path / "fresh"
    assert main(["lab", "freshness", str(questions(tmp_path)), "--collection", "office",
                 "--fraction", "1", "--adapter", "facts", "--out", str(out)]) == 0
    stdout, err = capsys.readouterr()
    assert "Changing 3 of 3 changeable facts in a copy of 3 files" in err
    assert "re-synced in" in err and "[12/12]" in err and "Recommended route" in stdout

    record = json.loads((out / "freshness.json").read_text(encoding="utf-8"))
    assert record["resync_s"] > 0 and record["build_s"] > 0 and record["retrain_s"] == {"facts": 754.2}
    new = {c["question_id"]: c["new"] for c in record["changes"]}
    old = {c["question_id"]: c["old"] for c in record["changes"]}
    answers = [json.loads(line) for line in (out / "answers.jsonl").read_text().splitlines()]
    for answer in answers:
        if answer["arm"].startswith("docs"):
            assert new[answer["question_id"]] in answer["answer"]
        else:
            assert old[answer["question_id"]] in answer["answer"]
    costs = json.loads((out / "run.json").read_text(encoding="utf-8"))["costs"]
    assert costs["collection"]["index_build_s"] == record["build_s"]

    report = (out / "report.md").read_text(encoding="utf-8")
    section = report.split("## Freshness: changed facts asked again", 1)[1].split("## Costs", 1)[0]
    rows = {line.split(" | ")[0].strip("| "): line for line in section.splitlines() if line.startswith("| base")}
    assert "| 0% [0, 0] (0/3) | 100% [100, 100] (3/3) | 0/3 |" in rows["base"]
    assert "| 100% [100, 100] (3/3) | 0% [0, 0] (0/3) | 0/3 |" in rows["base + documents"]
    assert "never by itself" in rows["base"] and "re-sync: " in rows["base + documents"]
    assert "retrain: ~13 min (from its training record)" in rows["base + adapter facts"]
    assert "re-sync: " in rows["base + adapter facts + documents"]
    assert "Passed over: 1 gold answer is neither a number nor a name" in section
    assert "How often the collection actually changed: none of its 3 documents" in section
    assert "the library keeps no sync history" in section
    assert "Freshness: changed facts asked again" in (out / "report.html").read_text(encoding="utf-8")

    assert collections() == ["office"]
    assert not (out / SCRATCH_FOLDER).exists()
    assert snapshot(docs) == before


def test_a_question_set_without_changeable_facts_is_refused(
    tmp_path: Path, docs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "soup.jsonl"
    path.write_text(json.dumps(QUESTIONS[3]) + "\n", encoding="utf-8")
    assert main(["lab", "freshness", str(path), "--collection", "office"]) == 1
    err = capsys.readouterr().err
    assert "No fact of soup.jsonl can be changed in 'office' (1 gold answer is neither" in err
    with pytest.raises(SystemExit) as refused:
        main(["lab", "freshness", str(path), "--collection", "office", "--fraction", "0"])
    assert refused.value.code == 2
    assert "the fraction is a number above 0" in capsys.readouterr().err
    assert collections() == ["office"]


def test_how_often_a_collection_changed_comes_from_its_documents_indexed_times() -> None:
    from dataclasses import dataclass

    from bastion.desktop.lab.freshness_history import DAY_S, change_history, history_sentence

    @dataclass
    class Doc:
        indexed_at: float | None

    @dataclass
    class Info:
        created: float

    class Library:
        def collection(self, name: str) -> Info:
            return Info(created=1000.0)

        def documents(self, name: str) -> list[Doc]:
            built = [Doc(1000.0 + i) for i in range(8)]
            return [*built, Doc(1000 + 3 * DAY_S), Doc(1000 + 3 * DAY_S + 60), Doc(1000 + 10 * DAY_S),
                    Doc(None)]

    history = change_history(Library(), "office", now=1000 + 30 * DAY_S)
    assert history["documents"] == 11 and history["changed_later"] == 3 and history["change_days"] == 2
    sentence = history_sentence(history)
    assert sentence.startswith("How often the collection actually changed: 3 of its 11 documents were "
                               "added or changed after its first day, on 2 distinct days over 30 days "
                               "— about one change day every 15 days")
    assert "the library keeps no sync history" in sentence


def test_ctrl_c_while_answering_removes_the_scratch_collection(
    tmp_path: Path, docs: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    class Interrupted(KnowingEngine):
        def chat(self, messages, sampling=None, adapters=()):  # type: ignore[no-untyped-def]
            raise KeyboardInterrupt

    monkeypatch.setattr(App, "engine", lambda self, model=None, reload=False: Interrupted())
    out = tmp_path / "fresh"
    assert main(["lab", "freshness", str(questions(tmp_path)), "--collection", "office",
                 "--out", str(out)]) == 130
    assert "Stopped. The answers so far are kept" in capsys.readouterr().err
    assert collections() == ["office"]
    assert not (out / SCRATCH_FOLDER).exists()
