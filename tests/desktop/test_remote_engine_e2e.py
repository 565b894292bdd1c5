"""The remote engine against a real server: llama-cpp-python's own ``llama_cpp.server`` on
127.0.0.1 serving the embedded SmolLM2 with a token — streaming, Stop, token counts, a wrong token,
an unknown model, and a docs-mode answer whose retrieval stays local."""

from __future__ import annotations

import http.client
import io
import os
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bastion.desktop.app import App
from bastion.desktop.assistant import AnswerDone, PassagesFound
from bastion.desktop.cli import main
from bastion.desktop.configuration import change_setting
from bastion.desktop.egress import allow_remote_endpoint
from bastion.desktop.library import add_collection
from bastion.desktop.settings import Settings
from bastion.models.engine_types import ChatDelta, ChatDone, LoadOptions, Sampling
from bastion.models.remote_engine import RemoteEngine
from bastion.models.remote_http import RemoteAuthFailed, RemoteEndpoint, RemoteModelNotFound

pytestmark = [pytest.mark.slow, pytest.mark.allow_hosts(["127.0.0.1"])]

TOKEN = "test-token-0123456789"
MODEL = "smollm2"
# Bastion's llama.cpp keeps its CPU kernels in loadable libraries; the server needs them
# registered (as the engine does) before it loads a model.
LAUNCH = textwrap.dedent(
    """
    import runpy, sys
    from bastion.models.llama_backends import load_cpu_backend
    load_cpu_backend()
    sys.argv = ["llama_cpp.server", *sys.argv[1:]]
    runpy.run_module("llama_cpp.server", run_name="__main__")
    """
)
MESSAGES = [{"role": "user", "content": "Write a long story about the sea."}]
FACTS = {
    "vault.txt": "Security procedures.\n\nThe access code for the north vault is 4417. "
                 "Only the night supervisor may open the north vault.",
    "cafeteria.txt": "Cafeteria.\n\nThe cafeteria serves lunch from noon until two o'clock.",
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def answers(port: int) -> bool:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", "/v1/models", headers={"Authorization": f"Bearer {TOKEN}"})
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


@pytest.fixture(scope="module")
def server_url(smollm2_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    log = tmp_path_factory.mktemp("server") / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-c", LAUNCH, "--model", str(smollm2_path), "--model_alias", MODEL,
             "--host", "127.0.0.1", "--port", str(port), "--n_threads", "1", "--n_ctx", "2048",
             "--api_key", TOKEN, "--verbose", "False"],
            stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        deadline = time.monotonic() + 180  # a readiness wait, not a measurement
        while not answers(port):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail("llama_cpp.server did not start:\n" + log.read_text(errors="replace"))
            time.sleep(0.5)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(20)
        allow_remote_endpoint(None)


def engine(url: str, token: str | None = TOKEN) -> RemoteEngine:
    return RemoteEngine(RemoteEndpoint.parse(url, token))


def test_streams_counts_and_stops_like_the_local_engine(server_url: str) -> None:
    remote = engine(server_url)
    info = remote.load(MODEL, LoadOptions(n_ctx=2048))
    assert info.name == "remote:smollm2" and info.n_ctx == 2048
    assert remote.count_tokens(["hello world", ""]) == [2, 0]  # the server's own tokenizer

    events = list(remote.chat(MESSAGES, Sampling(max_tokens=12, temperature=0.0)))
    deltas = [e for e in events if isinstance(e, ChatDelta)]
    done = events[-1]
    assert deltas and "".join(d.text for d in deltas).strip()
    assert isinstance(done, ChatDone) and done.stats.finish_reason == "length"
    assert done.stats.generated_tokens == 12 == len(deltas)
    assert done.stats.time_to_first_token_s > 0

    came = []
    for event in remote.chat(MESSAGES, Sampling(max_tokens=1500, temperature=0.0)):
        came.append(event)
        if len(came) == 3:
            remote.cancel()  # the user's Stop
    assert isinstance(came[-1], ChatDone) and came[-1].stats.finish_reason == "cancelled"
    assert len(came) < 50  # stopped long before max_tokens
    again = list(remote.chat(MESSAGES, Sampling(max_tokens=4, temperature=0.0)))
    assert isinstance(again[-1], ChatDone) and again[-1].stats.generated_tokens == 4


def test_a_wrong_token_and_an_unknown_model_are_refused(server_url: str) -> None:
    with pytest.raises(RemoteAuthFailed, match=r"HTTP 401: Invalid API key.*remote_token"):
        engine(server_url, "wrong-token-0123456789").load(MODEL)
    with pytest.raises(RemoteAuthFailed, match="none is set"):
        engine(server_url, None).load(MODEL)
    with pytest.raises(RemoteModelNotFound, match="It serves: remote:smollm2"):
        engine(server_url).load("llama-70b")


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, server_url: str) -> Path:
    """A data folder whose settings name the server, with a small indexed collection."""
    home = tmp_path_factory.mktemp("home")
    docs = tmp_path_factory.mktemp("docs")
    for name, text in FACTS.items():
        (docs / name).write_text(text, encoding="utf-8")
    path = home / "settings.json"
    settings = change_setting(Settings.load(path), path, "remote_url", server_url)
    settings = change_setting(settings, path, "remote_token", TOKEN)
    change_setting(settings, path, "n_ctx", 2048)
    mp = pytest.MonkeyPatch()
    mp.setenv("BASTION_HOME", str(home))
    with App() as app:
        add_collection(app.library, "office", [docs])
        for _ in app.library.sync("office"):
            pass
    mp.undo()
    return home


def test_docs_mode_answers_through_the_server_with_local_retrieval(
        home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("BASTION_HOME", str(home))
    with App() as app:
        assistant = app.assistant("remote:smollm2")
        assert isinstance(assistant.engine, RemoteEngine)
        assistant.sampling = Sampling(max_tokens=48, temperature=0.0, repeat_penalty=1.1)
        chat = app.chats.create_chat(mode="docs", collections=["office"])
        events = list(assistant.ask(chat.id, "What is the access code for the north vault?"))
    found = next(e for e in events if isinstance(e, PassagesFound))
    assert found.sources and found.sources[0].path.endswith("vault.txt")  # searched here
    done = events[-1]
    assert isinstance(done, AnswerDone)
    assert "4417" in done.message.content
    assert done.message.meta["model"] == "remote:smollm2" and done.message.meta["mode"] == "docs"

    # The CLI's `ask`, in this process, the same way.
    code = main(["ask", "--no-service", "--model", "remote:smollm2", "--mode", "docs",
                 "--collection", "office", "--max-tokens", "48", "--temperature", "0",
                 "What is the access code for the north vault?"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "4417" in out and "vault.txt" in out + err

    # And `bastion chat`, its question read from stdin.
    monkeypatch.setattr("sys.stdin", io.StringIO(
        "What is the access code for the north vault?\n/exit\n"))
    code = main(["chat", "--model", "remote:smollm2", "--mode", "docs", "--collection", "office",
                 "--max-tokens", "48", "--temperature", "0"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "4417" in out
