"""The command line's side of the resident service: find it, start it, ask it.

``bastion search`` and ``bastion ask`` first try the service's Unix socket in the data folder;
with none there they start ``bastion serve`` in the background (detached, its log in
``logs/service.log``, stopping after ``service_idle_minutes`` idle) and wait for its socket.
The service keeps torch, the embedder and the model loaded, so the next command costs a
connection. ``--no-service``, the ``use_service`` setting or ``BASTION_SERVICE=off`` run the
command in its own process instead.

Standard library only (and ``bastion.desktop.settings``): this is the path every command takes
before it knows whether it will load anything, so it must not import numpy, torch or llama.cpp.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

from bastion.desktop.api import local_socket
from bastion.desktop.errors import BastionError

START_TIMEOUT_S = 600.0  # loading torch, the embedder and the model on a busy machine
READ_TIMEOUT_S = 900.0  # the longest silence accepted while a long prompt is read
LOG_KEEP_BYTES = 1024 * 1024  # the service log is moved aside (one old copy) past this size
ENV_SWITCH = "BASTION_SERVICE"  # "off": every command runs in its own process


class ServiceUnavailable(BastionError):
    """The service could not be started or reached; the message says what to do."""


class ServiceDidNotStart(ServiceUnavailable):
    """The service started by this command stopped or hung before it listened."""


def wanted(no_service: bool, home: Path) -> bool:
    """Whether this command should use the resident service."""
    if no_service or os.environ.get(ENV_SWITCH, "").strip().lower() in ("off", "0", "no"):
        return False
    from bastion.desktop.settings import Settings

    return bool(Settings.load(home / "settings.json").use_service)


class _SocketConnection(http.client.HTTPConnection):
    """HTTP/1.1 over the service's Unix socket (the same handlers as the HTTP port)."""

    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        self.sock = local_socket.connect(self._path, self.timeout)


class ServiceClient:
    """Requests to the service of data folder ``home``, started if none runs."""

    def __init__(self, home: Path, idle_minutes: int | None = None) -> None:
        self.home = home
        self.socket = local_socket.socket_path(home)
        self.log = local_socket.log_path(home)
        self.idle_minutes = idle_minutes

    # -- finding or starting the service ---------------------------------------------------

    def ensure_running(self) -> None:
        """Return once a service answers on the socket, starting one if needed."""
        if local_socket.is_listening(self.socket):
            return
        print(f"Starting the Bastion service; it keeps the models loaded while in use (log: "
              f"{self.log})…", file=sys.stderr)
        child = self._spawn()
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if local_socket.is_listening(self.socket):
                return
            if child.poll() is not None and not self._another_is_starting():
                raise ServiceDidNotStart(
                    f"The Bastion service stopped while starting: {self._last_log_line()} (log: "
                    f"{self.log}). Fix that, or add --no-service to run in this process.")
            time.sleep(0.1)
        raise ServiceDidNotStart(
            f"The Bastion service did not start within {START_TIMEOUT_S:.0f} s (log: {self.log}). "
            "Add --no-service to run in this process.")

    def _spawn(self) -> subprocess.Popen[bytes]:
        self.log.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self.log.exists() and self.log.stat().st_size > LOG_KEEP_BYTES:
            os.replace(self.log, self.log.with_suffix(".log.1"))
        fd = os.open(self.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
        idle = self.idle_minutes
        if idle is None:
            from bastion.desktop.settings import Settings

            idle = Settings.load(self.home / "settings.json").service_idle_minutes
        argv = [sys.executable, "-m", "bastion.desktop", "serve", "--idle-timeout",
                str(idle * 60)]
        try:
            # A session of its own: the terminal's Ctrl-C and hang-up are not the service's.
            return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=fd, stderr=fd,
                                    start_new_session=True, close_fds=True, cwd=self.home,
                                    env={**os.environ, "PYTHONUNBUFFERED": "1"})
        finally:
            os.close(fd)

    def _another_is_starting(self) -> bool:
        """Whether some other process holds the service lock (it won a race to start)."""
        lock = local_socket.ServiceLock(self.home)
        if lock.acquire():
            lock.release()
            return False
        return True

    def _last_log_line(self) -> str:
        try:
            lines = self.log.read_text(encoding="utf-8", errors="replace").strip().splitlines()
        except OSError:
            return "no log was written"
        return lines[-1] if lines else "its log is empty"

    # -- requests --------------------------------------------------------------------------

    def search(self, query: str, collections: list[str], k: int) -> dict[str, Any]:
        return self._call("/bastion/search", {"query": query, "collections": collections, "k": k})

    def running(self) -> bool:
        """Whether a service answers on the socket now (none is started)."""
        return local_socket.is_listening(self.socket)

    def unload(self) -> dict[str, Any]:
        """Ask the running service to release its chat model (``local_protocol.unloaded_json``).
        Starts no service: call ``running()`` first; one that stopped meanwhile is reported."""
        return self._call("/bastion/unload", {}, start=False)

    def _call(self, path: str, payload: dict[str, Any], *, start: bool = True) -> dict[str, Any]:
        """POST ``payload`` and return the one JSON object answered (an error status raises)."""
        response, connection = self._post(path, payload, start=start)
        try:
            body = self._read(response.read)
        finally:
            connection.close()
        result = self._json(body)
        if response.status != 200:
            raise BastionError(_error_message(result, response.status))
        return result

    def ask(self, request: dict[str, Any]) -> Generator[dict[str, Any], None, None]:
        """The answer's events as they come (see ``local_protocol``). A service that dies
        before the answer is done is reported with what to do."""
        response, connection = self._post("/bastion/ask", request)
        try:
            if response.status != 200:
                raise BastionError(_error_message(self._json(self._read(response.read)),
                                                        response.status))
            while True:
                line = self._read(response.readline)
                if not line:
                    raise ServiceUnavailable(self._died())
                event = self._json(line)
                yield event
                if event.get("event") in ("done", "error"):
                    return
        finally:
            connection.close()  # also how a Ctrl-C here stops the answer in the service

    def _post(self, path: str, payload: dict[str, Any], start: bool = True
              ) -> tuple[http.client.HTTPResponse, _SocketConnection]:
        if start:
            self.ensure_running()
        body = json.dumps(payload).encode("utf-8")
        connection = _SocketConnection(self.socket, READ_TIMEOUT_S)
        try:
            connection.request("POST", path, body, {"Content-Type": "application/json"})
            return connection.getresponse(), connection
        except (OSError, http.client.HTTPException) as error:
            connection.close()
            raise ServiceUnavailable(f"The Bastion service did not answer ({error}). "
                                     f"{self._what_to_do()}") from error

    def _read(self, read: Any) -> bytes:
        try:
            data: bytes = read()
        except (OSError, http.client.HTTPException) as error:
            raise ServiceUnavailable(self._died()) from error
        return data

    def _json(self, data: bytes) -> dict[str, Any]:
        try:
            value = json.loads(data)
        except ValueError:
            value = None
        if not isinstance(value, dict):
            raise ServiceUnavailable(f"The Bastion service sent something unreadable. "
                                     f"{self._what_to_do()}")
        return value

    def _died(self) -> str:
        return f"The Bastion service stopped before the answer was complete. {self._what_to_do()}"

    def _what_to_do(self) -> str:
        return (f"Its log is {self.log}. Run the command again to start a new service, or add "
                "--no-service to run in this process.")


def _error_message(body: dict[str, Any], status: int) -> str:
    error = body.get("error")
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return str(error["message"])
    return f"The Bastion service refused the request (HTTP {status})."
