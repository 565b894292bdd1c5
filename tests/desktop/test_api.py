"""The local OpenAI-compatible API, driven by the official ``openai`` client and by raw HTTP.

The server runs in-process on an ephemeral loopback port, over fake engine, retriever and
embedder. pytest-socket lets these tests connect to 127.0.0.1 only.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import stat
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import openai
import pytest

from bastion.desktop.api.access_token import load_or_create_token, token_path
from bastion.desktop.api.server import MAX_BODY_BYTES, ApiServer
from bastion.desktop.api.service import AnswerService, ServiceParts
from bastion.models.engine_types import (
    AdapterUse,
    ChatDelta,
    ChatDone,
    ChatEvent,
    ChatStats,
    Sampling,
)
from tests.desktop.fakes import FakeEngine, FakeHit, FakeRetriever
from tests.store.fakes import HashingEmbedder

pytestmark = pytest.mark.allow_hosts(["127.0.0.1"])

VAULT = FakeHit("The access code for the north vault is 4417.", "/docs/security.pdf", page=3,
                collection="office")


class RecordingEngine(FakeEngine):
    """FakeEngine that also keeps the sampling each answer was asked with."""

    def __init__(self, reply: str = "The code is 4417 [1].") -> None:
        super().__init__(reply)
        self.samplings: list[Sampling] = []

    def chat(self, messages: Sequence[dict[str, str]], sampling: Sampling | None = None,
             adapters: Sequence[AdapterUse] = ()) -> Iterator[ChatEvent]:
        self.samplings.append(sampling or Sampling())
        yield from super().chat(messages, sampling, adapters)


class EndlessEngine(FakeEngine):
    """Streams words until cancelled, each once ``gate`` is open; says when its answer ended."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.started = threading.Event()
        self.ended = threading.Event()
        self.cancel_requested = threading.Event()
        self.words = 0

    def chat(self, messages: Sequence[dict[str, str]], sampling: Sampling | None = None,
             adapters: Sequence[AdapterUse] = ()) -> Iterator[ChatEvent]:
        self.cancel_requested.clear()
        self.started.set()
        try:
            while not self.cancel_requested.is_set():
                if self.gate.wait(0.01):  # words flow once the gate is open, one per 10 ms
                    time.sleep(0.01)
                    self.words += 1
                    yield ChatDelta(" word")
            yield ChatDone(ChatStats(generated_tokens=self.words, finish_reason="cancelled"))
        finally:
            self.ended.set()

    def cancel(self) -> None:
        self.cancel_requested.set()


def make_server(engine: FakeEngine, token: str, max_waiting: int = 4,
                grounded: tuple[tuple[str, float], ...] = ()) -> ApiServer:
    parts = ServiceParts(
        engine=engine, chat_model="smol", sampling=Sampling(max_tokens=64, temperature=0.7),
        system_prompt="Be brief.", open_retriever=lambda: FakeRetriever([VAULT]),
        embedder=HashingEmbedder(dimension=16), embedding_model="hashing",
        adapter_path=lambda name: Path(f"/adapters/{name}.gguf"), grounded_adapters=grounded,
    )
    server = ApiServer(AnswerService(parts, max_waiting=max_waiting), token, port=0)
    server.start()
    return server


@pytest.fixture
def token(bastion_home: Path) -> str:
    return load_or_create_token(bastion_home)[0]


@pytest.fixture
def engine() -> RecordingEngine:
    return RecordingEngine()


@pytest.fixture
def server(engine: RecordingEngine, token: str) -> Iterator[ApiServer]:
    server = make_server(engine, token)
    yield server
    server.stop()


def client(server: ApiServer, token: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"http://127.0.0.1:{server.port}/v1", api_key=token,
                         max_retries=0, timeout=30)


def raw(server: ApiServer, method: str, path: str, body: bytes | None = None,
        headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], Any]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        sent = {"Host": f"127.0.0.1:{server.port}", **(headers or {})}
        if body is not None:
            sent.setdefault("Content-Length", str(len(body)))
        for name, value in sent.items():
            conn.putheader(name, value)
        conn.endheaders(body)
        response = conn.getresponse()
        data = response.read()
        return response.status, dict(response.getheaders()), json.loads(data) if data else None
    finally:
        conn.close()


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# -- what clients get --------------------------------------------------------------------------

