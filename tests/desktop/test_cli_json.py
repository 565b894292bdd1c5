"""``--json`` on the listings (JSON lines, one object per item) and on ``ask`` (one object)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bastion.desktop.cli import main
from bastion.store.chats import ChatStore
from tests.desktop.cli_fakes import FakeParts, install
from tests.desktop.fakes import FakeEngine, FakeHit, FakeRetriever


def json_lines(capsys: pytest.CaptureFixture[str], *argv: str) -> list[dict]:
    assert main(list(argv)) == 0
    out = capsys.readouterr().out
    return [json.loads(line) for line in out.splitlines()]


def test_models_list_json_is_one_line_per_model(capsys: pytest.CaptureFixture[str]) -> None:
    [model] = json_lines(capsys, "models", "list", "--json")
    assert model["id"] == "SmolLM2-135M-Instruct.Q4_1" and model["default"] is True
    assert model["origin"] == "embedded" and model["quantization"] == "Q4_1"
    assert model["context_length"] == 8192 and model["error"] is None


def test_adapters_list_json_without_adapters_prints_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    assert json_lines(capsys, "adapters", "list", "--json") == []


def test_chats_list_json(bastion_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert json_lines(capsys, "chats", "list", "--json") == []
    store = ChatStore(bastion_home / "bastion.db")
    first = store.create_chat(mode="docs", collections=["manuals"], adapters=[("facts", 0.5)])
    store.add_message(first.id, "user", "Where is the fuse?")
    second = store.create_chat()
    store.close()
    chats = json_lines(capsys, "chats", "list", "--json")
    assert [c["id"] for c in chats] == [second.id, first.id]  # most recent first
    assert chats[1] == {**chats[1], "mode": "docs", "collections": ["manuals"], "messages": 1,
                        "adapters": [{"name": "facts", "scale": 0.5}]}
    assert chats[0]["messages"] == 0 and isinstance(chats[0]["updated"], float)


def test_ask_json_prints_one_object_with_citations_and_timings(
        bastion_home: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    parts = install(monkeypatch, FakeParts(
        engine=FakeEngine("The code is 7741 [1]."),
        retriever=FakeRetriever([FakeHit("The launch code is 7741.", "/d/codes.pdf", page=3),
                                 FakeHit("Cats sleep.", "/d/cats.txt", vector_score=0.1,
                                         bm25_score=None)])))
    assert main(["ask", "What is the launch code?", "--collection", "docs", "--json"]) == 0
    out = capsys.readouterr().out
    answer = json.loads(out)  # one object, nothing streamed around it
    assert answer["answer"] == "The code is 7741 [1]."
    assert answer["status"] == "complete" and answer["not_found"] is False
    [citation] = answer["citations"]
    assert (citation["n"], citation["file"], citation["page"]) == (1, "/d/codes.pdf", 3)
    assert [p["file"] for p in answer["passages"]] == ["/d/codes.pdf"]
    assert answer["model"]["name"] == "fake" and answer["adapters"] == []
    assert answer["mode"] == "docs" and answer["collections"] == ["docs"]
    timings = answer["timings"]
    assert timings["generated_tokens"] == 5 and timings["total_s"] >= 0
    assert "retrieval_ms" in timings and "time_to_first_token_s" in timings
    assert parts.loads == [(None, True)]
    [chat] = ChatStore(bastion_home / "bastion.db").chats()
    assert chat.id == answer["chat_id"]
