"""``bastion lab run|report`` through the CLI entry point, on a fake engine and a real library
with a hashing embedder (fast); bad input is refused before any model loads."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from bastion.desktop import library as library_use_case
from bastion.desktop.app import App
from bastion.desktop.cli import main
from bastion.models.engine_types import AdapterUse, ChatEvent, Sampling
from tests.desktop.fakes import FakeEngine
from tests.store.fakes import CountingParser, HashingEmbedder

FACTS = {"vault.txt": "The access code for the north vault is 4417.",
         "lunch.txt": "The cafeteria serves fish soup on Fridays."}


class LabEngine(FakeEngine):
    """Echoes a number from the passages when it has some, else guesses; can stop the run."""

    gguf_info = None

    def __init__(self, stop_after: int | None = None):
        super().__init__()
        self.calls = 0
        self.stop_after = stop_after

    def chat(self, messages: Sequence[dict[str, str]], sampling: Sampling | None = None,
             adapters: Sequence[AdapterUse] = ()) -> Iterator[ChatEvent]:
        if self.stop_after is not None and self.calls >= self.stop_after:
            raise KeyboardInterrupt
        self.calls += 1
        self.reply = "The code is 4417 [1]." if "4417" in messages[-1]["content"] else "Maybe 1234."
        yield from super().chat(messages, sampling, adapters)


@pytest.fixture
def library_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    parser, embedder = CountingParser(), HashingEmbedder()
    monkeypatch.setattr(library_use_case, "default_embedder", lambda folder: embedder)
    monkeypatch.setattr(library_use_case, "default_parse_pool", parser.pool)


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch) -> LabEngine:
    fake = LabEngine()
    monkeypatch.setattr(App, "engine", lambda self, model=None, reload=False: fake)
    return fake


@pytest.fixture
def no_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: App, model: str | None = None, reload: bool = False) -> None:
        raise AssertionError("the model was loaded although the input is bad")

    monkeypatch.setattr(App, "engine", refuse)


@pytest.fixture
def docs(tmp_path: Path, library_parts: None) -> Path:
    folder = tmp_path / "office"
    folder.mkdir()
    for name, text in FACTS.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def questions(tmp_path: Path, extra: Sequence[object] = ()) -> Path:
    rows = [
        {"id": "vault", "question": "What is the access code for the north vault?",
         "answers": ["4417"], "source": "vault.txt"},
        {"id": "soup", "question": "What soup is served on Fridays?", "answers": ["fish soup"]},
        {"id": "ceo", "question": "Who is the chief executive?", "answers": [], "unanswerable": True},
        *extra,
    ]
    path = tmp_path / "office-questions.jsonl"
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows),
                    encoding="utf-8")
    return path


def test_lab_run_answers_reports_and_report_again(
    tmp_path: Path, docs: Path, engine: LabEngine, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["library", "add", "office", str(docs)]) == 0
    capsys.readouterr()
    out_dir = tmp_path / "run"
    assert main(["lab", "run", str(questions(tmp_path)), "--collection", "office",
                 "--modes", "model,docs", "--out", str(out_dir), "--max-tokens", "40"]) == 0
    out, err = capsys.readouterr()
    assert "Starting the lab run" in err and "3 questions × 2 arms (base, base + documents)" in err
    assert "[6/6]" in err and "ETA" in err
    assert "Recommended route" in out and str(out_dir / "report.html") in out
    for name in ("report.md", "report.html", "answers.csv", "answers.json", "answers.jsonl",
                 "run.json", "questions.jsonl"):
        assert (out_dir / name).is_file(), name
    assert not (out_dir / "lab.db").exists()  # answers are made without throwaway chats
    run = json.loads((out_dir / "run.json").read_text(encoding="utf-8"))
    assert run["sampling"]["temperature"] == 0.0 and run["sampling"]["max_tokens"] == 40
    assert run["costs"]["collection"]["documents"] == 2 and run["costs"]["model"]["bytes"] > 0

    # The same command again continues the (finished) run: nothing is asked twice.
    calls = engine.calls
    assert main(["lab", "run", str(questions(tmp_path)), "--collection", "office",
                 "--modes", "model,docs", "--out", str(out_dir), "--max-tokens", "40"]) == 0
    assert "Continuing" in capsys.readouterr().err and engine.calls == calls

    (out_dir / "report.md").unlink()
    assert main(["lab", "report", str(out_dir)]) == 0
    assert "Recommended route" in capsys.readouterr().out
    assert "base + documents" in (out_dir / "report.md").read_text(encoding="utf-8")


def test_ctrl_c_keeps_the_answers_and_says_how_to_continue(
    tmp_path: Path, docs: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["library", "add", "office", str(docs)]) == 0
    stopping = LabEngine(stop_after=1)
    monkeypatch.setattr(App, "engine", lambda self, model=None, reload=False: stopping)
    out_dir = tmp_path / "run"
    args = ["lab", "run", str(questions(tmp_path)), "--collection", "office", "--out", str(out_dir)]
    assert main(args) == 130
    assert "Stopped. The answers so far are kept" in capsys.readouterr().err
    kept = len((out_dir / "answers.jsonl").read_text(encoding="utf-8").splitlines())
    assert kept >= 1

    resumed = LabEngine()
    monkeypatch.setattr(App, "engine", lambda self, model=None, reload=False: resumed)
    assert main(args) == 0
    assert f"{kept} of 9 answers already recorded" in capsys.readouterr().err


@pytest.mark.parametrize(("setup", "message"), [
    ("unknown-collection", "There is no collection named 'nowhere'"),
    ("empty-collection", "has no indexed passages"),
    ("bad-line", "line 4: 'answers' is empty"),
    ("duplicate-id", "line 4: the id 'vault' is already used on line 1"),
    ("unknown-adapter", "No adapter called 'legal'"),
    ("no-collection-docs-only", "the documents modes need --collection"),
])
def test_bad_input_is_refused_before_the_model_loads(
    tmp_path: Path, docs: Path, no_engine: None, capsys: pytest.CaptureFixture[str],
    setup: str, message: str,
) -> None:
    assert main(["library", "add", "office", str(docs)]) == 0
    assert main(["library", "add", "empty", str(tmp_path), "--no-sync"]) == 0
    extra: list[object] = []
    args = ["--collection", "office"]
    if setup == "unknown-collection":
        args = ["--collection", "nowhere"]
    elif setup == "empty-collection":
        args = ["--collection", "empty"]
    elif setup == "bad-line":
        extra = [{"question": "Where?", "answers": []}]
    elif setup == "duplicate-id":
        extra = [{"id": "vault", "question": "Again?", "answers": ["x"]}]
    elif setup == "unknown-adapter":
        args += ["--adapter", "legal:0.5"]
    elif setup == "no-collection-docs-only":
        args = ["--modes", "docs"]
    capsys.readouterr()
    assert main(["lab", "run", str(questions(tmp_path, extra)), *args, "--out", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("bastion: ") and message in err, err
    assert "Traceback" not in err


def test_lab_report_on_a_folder_that_is_not_a_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lab", "report", str(tmp_path)]) == 1
    assert "is not a lab run folder" in capsys.readouterr().err
