"""``bastion ask`` / ``bastion chats`` end to end on the real SmolLM2, including kill -9 mid-answer."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bastion.desktop.cli import main
from bastion.store.chats import ChatStore

pytestmark = pytest.mark.slow


def test_ask_model_mode_prints_an_answer_and_stores_the_chat(
    bastion_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["ask", "Say hello in one short sentence.", "--max-tokens", "24", "--temperature", "0"]) == 0
    out, err = capsys.readouterr()
    assert out.strip()
    assert "tokens/s" in err and "first token" in err
    store = ChatStore(bastion_home / "bastion.db")
    [chat] = store.chats()
    messages = store.messages(chat.id)
    assert [m.role for m in messages] == ["user", "assistant"]
    assert messages[1].status == "complete" and messages[1].content.strip() == out.strip()
    meta = messages[1].meta
    assert meta["model"] and meta["mode"] == "model" and meta["generated_tokens"] > 0
    assert meta["sampling"]["temperature"] == 0.0

    assert main(["chats", "export", str(chat.id), "--format", "jsonl"]) == 0
    line = capsys.readouterr().out.strip()
    assert json.loads(line)["messages"][-1]["role"] == "assistant"


def test_kill_during_streaming_loses_nothing_acknowledged(bastion_home: Path) -> None:
    env = {**os.environ, "BASTION_HOME": str(bastion_home)}
    question = "Write a very long story about a lighthouse keeper and the sea."
    proc = subprocess.Popen(
        [sys.executable, "-m", "bastion.desktop", "ask", question, "--max-tokens", "2000"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        # Wait until some of the answer has been written down, then kill without warning.
        db = bastion_home / "bastion.db"
        deadline = time.monotonic() + 120
        saved = ""
        while time.monotonic() < deadline and not saved:
            time.sleep(0.3)
            if db.exists():
                try:
                    store = ChatStore(db)
                    rows = [m for c in store.chats() for m in store.messages(c.id) if m.role == "assistant"]
                    store.close()
                except Exception:
                    continue
                saved = rows[0].content if rows else ""
            assert proc.poll() is None, "the answer finished before it could be interrupted"
        assert saved, "no streamed text was saved in time"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)

    store = ChatStore(bastion_home / "bastion.db")
    assert store.integrity_ok()
    [chat] = store.chats()
    user, answer = store.messages(chat.id)
    assert user.content == question and user.status == "complete"
    assert answer.status == "interrupted"
    assert answer.content.startswith(saved)