def test_models_lists_the_chat_model_and_the_embedder(server: ApiServer, token: str) -> None:
    assert [m.id for m in client(server, token).models.list()] == ["smol", "hashing"]


def test_a_grounded_completion_carries_its_citations_with_file_and_page(
        server: ApiServer, token: str, engine: RecordingEngine) -> None:
    completion = client(server, token).chat.completions.create(
        model="smol", messages=[{"role": "user", "content": "What is the vault code?"}],
        max_tokens=20, temperature=0, extra_body={"bastion": {"collections": ["office"]}})
    assert completion.choices[0].message.content == "The code is 4417 [1]."
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.completion_tokens == 5
    extension = completion.model_extra["bastion"]
    assert extension["mode"] == "docs" and extension["collections"] == ["office"]
    [citation] = extension["citations"]
    assert (citation["file"], citation["page"], citation["n"]) == ("/docs/security.pdf", 3, 1)
    assert engine.samplings[-1].max_tokens == 20 and engine.samplings[-1].temperature == 0
    prompt = engine.prompts[-1]
    assert prompt[0] == {"role": "system", "content": "Be brief."}
    assert "north vault is 4417" in prompt[-1]["content"]  # the passage reached the model


def test_a_streamed_completion_arrives_in_pieces_and_ends_with_the_citations(
        server: ApiServer, token: str) -> None:
    stream = client(server, token).chat.completions.create(
        model="smol", messages=[{"role": "user", "content": "What is the vault code?"}],
        stream=True, stream_options={"include_usage": True},
        extra_body={"bastion": {"collections": ["office"], "mode": "both"}})
    chunks = list(stream)
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(pieces) == 5 and "".join(pieces) == "The code is 4417 [1]."
    final = next(c for c in chunks if c.choices and c.choices[0].finish_reason)
    assert final.choices[0].finish_reason == "stop"
    assert final.model_extra["bastion"]["citations"][0]["file"] == "/docs/security.pdf"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 5


def test_history_system_message_stop_and_adapters_reach_the_answer(
        server: ApiServer, token: str, engine: RecordingEngine) -> None:
    engine.reply = "First part. STOP second part."
    completion = client(server, token).chat.completions.create(
        model="smol", stop=["STOP"], extra_body={"bastion": {"adapters": ["terse:0.5"]}},
        messages=[{"role": "system", "content": "Answer in French."},
                  {"role": "user", "content": "Hello"},
                  {"role": "assistant", "content": "Bonjour"},
                  {"role": "user", "content": "And now?"}])
    assert completion.choices[0].message.content == "First part. "
    assert completion.choices[0].finish_reason == "stop"
    assert engine.prompts[-1] == [{"role": "system", "content": "Answer in French."},
                                  {"role": "user", "content": "Hello"},
                                  {"role": "assistant", "content": "Bonjour"},
                                  {"role": "user", "content": "And now?"}]
    assert engine.adapters_used[-1] == (AdapterUse("/adapters/terse.gguf", 0.5),)
    assert completion.model_extra["bastion"]["adapters"] == [{"name": "terse", "scale": 0.5}]


def test_answers_from_documents_use_the_grounded_adapter_unless_the_request_names_one(
        token: str, engine: RecordingEngine) -> None:
    server = make_server(engine, token, grounded=(("grounded", 1.0),))
    try:
        api = client(server, token)
        ask = "What is the vault code?"
        api.chat.completions.create(model="smol", messages=[{"role": "user", "content": ask}],
                                    extra_body={"bastion": {"collections": ["office"]}})
        assert engine.adapters_used[-1] == (AdapterUse("/adapters/grounded.gguf", 1.0),)
        api.chat.completions.create(model="smol", messages=[{"role": "user", "content": ask}],
                                    extra_body={"bastion": {"collections": ["office"],
                                                            "adapters": ["terse"]}})
        assert engine.adapters_used[-1] == (AdapterUse("/adapters/terse.gguf", 1.0),)
        api.chat.completions.create(model="smol", messages=[{"role": "user", "content": ask}])
        assert engine.adapters_used[-1] == ()  # no documents: the model as it is
    finally:
        server.stop()


