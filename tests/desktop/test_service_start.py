"""Starting and stopping the resident service: one at a time, stale sockets, idle exit, a busy
port, a lost race, and commands that stay light and refuse bad arguments before anything starts.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from bastion.desktop.api.local_protocol import SearchRequest
from bastion.desktop.api.local_socket import ServiceLock, socket_path, where_it_runs
from bastion.desktop.api.service import ServiceParts
from bastion.desktop.api.socket_server import UnixApiServer
from bastion.desktop.cli import main
from bastion.desktop.cli.service_client import ServiceClient, ServiceUnavailable
from bastion.desktop.errors import BastionError
from bastion.models.engine_types import (
    Sampling,
)
from tests.desktop.fakes import FakeEngine
from tests.desktop.service_harness import REPLY, Service


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
