"""The resident service on its Unix socket, and the command line that uses it.

The service runs in-process over the real library (with the hashing embedder), the real chat
store and a fake engine; the commands run through the real CLI entry point with
``BASTION_SERVICE`` turned on, so they take the socket path a user's commands take.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from bastion.desktop.api.local_protocol import AskRequest, SearchRequest
from bastion.desktop.api.local_socket import ServiceLock, socket_path, where_it_runs
from bastion.desktop.api.service import AnswerService, ServiceParts
from bastion.desktop.api.socket_server import UnixApiServer
from bastion.desktop.assistant import Assistant
from bastion.desktop.cli import main
from bastion.desktop.cli.service_client import ServiceClient, ServiceUnavailable
from bastion.desktop.errors import BastionError
from bastion.desktop.grounding import RetrievalPolicy
from bastion.desktop.library import open_library
from bastion.desktop.paths import data_paths
from bastion.models.engine_types import (
    AdapterUse,
    ChatDelta,
    ChatDone,
    ChatEvent,
    ChatStats,
    Sampling,
)
from bastion.store.chats import ChatStore
from tests.desktop.fakes import FakeEngine
from tests.store.fakes import CountingParser

REPLY = "Catamarans have two hulls [1]."


class EndlessEngine(FakeEngine):
    """Streams words until cancelled; says when its answer ended."""

    def __init__(self) -> None:
        super().__init__()
        self.ended = threading.Event()
        self.cancel_requested = threading.Event()

    def chat(self, messages: Sequence[dict[str, str]], sampling: Sampling | None = None,
             adapters: Sequence[AdapterUse] = ()) -> Iterator[ChatEvent]:
        self.cancel_requested.clear()
        words = 0
        try:
            while not self.cancel_requested.wait(0.01):
                words += 1
                yield ChatDelta(" word")
            yield ChatDone(ChatStats(generated_tokens=words, finish_reason="cancelled"))
        finally:
            self.ended.set()

    def cancel(self) -> None:
        self.cancel_requested.set()


class Service:
    """An in-process service on the data folder's socket; ``chats`` is its chat store."""

    def __init__(self, engine: FakeEngine) -> None:
        paths = data_paths()
        self.engine = engine
        self.chats = ChatStore(paths.chats_db, check_same_thread=False)
        self.asked: list[AskRequest] = []

        def make_assistant(request: AskRequest, retriever: Any) -> tuple[Assistant, Any]:
            self.asked.append(request)
            # The hashing embedder's similarities are not a real model's: take every passage.
            policy = RetrievalPolicy(min_similarity=0.0, min_similarity_with_terms=0.0)
            return Assistant(engine, self.chats, retriever, sampling=Sampling(max_tokens=64),
                             policy=policy), engine.info

        parts = ServiceParts(engine=engine, chat_model="fake", sampling=Sampling(),
                             system_prompt="Be brief.",
                             open_retriever=lambda: open_library(paths),
                             make_assistant=make_assistant)
        self.service = AnswerService(parts)
        self.server = UnixApiServer(self.service, socket_path(paths.home))
        self.server.start()
        self.stopped = False

    def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        self.server.stop()
        self.service.close()
        self.chats.close()


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "notes"
    root.mkdir()
    (root / "boats.txt").write_text("# Boats\n\nCatamarans have two hulls and sail fast.\n")
    (root / "soup.txt").write_text("# Soup\n\nMinestrone is an Italian vegetable soup.\n")
    return root


@pytest.fixture
def library(fake_parts: CountingParser, folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["library", "add", "notes", str(folder)]) == 0
    capsys.readouterr()


@pytest.fixture
def service(library: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Service]:
    running = Service(FakeEngine(REPLY))
    monkeypatch.setenv("BASTION_SERVICE", "on")
    yield running
    running.stop()


