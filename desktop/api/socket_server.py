"""The service on a Unix socket in the data folder: the API's handlers, plus the command line's.

The same ``ApiHandler`` serves the socket as the HTTP port, with two differences: the socket's
0600 mode (in a 0700 folder) is its guard, so no token and no Host check apply; and it also
serves ``/bastion/search`` and ``/bastion/ask`` (``local_protocol``), which a running
``bastion search``/``ask`` uses instead of loading torch and the model itself, and
``/bastion/unload`` (``bastion models unload``).
"""

from __future__ import annotations

import json
import os
import socket
import socketserver
import threading
import time
from pathlib import Path
from typing import Any

from bastion.desktop.answering import AnswerDelta, PassagesFound
from bastion.desktop.api import local_protocol, protocol
from bastion.desktop.api.local_socket import MAX_SOCKET_PATH, is_listening
from bastion.desktop.api.protocol import ApiError
from bastion.desktop.api.server import ApiHandler
from bastion.desktop.api.service import AnswerService, Loaded, Searched, Unloaded
from bastion.desktop.assistant import AnswerDone
from bastion.desktop.errors import BastionError


class SocketHandler(ApiHandler):
    server: UnixApiServer

    def _check_guards(self) -> None:
        """Nothing to check: only this user can reach the socket (0600 in a 0700 folder)."""

    def _route(self, method: str, path: str) -> None:
        if (method, path) == ("POST", local_protocol.SEARCH_PATH):
            self._search(local_protocol.search_request(protocol.parse_json(self._body())))
        elif (method, path) == ("POST", local_protocol.ASK_PATH):
            self._ask(local_protocol.ask_request(protocol.parse_json(self._body())))
        elif (method, path) == ("POST", local_protocol.UNLOAD_PATH):
            self._body()  # read and ignored: nothing to choose
            self._unload()
        else:
            super()._route(method, path)

    def _search(self, request: local_protocol.SearchRequest) -> None:
        job = self._submit(lambda: self.server.service.search(request))
        events = self._events(job)
        try:
            result = next((e for e in events if isinstance(e, Searched)), None)
        finally:
            events.close()
        if result is None:
            raise ApiError(500, "The search ended without results; try again.", kind="server_error")
        self._send_json(200, {"hits": [local_protocol.hit_json(h) for h in result.hits],
                              "timings": result.timings})

    def _unload(self) -> None:
        job = self._submit(self.server.service.unload)
        events = self._events(job)
        try:
            result = next((e for e in events if isinstance(e, Unloaded)), None)
        finally:
            events.close()
        if result is None:
            raise ApiError(500, "The model was not unloaded; try again.", kind="server_error")
        self._send_json(200, local_protocol.unloaded_json(result.info, result.freed_bytes))

    def _ask(self, request: local_protocol.AskRequest) -> None:
        # ``ask --json`` prints the same object in-process and through the service.
        from bastion.desktop.cli.json_output import answer_json

        started = time.perf_counter()
        job = self._submit(lambda: self.server.service.ask(request))
        events = self._events(job)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson; charset=utf-8")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        loaded: Any = None
        try:
            for event in events:
                if isinstance(event, Loaded):
                    loaded = event.info
                    self._line({"event": "loaded", "model": local_protocol.loaded_json(loaded)})
                elif isinstance(event, PassagesFound):
                    self._line({"event": "passages", "count": len(event.sources),
                                "retrieval_ms": event.retrieval_ms})
                elif isinstance(event, AnswerDelta):
                    self._line({"event": "delta", "text": event.text})
                elif isinstance(event, AnswerDone):
                    self._line({"event": "done", "meta": event.message.meta,
                                "answer": answer_json(event, loaded,
                                                      time.perf_counter() - started)})
        except ApiError as error:  # after the headers: the failure travels as the last line
            self._line({"event": "error", "status": error.status, "message": error.message})
        finally:
            events.close()

    def _line(self, payload: dict[str, Any]) -> None:
        self._write(json.dumps(payload, ensure_ascii=False, default=str).encode("utf-8") + b"\n")


class UnixApiServer(socketserver.ThreadingUnixStreamServer):
    """The API on ``path`` (made 0600). A stale socket file left by a killed service is removed;
    one a live service answers on is refused (the caller holds the service lock, so that is a
    service started without it)."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, service: AnswerService, path: Path) -> None:
        self.service = service
        self.path = path
        if len(os.fsencode(path)) > MAX_SOCKET_PATH:
            raise BastionError(f"The data folder's path is too long for a socket ({path}); use a "
                               "shorter BASTION_HOME, or run with --no-service.")
        if path.exists() or path.is_symlink():
            if is_listening(path):
                raise BastionError(f"A Bastion service already answers on {path}; stop it first.")
            path.unlink()  # left by a service that was killed
        old_umask = os.umask(0o177)  # the socket is born 0600: no instant where others may connect
        try:
            super().__init__(str(path), SocketHandler)
        finally:
            os.umask(old_umask)
        os.chmod(path, 0o600)

    def get_request(self) -> tuple[socket.socket, Any]:
        connection, _ = self.socket.accept()
        return connection, ("local socket",)

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.1},
                                  name="bastion-api-socket", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        """Stop serving (the service itself is closed by its owner)."""
        self.shutdown()
        self.server_close()

    def server_close(self) -> None:
        """Close the socket and remove its file, unless another service has put its own there."""
        super().server_close()
        try:
            if os.stat(self.path).st_ino == self._inode:
                self.path.unlink()
        except OSError:
            pass

    def server_bind(self) -> None:
        super().server_bind()
        self._inode = os.stat(self.path).st_ino
