"""The resident service end to end: real embedder, real model, real processes.

``bastion search`` starts the service, the next commands are answered by it, a second
``bastion serve`` says where the first runs, and SIGTERM stops it and removes its socket.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bastion.desktop.api.local_socket import holder, socket_path

pytestmark = pytest.mark.slow


def bastion(*argv: str, env: dict[str, str], expect: int = 0) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, "-m", "bastion.desktop", *argv], env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == expect, result.stderr
    return result


def test_commands_start_and_share_one_service(bastion_home: Path, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "tallow.txt").write_text("The river Tallow rises in the Brenmoor hills. Its lower "
                                     "course was canalised in 1847 to carry slate.\n")
    (docs / "lighthouse.txt").write_text("The Carrick lighthouse was first lit in 1852.\n")
    env = {**os.environ, "BASTION_SERVICE": "on"}
    bastion("settings", "set", "n_threads", "1", env=env)
    bastion("library", "add", "history", str(docs), env=env)
    pid = None
    try:
        first = bastion("search", "canal slate", "-k", "1", env=env)
        assert "Starting the Bastion service" in first.stderr and "tallow.txt" in first.stdout
        pid = int(str(holder(bastion_home)["pid"]))
        assert socket_path(bastion_home).exists()

        warm = bastion("search", "lighthouse", "-k", "1", "--json", env=env)
        assert "Starting" not in warm.stderr
        assert json.loads(warm.stdout.splitlines()[0])["path"].endswith("lighthouse.txt")

        asked = bastion("ask", "When was the river Tallow canalised?", "--collection", "history",
                        "--max-tokens", "24", "--temperature", "0", "--json", env=env)
        answer = json.loads(asked.stdout)
        assert answer["status"] == "complete" and answer["chat_id"] >= 1
        assert any(p["file"].endswith("tallow.txt") for p in answer["passages"])
        listed = bastion("chats", "list", "--json", env=env)
        assert [json.loads(line)["id"] for line in listed.stdout.splitlines()] == \
            [answer["chat_id"]]  # stored by the service, seen by another process

        second = bastion("serve", env=env, expect=1)
        assert "already runs" in second.stderr and f"process {pid}" in second.stderr
        log = (bastion_home / "logs" / "service.log").read_text()
        assert log.count("POST /bastion/search") == 2 and "POST /bastion/ask" in log
    finally:
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
    for _ in range(600):  # the service removes its socket on its way out, then exits
        try:
            os.kill(pid or 0, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    assert not socket_path(bastion_home).exists()
    assert "Traceback" not in (bastion_home / "logs" / "service.log").read_text()
