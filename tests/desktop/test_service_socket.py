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
import threading
import time
from pathlib import Path

import pytest

from bastion.desktop.api.local_socket import socket_path
from bastion.desktop.cli import main
from bastion.desktop.cli.service_client import ServiceClient, ServiceUnavailable
from bastion.desktop.paths import data_paths
from bastion.store.chats import ChatStore
from tests.desktop.fakes import FakeEngine
from tests.desktop.service_harness import REPLY, EndlessEngine, Service


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