def test_embeddings_are_the_library_embedders_vectors(server: ApiServer, token: str) -> None:
    texts = ["north vault", "fish soup on Fridays"]
    result = client(server, token).embeddings.create(model="hashing", input=texts)
    got = np.array([d.embedding for d in result.data], dtype=np.float32)
    assert got.shape == (2, 16)
    assert np.allclose(got, HashingEmbedder(dimension=16).embed(texts))
    status, _, body = raw(server, "POST", "/v1/embeddings", json.dumps(
        {"model": "hashing", "input": "north vault", "encoding_format": "base64"}).encode(), auth(token))
    import base64
    vector = np.frombuffer(base64.b64decode(body["data"][0]["embedding"]), dtype="<f4")
    assert status == 200 and np.allclose(vector, got[0])


# -- what is refused ---------------------------------------------------------------------------

def test_an_unknown_model_is_404(server: ApiServer, token: str) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client(server, token).chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "Hi"}])
    assert "smol" in str(caught.value)  # names the model it does serve
    with pytest.raises(openai.NotFoundError):
        client(server, token).embeddings.create(model="text-embedding-3-small", input="x")


def test_a_request_without_the_token_is_401(server: ApiServer, token: str) -> None:
    status, _, body = raw(server, "GET", "/v1/models")
    assert status == 401 and body["error"]["type"] == "authentication_error"
    assert token not in json.dumps(body)
    with pytest.raises(openai.AuthenticationError):
        client(server, "not-the-token").models.list()


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8765", "localhost.evil.example",
                                  "192.168.1.5", None])
def test_a_host_that_is_not_this_computer_is_403(server: ApiServer, token: str,
                                                 host: str | None) -> None:
    headers = auth(token)
    status, _, body = raw(server, "GET", "/v1/models",
                          headers={**headers, "Host": host} if host else {**headers, "Host": ""})
    assert status == 403 and body["error"]["code"] == "forbidden_host"


def test_localhost_names_with_this_port_are_accepted(server: ApiServer, token: str) -> None:
    for host in (f"localhost:{server.port}", f"127.0.0.1:{server.port}", f"[::1]:{server.port}"):
        assert raw(server, "GET", "/v1/models", headers={**auth(token), "Host": host})[0] == 200
    assert raw(server, "GET", "/v1/models",
               headers={**auth(token), "Host": f"localhost:{server.port + 1}"})[0] == 403


def test_a_body_over_the_limit_is_413_before_it_is_read(server: ApiServer, token: str) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.putrequest("POST", "/v1/chat/completions", skip_host=True)
        conn.putheader("Host", f"127.0.0.1:{server.port}")
        conn.putheader("Authorization", f"Bearer {token}")
        conn.putheader("Content-Length", str(MAX_BODY_BYTES + 1))
        conn.endheaders()
        response = conn.getresponse()
        assert response.status == 413
        assert json.loads(response.read())["error"]["code"] == "request_too_large"
    finally:
        conn.close()


def test_malformed_json_is_400_with_an_openai_error_object(server: ApiServer, token: str) -> None:
    status, headers, body = raw(server, "POST", "/v1/chat/completions", b'{"model": "smol", ',
                                auth(token))
    assert status == 400 and headers["Content-Type"] == "application/json"
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["type"] == "invalid_request_error" and "not valid JSON" in body["error"]["message"]
    status, _, body = raw(server, "POST", "/v1/chat/completions", json.dumps(
        {"model": "smol", "messages": [{"role": "user", "content": "Hi"}], "temperature": 9}).encode(),
        auth(token))
    assert status == 400 and body["error"]["param"] == "temperature"


