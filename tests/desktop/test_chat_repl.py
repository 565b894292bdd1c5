"""``bastion chat``'s loop driven through stdin: slash commands are handled by the CLI and never
reach the model; the chat row is created by the first question; history is private."""

from __future__ import annotations

import io
import stat
from pathlib import Path

import pytest

from bastion.desktop.cli import main
from bastion.desktop.cli.chat_repl import COMMANDS, save_history
from bastion.store.chats import ChatStore
from tests.desktop.cli_fakes import FakeParts, install
from tests.desktop.fakes import FakeEngine, FakeHit, FakeRetriever


@pytest.fixture
def parts(monkeypatch: pytest.MonkeyPatch) -> FakeParts:
    return install(monkeypatch, FakeParts(
        engine=FakeEngine("The code is 7741 [1]."),
        retriever=FakeRetriever([FakeHit("The launch code is 7741.", "/d/codes.pdf", page=3)])))


def chat(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], lines: list[str],
         *argv: str) -> tuple[int, str, str]:
    monkeypatch.setattr("sys.stdin", io.StringIO("".join(f"{line}\n" for line in lines)))
    code = main(["chat", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def stored(home: Path) -> ChatStore:
    return ChatStore(home / "bastion.db")


def test_a_session_without_a_question_stores_no_chat(
        bastion_home: Path, parts: FakeParts, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = chat(monkeypatch, capsys, ["/help", "/mode docs", "", "/exit"])
    assert code == 0 and "new chat" in err
    assert stored(bastion_home).chats() == []
    assert chat(monkeypatch, capsys, [])[0] == 0  # Ctrl-D at once
    assert stored(bastion_home).chats() == [] and parts.engine.prompts == []


def test_slash_commands_never_reach_the_model(
        bastion_home: Path, parts: FakeParts, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = chat(monkeypatch, capsys, [
        "/help", "/frobnicate now", "/mode", "/mode sideways", "/adapter x:9", "/adapter",
        "/regenerate", "/collection nosuch", "What is the code?", "/quit"])
    assert code == 0
    for command in COMMANDS:
        assert f"  {command}" in err  # /help lists it
    assert ("Unknown command /frobnicate. Commands: /help, /mode, /collection, /adapter, "
            "/regenerate, /exit") in err
    assert "Usage: /mode model|docs|both (now: model)." in err
    assert "The scale in 'x:9' must be a number from -4 to 4" in err
    assert "Usage: /adapter NAME[:SCALE] or /adapter off (now: off)." in err
    assert "Nothing to answer again yet: ask a question first." in err
    assert "No collection called nosuch." in err
    # Only the one question was sent, as the last message of one prompt.
    [prompt] = parts.engine.prompts
    assert prompt[-1]["content"].endswith("What is the code?")
    assert not any(m["content"].startswith("/") for m in prompt)
    assert "The code is 7741 [1]." in out
    [stored_chat] = stored(bastion_home).chats()
    assert [m.content for m in stored(bastion_home).messages(stored_chat.id)] == [
        "What is the code?", "The code is 7741 [1]."]


def test_mode_collection_and_adapter_change_the_chat(
        bastion_home: Path, parts: FakeParts, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    def collections(self: object) -> list[object]:
        return [type("Info", (), {"name": "manuals"})()]

    library = type("FakeLibrary", (), {"collections": collections})()
    monkeypatch.setattr("bastion.desktop.app.App.library", property(lambda self: library))
    code, out, err = chat(monkeypatch, capsys, [
        "First question?", "/mode docs", "/collection manuals manuals", "Launch code?",
        "/adapter off", "/exit"])
    assert code == 0, err
    assert "Mode: docs." in err and "Searching manuals." in err
    [saved] = stored(bastion_home).chats()
    assert (saved.mode, saved.collections) == ("docs", ["manuals"])
    # The second question was answered from the documents; the first one without them.
    assert parts.retriever.queries and parts.retriever.queries[0][1] == ("manuals",)
    assert "/d/codes.pdf, page 3" in out
    assert parts.loads[-1] == (None, True) and (None, False) in parts.loads


def test_regenerate_answers_the_last_question_again(
        bastion_home: Path, parts: FakeParts, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    code, _, _ = chat(monkeypatch, capsys, ["Say hi.", "/regenerate", "/exit"])
    assert code == 0
    assert len(parts.engine.prompts) == 2
    assert parts.engine.prompts[0] == parts.engine.prompts[1]
    [saved] = stored(bastion_home).chats()
    assert [m.role for m in stored(bastion_home).messages(saved.id)] == ["user", "assistant"]


def test_a_line_starting_with_two_slashes_is_a_question(
        parts: FakeParts, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    assert chat(monkeypatch, capsys, ["//etc/hosts: what is it?"])[0] == 0
    assert parts.engine.prompts[0][-1]["content"].endswith("/etc/hosts: what is it?")


def test_continuing_a_chat_keeps_its_mode_and_adds_to_it(
        bastion_home: Path, parts: FakeParts, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    store = stored(bastion_home)
    old = store.create_chat(mode="both", collections=["manuals"])
    store.add_message(old.id, "user", "Earlier?")
    store.add_message(old.id, "assistant", "Earlier answer.")
    code, _, err = chat(monkeypatch, capsys, ["Now?"], "--chat", str(old.id))
    assert code == 0 and f"mode both · chat {old.id}" in err
    assert [m.content for m in stored(bastion_home).messages(old.id)][2:] == [
        "Now?", "The code is 7741 [1]."]


def test_history_is_written_private(tmp_path: Path) -> None:
    readline = pytest.importorskip("readline")
    readline.clear_history()
    readline.add_history("What is the code?")
    history = tmp_path / "home" / "chat_history"
    save_history(history)
    assert stat.S_IMODE(history.stat().st_mode) == 0o600
    assert "What is the code?" in history.read_text()
    history.chmod(0o644)  # a file made loose by hand is made private again
    save_history(history)
    assert stat.S_IMODE(history.stat().st_mode) == 0o600
