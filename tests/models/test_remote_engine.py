"""The remote engine against a scripted OpenAI-compatible server: streaming, Stop and every fault
a user can meet (server down, silent, token wrong, model unknown, 5xx, a malformed stream)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from bastion.models.engine_types import AdapterUse, ChatDelta, ChatDone, LoadOptions, Sampling
from bastion.models.errors import EngineNotLoaded, ModelError, ModelNotFound
from bastion.models.remote_engine import RemoteEngine, list_models, remote_model_name
from bastion.models.remote_http import (
    RemoteAuthFailed,
    RemoteConfigError,
    RemoteEndpoint,
    RemoteError,
    RemoteModelNotFound,
    RemoteProtocolError,
    RemoteServerError,
    RemoteTimeout,
    RemoteUnreachable,
)
from tests.models.fake_openai_server import FakeServer, running_fake_server

pytestmark = pytest.mark.allow_hosts(["127.0.0.1"])


@pytest.fixture
def fake_server() -> Iterator[FakeServer]:
    with running_fake_server() as server:
        yield server

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]


def engine_for(server: FakeServer, token: str | None = "right-token", **kwargs: float) -> RemoteEngine:
    return RemoteEngine(RemoteEndpoint.parse(server.url, token), **kwargs)


def loaded(server: FakeServer, **kwargs: float) -> RemoteEngine:
    engine = engine_for(server, **kwargs)
    engine.load("big-model")
    return engine


def test_model_names_and_addresses_are_parsed() -> None:
    assert remote_model_name("remote:Qwen/Qwen2.5-32B") == "Qwen/Qwen2.5-32B"
    assert remote_model_name("smollm2") is None and remote_model_name("remote:") is None
    endpoint = RemoteEndpoint.parse("http://GPU-Box:8080/v1/", "t")
    assert (endpoint.host, endpoint.port, endpoint.base_path, endpoint.root_path) == (
        "gpu-box", 8080, "/v1", "")
    assert RemoteEndpoint.parse("https://inference.lan/v1").port == 443
    for bad in (None, "", "gpu-box:8080", "ftp://x/v1", "http:///v1", "http://u:p@x/v1",
                "http://x/v1?key=1", "http://x:99999/v1"):
        with pytest.raises(RemoteConfigError, match="remote_url"):
            RemoteEndpoint.parse(bad)


def test_load_checks_the_model_and_takes_the_servers_context(fake_server: FakeServer) -> None:
    engine = engine_for(fake_server)
    info = engine.load("big-model", LoadOptions(n_ctx=2048))
    assert info.name == "remote:big-model" and info.n_ctx == 8192
    assert engine.info == info and engine.gguf_info is None
    assert [m["id"] for m in list_models(engine.endpoint)] == ["big-model"]


def test_an_unknown_model_is_refused_naming_the_served_ones(fake_server: FakeServer) -> None:
    with pytest.raises(RemoteModelNotFound, match="remote:big-model") as caught:
        engine_for(fake_server).load("tiny-model")
    assert isinstance(caught.value, ModelNotFound)  # callers that handle a missing model do here


def test_answer_streams_then_ends_with_stats(fake_server: FakeServer) -> None:
    engine = loaded(fake_server)
    events = list(engine.chat(MESSAGES, Sampling(max_tokens=7, temperature=0.0, top_k=5)))
    deltas = [e.text for e in events if isinstance(e, ChatDelta)]
    assert "".join(deltas) == "Hello from the server."
    done = events[-1]
    assert isinstance(done, ChatDone) and len(deltas) == len(events) - 1
    assert done.stats.finish_reason == "stop"
    assert done.stats.generated_tokens == 5 and done.stats.prompt_tokens == 11
    [sent] = fake_server.state.requests
    assert sent["model"] == "big-model" and sent["messages"] == MESSAGES and sent["stream"] is True
    assert (sent["max_tokens"], sent["temperature"], sent["top_k"]) == (7, 0.0, 5)


def test_top_k_off_is_left_out_for_servers_that_refuse_zero(fake_server: FakeServer) -> None:
    list(loaded(fake_server).chat(MESSAGES, Sampling(top_k=0)))
    assert "top_k" not in fake_server.state.requests[-1]


def test_answer_cut_at_max_tokens_says_length(fake_server: FakeServer) -> None:
    fake_server.state.finish_reason = "length"
    *_, done = loaded(fake_server).chat(MESSAGES)
    assert isinstance(done, ChatDone) and done.stats.finish_reason == "length"


def test_token_counts_come_from_the_servers_tokenizer(fake_server: FakeServer) -> None:
    engine = loaded(fake_server)
    assert engine.count_tokens(["one two three", "", "four"]) == [3, 0, 1]
    fake_server.state.tokenize = "extras"  # llama-cpp-python's server
    assert loaded(fake_server).count_tokens(["one two"]) == [2]


def test_without_a_tokenizer_counts_are_estimated_high(fake_server: FakeServer) -> None:
    fake_server.state.tokenize = None
    engine = loaded(fake_server)
    text = "a plain English sentence of about forty bytes"
    [estimate] = engine.count_tokens([text])
    assert estimate >= len(text.split()) and estimate == -(-len(text) // 3)


def test_stop_closes_the_stream_and_the_answer_ends_cancelled(fake_server: FakeServer) -> None:
    fake_server.state.behaviour = "slow"
    engine = loaded(fake_server)
    events = []
    for event in engine.chat(MESSAGES):
        events.append(event)
        if len([e for e in events if isinstance(e, ChatDelta)]) == 3:
            threading.Thread(target=engine.cancel).start()  # the GUI's Stop, from another thread
    done = events[-1]
    assert isinstance(done, ChatDone) and done.stats.finish_reason == "cancelled"
    assert fake_server.state.disconnected.wait(10)  # the server saw its client go


def test_closing_the_stream_closes_the_connection(fake_server: FakeServer) -> None:
    fake_server.state.behaviour = "slow"
    engine = loaded(fake_server)
    stream = engine.chat(MESSAGES)
    assert isinstance(next(stream), ChatDelta)
    stream.close()
    assert fake_server.state.disconnected.wait(10)
    fake_server.state.behaviour = "stream"  # the engine is free for the next answer
    assert isinstance(list(engine.chat(MESSAGES))[-1], ChatDone)


def test_server_down_says_nothing_answers_and_what_to_do() -> None:
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    engine = RemoteEngine(RemoteEndpoint.parse(f"http://127.0.0.1:{port}/v1"))
    with pytest.raises(RemoteUnreachable, match="connection refused") as caught:
        engine.load("big-model")
    assert "remote_url" in str(caught.value) and "Start it" in str(caught.value)


def test_a_silent_server_times_out(fake_server: FakeServer) -> None:
    fake_server.state.behaviour = "silent"
    engine = loaded(fake_server, read_timeout_s=0.5)
    with pytest.raises(RemoteTimeout, match=r"sent nothing for 0\.5 s") as caught:
        list(engine.chat(MESSAGES))
    assert "remote_timeout_s" in str(caught.value)


def test_connect_timeout_is_reported(monkeypatch: pytest.MonkeyPatch, fake_server: FakeServer) -> None:
    def never_connects(self: object) -> None:
        raise TimeoutError("timed out")

    monkeypatch.setattr("http.client.HTTPConnection.connect", never_connects)
    with pytest.raises(RemoteTimeout, match="did not accept a connection within 10 s"):
        engine_for(fake_server).load("big-model")


@pytest.mark.parametrize(("token", "words"), [("wrong-token", "wrong or has expired"),
                                              (None, "none is set")])
def test_a_refused_token_says_so_and_how_to_set_it(fake_server: FakeServer, token: str | None,
                                                   words: str) -> None:
    with pytest.raises(RemoteAuthFailed, match=words) as caught:
        engine_for(fake_server, token=token).load("big-model")
    assert "HTTP 401" in str(caught.value) and "Invalid API key" in str(caught.value)
    assert "bastion settings set remote_token -" in str(caught.value)


def test_a_model_the_server_drops_is_a_404_naming_it(fake_server: FakeServer) -> None:
    engine = loaded(fake_server)
    fake_server.state.behaviour = "404-model"
    with pytest.raises(RemoteModelNotFound, match="does not serve the model 'big-model'"):
        list(engine.chat(MESSAGES))


def test_a_wrong_base_path_is_a_404_about_the_address(fake_server: FakeServer) -> None:
    engine = RemoteEngine(RemoteEndpoint.parse(fake_server.url[:-3] + "/api", "right-token"))
    with pytest.raises(RemoteConfigError, match="ending in /v1"):
        engine.load("big-model")


def test_a_server_failure_names_the_status_and_its_message(fake_server: FakeServer) -> None:
    engine = loaded(fake_server)
    fake_server.state.behaviour = "500"
    with pytest.raises(RemoteServerError, match=r"HTTP 500: CUDA out of memory.*server's log"):
        list(engine.chat(MESSAGES))


@pytest.mark.parametrize(("behaviour", "error", "words"), [
    ("malformed", RemoteProtocolError, "not a JSON object"),
    ("cut", RemoteProtocolError, "closed the stream before the answer's end"),
    ("error-event", RemoteServerError, "the model crashed"),
    ("json", RemoteProtocolError, "not an event stream"),
])
def test_a_broken_stream_is_an_error_after_what_came(fake_server: FakeServer, behaviour: str,
                                                     error: type[RemoteError], words: str) -> None:
    engine = loaded(fake_server)
    fake_server.state.behaviour = behaviour
    came: list[str] = []
    with pytest.raises(error, match=words):
        for event in engine.chat(MESSAGES):
            if isinstance(event, ChatDelta):
                came.append(event.text)
    assert "".join(came) == ("Hello from" if behaviour in ("cut", "error-event") else "")
    fake_server.state.behaviour = "stream"  # and the engine still answers afterwards
    assert isinstance(list(engine.chat(MESSAGES))[-1], ChatDone)


def test_adapters_and_unloaded_use_are_refused(fake_server: FakeServer) -> None:
    engine = engine_for(fake_server)
    with pytest.raises(EngineNotLoaded, match="remote:NAME"):
        list(engine.chat(MESSAGES))
    engine.load("big-model")
    with pytest.raises(RemoteError, match="LoRA adapters are applied by the local engine"):
        list(engine.chat(MESSAGES, adapters=[AdapterUse("/x.gguf")]))
    engine.unload()
    assert engine.info is None
    assert issubclass(RemoteError, ModelError)  # the CLI and window show these messages as they are