def test_socket_is_private_and_search_goes_through_it(
        service: Service, bastion_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mode = os.stat(socket_path(bastion_home)).st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600

    assert main(["search", "catamaran hulls", "-k", "1"]) == 0
    captured = capsys.readouterr()
    assert "boats.txt" in captured.out and "Catamarans" in captured.out
    assert "query embedding" in captured.err and "Starting" not in captured.err

    assert main(["search", "minestrone", "--collection", "notes", "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines[0]["rank"] == 1 and lines[0]["path"].endswith("soup.txt")
    assert {"text", "score", "page", "collection", "chunk_id"} <= set(lines[0])

    assert main(["search", "x", "--collection", "nope"]) == 1
    assert "no collection named 'nope'" in capsys.readouterr().err


@pytest.mark.slow  # the in-process ask loads the real embedded model
def test_docs_mode_without_a_collection_searches_every_collection(
        service: Service, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ask", "What is minestrone soup?", "--mode", "docs"]) == 0  # through the service
    captured = capsys.readouterr()
    assert REPLY in captured.out and "soup.txt" in captured.out
    assert main(["ask", "What is minestrone soup?", "--mode", "docs", "--no-service", "--max-tokens", "8",
                 "--temperature", "0"]) == 0  # in this process, on the real model
    assert "soup.txt" in capsys.readouterr().out
    assert [c.collections for c in service.chats.chats()] == [["notes"], ["notes"]]


def test_no_service_searches_in_this_process(
        service: Service, bastion_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    service.stop()  # nothing listens: --no-service must not start one
    assert main(["search", "catamaran", "-k", "1", "--no-service"]) == 0
    captured = capsys.readouterr()
    assert "boats.txt" in captured.out and "Starting" not in captured.err
    assert not socket_path(bastion_home).exists()


def test_ask_streams_the_answer_and_stores_the_chat(
        service: Service, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ask", "What is minestrone soup?", "--collection", "notes", "--max-tokens", "20"]) == 0
    captured = capsys.readouterr()
    assert REPLY in captured.out and "Sources:" in captured.out and "soup.txt" in captured.out
    assert "passages" in captured.err
    assert service.asked[0].mode == "docs" and service.asked[0].max_tokens == 20
    chat = service.chats.chats()[0]
    messages = service.chats.messages(chat.id)
    assert [m.role for m in messages] == ["user", "assistant"]
    assert messages[1].content == REPLY and messages[1].status == "complete"

    assert main(["ask", "What is minestrone soup?", "--collection", "notes", "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["answer"] == REPLY and answer["status"] == "complete"
    assert answer["citations"][0]["file"].endswith("soup.txt")
    assert answer["chat_id"] != chat.id and answer["timings"]["total_s"] > 0


def test_an_error_in_the_service_is_one_line(
        service: Service, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ask", "Soup?", "--collection", "nope", "--mode", "docs"]) == 1
    assert "no collection named 'nope'" in capsys.readouterr().err


def test_a_client_gone_mid_answer_stops_it_and_the_answer_is_stored_interrupted(
        library: None, bastion_home: Path) -> None:
    engine = EndlessEngine()
    running = Service(engine)
    try:
        events = ServiceClient(bastion_home).ask(
            {"question": "Talk forever", "mode": "model"})
        for event in events:
            if event["event"] == "delta":
                break
        events.close()  # the connection closes, as when Ctrl-C ends the command
        assert engine.ended.wait(10), "the answer went on after its client left"
        # Read through a connection of this thread's own: the service's worker is still
        # writing through its store's.
        reader = ChatStore(data_paths().chats_db)
        try:
            chat = reader.chats()[0]
            answer = reader.messages(chat.id)[-1]
            for _ in range(100):  # stored right after the engine stops
                if answer.status != "streaming":
                    break
                time.sleep(0.05)
                answer = reader.messages(chat.id)[-1]
        finally:
            reader.close()
        assert answer.role == "assistant" and answer.status == "interrupted"
    finally:
        running.stop()


def test_a_service_dying_mid_answer_is_reported_with_what_to_do(bastion_home: Path) -> None:
    path = socket_path(bastion_home)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(1)

    def half_answer() -> None:  # headers and one word, then the process "dies"
        while True:
            connection, _ = listener.accept()
            request = connection.recv(65536)
            if request:
                break
            connection.close()  # the client checking that something listens
        head, _, body = request.partition(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        while len(body) < length:  # the whole request read: the client is waiting for its answer
            body += connection.recv(65536)
        connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n"
                           b"Connection: close\r\n\r\n" + b'{"event": "delta", "text": "The"}\n')
        connection.close()

    thread = threading.Thread(target=half_answer)
    thread.start()
    try:
        events = ServiceClient(bastion_home).ask({"question": "q", "mode": "model"})
        assert next(events)["text"] == "The"
        with pytest.raises(ServiceUnavailable, match=r"stopped before the answer was complete.*"
                                                     r"--no-service"):
            next(events)
    finally:
        thread.join()
        listener.close()


def test_a_stale_socket_is_cleaned_and_a_live_one_refused(
        library: None, bastion_home: Path) -> None:
    path = socket_path(bastion_home)
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(path))  # a killed service leaves its file behind, with nobody listening
    dead.close()
    assert path.exists()
    running = Service(FakeEngine(REPLY))
    try:
        result = ServiceClient(bastion_home).search("catamaran", [], 1)
        assert result["hits"][0]["path"].endswith("boats.txt")
        with pytest.raises(BastionError, match="already answers on"):
            UnixApiServer(running.service, path)
    finally:
        running.stop()
    assert not path.exists()  # a service that stops removes its socket


def test_a_second_service_says_where_the_first_runs(
        bastion_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lock = ServiceLock(bastion_home)
    assert lock.acquire()
    try:
        lock.describe(socket=str(socket_path(bastion_home)), http="http://127.0.0.1:8765/v1")
        assert not ServiceLock(bastion_home).acquire()
        assert main(["serve"]) == 1
        err = capsys.readouterr().err
        assert "already runs" in err and f"process {os.getpid()}" in err
        assert "http://127.0.0.1:8765/v1" in err and str(socket_path(bastion_home)) in err
    finally:
        lock.release()
    assert ServiceLock(bastion_home).acquire()  # released: the next one may start
    assert f"process {os.getpid()}" in where_it_runs(bastion_home)


def test_idle_time_counts_from_the_last_request(library: None) -> None:
    running = Service(FakeEngine(REPLY))
    try:
        assert running.service.idle_s() >= 0
        job = running.service.search(SearchRequest("soup", (), 1))
        while job.next_item(10) is not None:
            pass
        assert running.service.idle_s() < 60
    finally:
        running.stop()


PROBE = """
import json, sys
from bastion.desktop.cli import main
code = main(sys.argv[1:])
heavy = [m for m in ("numpy", "torch", "llama_cpp", "sentence_transformers", "sqlite_utils")
         if m in sys.modules]
print(json.dumps({"code": code, "heavy": heavy}))
"""


@pytest.mark.parametrize("argv", [["search", "catamaran", "-k", "1"],
                                  ["ask", "How many hulls?", "--collection", "notes"]])
def test_commands_answered_by_the_service_import_nothing_heavy(
        service: Service, argv: list[str]) -> None:
    result = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True,
                            text=True, timeout=120, env={**os.environ, "BASTION_SERVICE": "on"})
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == {"code": 0, "heavy": []}, result.stderr


def test_copies_kept_light_agree_with_their_sources() -> None:
    from bastion.desktop import library as use_case
    from bastion.desktop.cli import library_cmd

    assert library_cmd.RECONCILE_INTERVAL_S == use_case.RECONCILE_INTERVAL_S


@pytest.mark.parametrize("argv", [["serve", "--idle-timeout", "-1"],
                                  ["serve", "--idle-timeout", "soon"],
                                  ["search", "x", "-k", "0"]])
def test_bad_arguments_are_refused_before_anything_starts(
        argv: list[str], bastion_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2 and "error" in capsys.readouterr().err
    assert not socket_path(bastion_home).exists()


def test_search_runs_in_this_process_when_the_service_cannot_start(
        library: None, bastion_home: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A broken default model stops the service from starting; a search needs no model."""
    log = bastion_home / "logs" / "service.log"
    log.parent.mkdir()
    log.write_text("bastion: No model called 'nope'.\n")

    def spawn_failing(self: ServiceClient) -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-c", "raise SystemExit(1)"])

    monkeypatch.setattr(ServiceClient, "_spawn", spawn_failing)
    monkeypatch.setenv("BASTION_SERVICE", "on")
    assert main(["search", "catamaran", "-k", "1"]) == 0
    captured = capsys.readouterr()
    assert "boats.txt" in captured.out
    assert "stopped while starting: bastion: No model called 'nope'." in captured.err
    assert "Searching in this process instead" in captured.err
    with pytest.raises(ServiceUnavailable, match=r"stopped while starting.*--no-service"):
        next(ServiceClient(bastion_home).ask({"question": "q", "mode": "model"}))


def test_a_command_whose_service_lost_the_race_to_start_uses_the_winner(
        library: None, bastion_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two commands start a service at once: one service wins the lock, the other exits at
    once ("already runs"), and its command waits for the winner's socket."""
    winner_lock = ServiceLock(bastion_home)
    assert winner_lock.acquire()  # the winner is still loading its model
    started: list[Service] = []
    # The winner listens once it is ready.
    winner = threading.Timer(0.3, lambda: started.append(Service(FakeEngine(REPLY))))

    def spawn_loser(self: ServiceClient) -> subprocess.Popen[bytes]:
        loser = subprocess.Popen([sys.executable, "-c", "raise SystemExit(1)"])
        loser.wait()
        winner.start()
        return loser

    monkeypatch.setattr(ServiceClient, "_spawn", spawn_loser)
    try:
        result = ServiceClient(bastion_home).search("catamaran", [], 1)
        assert result["hits"][0]["path"].endswith("boats.txt")
    finally:
        winner_lock.release()
        if winner.ident is not None:
            winner.join()
        for running in started:
            running.stop()


@pytest.fixture
def fake_wiring(monkeypatch: pytest.MonkeyPatch) -> None:
    """``bastion serve`` with a fake engine instead of loading a model."""
    from bastion.desktop.api import wiring

    monkeypatch.setattr(wiring, "service_parts", lambda app, model: ServiceParts(
        engine=FakeEngine(REPLY), chat_model="fake", sampling=Sampling(), system_prompt="x"))


def test_serve_stops_by_itself_when_idle_and_removes_its_socket(
        fake_wiring: None, bastion_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--idle-timeout", "1"]) == 0
    err = capsys.readouterr().err
    assert f"Bastion service on {socket_path(bastion_home)}" in err and "No HTTP port" in err
    assert "No request for 1 s: stopping" in err
    assert not socket_path(bastion_home).exists()
    assert ServiceLock(bastion_home).acquire()  # and its lock is free


@pytest.mark.allow_hosts(["127.0.0.1"])
def test_serve_refuses_a_busy_port_and_cleans_up(
        fake_wiring: None, bastion_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    busy = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    try:
        assert main(["serve", "--port", str(busy.getsockname()[1])]) == 1
    finally:
        busy.close()
    assert "cannot be used" in capsys.readouterr().err
    assert not socket_path(bastion_home).exists()
    assert ServiceLock(bastion_home).acquire()


class UnloadableEngine(FakeEngine):
    """Releases its model like the real engine: ``info`` is None until it is loaded again."""

    pid = os.getpid()  # a live process, so the memory freed is known

    def __init__(self) -> None:
        super().__init__(REPLY)
        self.loaded_info = self._info

    def unload(self) -> None:
        self._info = None  # type: ignore[assignment]


def test_models_unload_with_no_service_says_nothing_needed_unloading(
        bastion_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "unload"]) == 0
    assert "No background service is running" in capsys.readouterr().out
    assert main(["models", "unload", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "unloaded": False, "model": None, "freed_bytes": None, "service": False}
    assert not socket_path(bastion_home).exists()  # no service was started to ask


def test_models_unload_releases_the_services_model_and_the_next_request_loads_it(
        library: None, bastion_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    engine = UnloadableEngine()
    running = Service(engine)
    reloaded: list[str] = []

    def load_model(spec: str) -> UnloadableEngine:
        reloaded.append(spec)
        engine._info = engine.loaded_info
        return engine

    running.service.parts.load_model = load_model
    try:
        assert main(["models", "unload"]) == 0
        out = capsys.readouterr().out
        assert "Unloaded fake (/fake.gguf)" in out and "freeing" in out
        assert engine.info is None

        assert main(["models", "unload", "--json"]) == 0  # twice: nothing left to unload
        again = json.loads(capsys.readouterr().out)
        assert again == {"unloaded": False, "model": None, "freed_bytes": None, "service": True}

        # An API request after the unload loads the model again and is answered.
        response, conn = ServiceClient(bastion_home)._post(
            "/v1/chat/completions", {"model": "fake", "messages": [
                {"role": "user", "content": "How many hulls?"}]}, start=False)
        try:
            body = json.loads(response.read())
        finally:
            conn.close()
        assert response.status == 200, body
        assert body["choices"][0]["message"]["content"] == REPLY
        assert reloaded == ["/fake.gguf"] and engine.info is not None
    finally:
        running.stop()


def test_models_unload_json_names_the_model_and_the_memory_freed(
        library: None, capsys: pytest.CaptureFixture[str]) -> None:
    running = Service(UnloadableEngine())
    try:
        assert main(["models", "unload", "--json"]) == 0
        result = json.loads(capsys.readouterr().out)
        assert result["unloaded"] is True and result["service"] is True
        assert result["model"]["name"] == "fake" and result["model"]["path"] == "/fake.gguf"
        assert isinstance(result["freed_bytes"], int) and result["freed_bytes"] > 0
    finally:
        running.stop()
