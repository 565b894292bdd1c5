"""Choosing the remote engine: its settings (the token kept 0600 and never shown), ``remote:NAME``
models in the app and the CLI, against the scripted server of ``tests/models``."""

from __future__ import annotations

import io
import json
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from bastion.desktop import configuration
from bastion.desktop.answering import AnswerConfig, answer_once
from bastion.desktop.app import App, resolve_model_path
from bastion.desktop.cli import main
from bastion.desktop.configuration import HIDDEN, SettingError
from bastion.desktop.egress import allow_remote_endpoint, allowed_remote_endpoint
from bastion.desktop.errors import BastionError
from bastion.desktop.settings import SECRETS_FILE, Settings
from bastion.models.engine_types import Sampling
from bastion.models.remote_engine import RemoteEngine
from bastion.models.remote_http import RemoteEndpoint
from bastion.store.chats import ChatStore
from tests.models.fake_openai_server import FakeServer, running_fake_server

pytestmark = pytest.mark.allow_hosts(["127.0.0.1"])


@pytest.fixture
def fake_server() -> Iterator[FakeServer]:
    with running_fake_server() as server:
        yield server
    allow_remote_endpoint(None)


@pytest.fixture
def configured(bastion_home: Path, fake_server: FakeServer) -> FakeServer:
    """Settings that name the fake server and its token, as a user sets them."""
    path = bastion_home / "settings.json"
    settings = configuration.change_setting(Settings.load(path), path, "remote_url", fake_server.url)
    configuration.change_setting(settings, path, "remote_token", "right-token")
    return fake_server


def test_the_token_is_kept_apart_private_and_never_shown(bastion_home: Path,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("s3cret-token\n"))
    assert main(["settings", "set", "remote_token", "-"]) == 0  # read from stdin, not argv
    assert "s3cret" not in capsys.readouterr().out
    secrets = bastion_home / SECRETS_FILE
    assert json.loads(secrets.read_text()) == {"remote_token": "s3cret-token"}
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o600
    settings_file = bastion_home / "settings.json"
    assert "s3cret" not in settings_file.read_text()
    assert stat.S_IMODE(settings_file.stat().st_mode) == 0o600
    assert Settings.load(settings_file).remote_token == "s3cret-token"
    assert "s3cret" not in repr(Settings.load(settings_file))

    assert main(["settings", "get", "remote_token"]) == 0
    assert capsys.readouterr().out.strip() == HIDDEN
    assert main(["settings", "get", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["remote_token"] == HIDDEN
    # Another setting saved later leaves the token as it was.
    assert main(["settings", "set", "temperature", "0.5"]) == 0
    assert Settings.load(settings_file).remote_token == "s3cret-token"

    assert main(["settings", "set", "remote_token", "none"]) == 0
    assert not secrets.exists() and Settings.load(settings_file).remote_token is None


def test_an_empty_stdin_token_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    with pytest.raises(SettingError, match="No remote_token came on standard input"):
        configuration.parse_setting("remote_token", "-")


@pytest.mark.parametrize("url", ["gpu-box:8080", "ftp://gpu-box/v1", "http://gpu-box/v1?k=1"])
def test_a_remote_url_that_is_not_an_http_url_is_refused(url: str) -> None:
    with pytest.raises(SettingError, match=r"http:// or https://|query"):
        configuration.parse_setting("remote_url", url)
    assert configuration.parse_setting("remote_url", "http://gpu-box:8080/v1") == "http://gpu-box:8080/v1"


def test_a_remote_default_model_needs_a_server(bastion_home: Path, fake_server: FakeServer) -> None:
    path = bastion_home / "settings.json"
    with pytest.raises(SettingError, match="set its address first"):
        configuration.choose_default_model(Settings(), path, bastion_home / "models", "remote:big-model")
    settings = configuration.change_setting(Settings(), path, "remote_url", fake_server.url)
    chosen = configuration.choose_default_model(settings, path, bastion_home / "models",
                                                "remote:big-model")
    assert Settings.load(path).default_model == chosen.default_model == "remote:big-model"
    with pytest.raises(BastionError, match="needs a local model"):
        resolve_model_path("remote:big-model", bastion_home / "models")


def test_the_app_answers_through_the_remote_engine(configured: FakeServer) -> None:
    with App() as app:
        engine = app.engine("remote:big-model")
        assert isinstance(engine, RemoteEngine) and app.loaded_model() == engine.info
        assert allowed_remote_endpoint() == ("127.0.0.1", configured.port)
        assert app.engine("remote:big-model") is engine  # kept, not loaded again
        assistant = app.assistant("remote:big-model", retrieval=False)
        assistant.sampling = Sampling(max_tokens=16, temperature=0.0)
        chat = app.chats.create_chat(mode="model")
        *_, done = assistant.ask(chat.id, "Hi")
        assert done.message.content == "Hello from the server."  # type: ignore[attr-defined]
        assert done.message.meta["model"] == "remote:big-model"  # type: ignore[attr-defined]
    assert configured.state.requests[-1]["messages"][-1]["content"].endswith("Hi")


def test_cli_lists_the_servers_models_and_asks_one(configured: FakeServer,
                                                  capsys: pytest.CaptureFixture[str],
                                                  bastion_home: Path) -> None:
    assert main(["models", "remote"]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == ["remote:big-model"] and "with a token" in err
    assert main(["models", "default", "remote:big-model"]) == 0
    assert main(["models", "remote", "--json"]) == 0
    [line] = capsys.readouterr().out.strip().splitlines()[-1:]
    assert json.loads(line) == {"id": "remote:big-model", "name": "big-model",
                                "server": configured.url, "default": True}
    assert main(["ask", "--no-service", "Hi", "--max-tokens", "8"]) == 0  # the default: remote
    assert "Hello from the server." in capsys.readouterr().out
    store = ChatStore(bastion_home / "bastion.db")
    [chat] = store.chats()
    assert store.messages(chat.id)[-1].meta["model"] == "remote:big-model"
    store.close()


def test_cli_says_what_to_do_when_the_token_is_wrong(configured: FakeServer,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    configured.state.token = "another-token"
    assert main(["models", "remote"]) == 1
    err = capsys.readouterr().err
    assert "refused Bastion's token (HTTP 401" in err
    assert "bastion settings set remote_token -" in err
    assert main(["ask", "--no-service", "--model", "remote:big-model", "Hi"]) == 1
    assert "HTTP 401" in capsys.readouterr().err


def test_cli_without_a_server_configured_says_how_to_set_one(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "remote"]) == 1
    assert "bastion settings set remote_url URL" in capsys.readouterr().err


def test_a_stop_sequence_ends_the_answer_and_closes_the_stream(fake_server: FakeServer) -> None:
    fake_server.state.behaviour = "slow"  # streams on until its client goes
    engine = RemoteEngine(RemoteEndpoint.parse(fake_server.url, "right-token"))
    engine.load("big-model")
    config = AnswerConfig(stop=(" server",), sampling=Sampling(max_tokens=500))
    events = list(answer_once("Hi", config, engine))
    record = events[-1].record  # type: ignore[union-attr]
    assert record.text == "Hello from the" and record.complete
    assert record.finish_reason == "stop"
    assert fake_server.state.disconnected.wait(10)  # the server saw the stream closed


def test_cli_chat_talks_to_the_remote_model(configured: FakeServer, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("Hi\n/exit\n"))
    assert main(["chat", "--model", "remote:big-model", "--max-tokens", "8"]) == 0
    assert "Hello from the server." in capsys.readouterr().out
    assert configured.state.requests[-1]["max_tokens"] == 8