def test_docs_mode_without_collections_is_refused(server: ApiServer, token: str) -> None:
    with pytest.raises(openai.BadRequestError, match=r"bastion\.collections"):
        client(server, token).chat.completions.create(
            model="smol", messages=[{"role": "user", "content": "Hi"}],
            extra_body={"bastion": {"mode": "docs"}})


def test_no_cors_headers_even_for_a_browser_preflight(server: ApiServer, token: str) -> None:
    origin = {"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    status, headers, _ = raw(server, "OPTIONS", "/v1/chat/completions", headers=origin)
    assert status in (401, 405)
    status, headers_get, _ = raw(server, "GET", "/v1/models", headers={**auth(token), **origin})
    assert status == 200
    assert not [h for h in (*headers, *headers_get) if h.lower().startswith("access-control-")]


def test_a_full_queue_is_429_with_retry_after(token: str) -> None:
    engine = EndlessEngine()
    engine.gate.set()
    server = make_server(engine, token, max_waiting=0)
    try:
        busy_client = client(server, token)
        stream = busy_client.chat.completions.create(
            model="smol", messages=[{"role": "user", "content": "Go on"}], stream=True)
        assert engine.started.wait(30)  # the one answer slot is taken
        with pytest.raises(openai.RateLimitError) as caught:
            busy_client.chat.completions.create(model="smol",
                                                messages=[{"role": "user", "content": "Me too"}])
        assert caught.value.response.headers["Retry-After"].isdigit()
        stream.close()
        assert engine.ended.wait(30)
    finally:
        server.stop()


def test_a_client_gone_mid_stream_stops_the_generation(token: str) -> None:
    engine = EndlessEngine()
    engine.gate.set()
    server = make_server(engine, token)
    try:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        body = json.dumps({"model": "smol", "stream": True,
                           "messages": [{"role": "user", "content": "Talk forever"}]}).encode()
        conn.request("POST", "/v1/chat/completions", body=body,
                     headers={**auth(token), "Content-Type": "application/json"})
        sock = conn.sock
        response = conn.getresponse()
        assert response.status == 200
        first = response.fp.readline()
        assert first.startswith(b"data: ")
        while b"word" not in response.fp.readline():
            pass
        sock.shutdown(socket.SHUT_RDWR)  # the client goes away without a word
        sock.close()
        assert engine.ended.wait(30), "generation went on after the client left"
        assert engine.cancel_requested.is_set()
    finally:
        server.stop()


def test_a_client_gone_while_the_prompt_is_read_stops_the_engine(token: str) -> None:
    engine = EndlessEngine()  # gate closed: no word comes, as while a long prompt is read
    server = make_server(engine, token)
    try:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        body = json.dumps({"model": "smol", "stream": True,
                           "messages": [{"role": "user", "content": "Think first"}]}).encode()
        conn.request("POST", "/v1/chat/completions", body=body, headers=auth(token))
        assert engine.started.wait(30)
        conn.close()  # gone before the first word was sent
        assert engine.ended.wait(30), "the engine was not told that the client left"
        assert engine.cancel_requested.is_set() and engine.words == 0
    finally:
        server.stop()


# -- the token ---------------------------------------------------------------------------------

def test_the_token_is_made_once_and_private_to_the_owner(bastion_home: Path) -> None:
    token, made = load_or_create_token(bastion_home)
    again, made_again = load_or_create_token(bastion_home)
    assert made and not made_again and token == again and len(token) >= 32
    mode = stat.S_IMODE(os.stat(token_path(bastion_home)).st_mode)
    assert mode == 0o600
    os.chmod(token_path(bastion_home), 0o644)  # someone widened it: narrowed at the next start
    load_or_create_token(bastion_home)
    assert stat.S_IMODE(os.stat(token_path(bastion_home)).st_mode) == 0o600


def test_a_token_file_that_is_a_link_is_refused(bastion_home: Path, tmp_path: Path) -> None:
    from bastion.desktop.errors import BastionError

    target = tmp_path / "elsewhere"
    target.write_text("x" * 40)
    token_path(bastion_home).symlink_to(target)
    with pytest.raises(BastionError, match="cannot be read"):
        load_or_create_token(bastion_home)
