"""HTTP to an on-prem OpenAI-compatible inference server: the address, the errors, the SSE reader.

Standard library only (``http.client``): a streamed answer is one connection whose socket the
remote engine can shut down from another thread when the user presses Stop. Every failure
becomes a ``RemoteError`` whose message says what happened and what to do.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from .errors import ModelError, ModelNotFound

MAX_ERROR_BYTES = 64 * 1024  # of an error body: enough for any honest message
MAX_LINE_BYTES = 1024 * 1024  # one SSE line; a longer one is not a chat chunk
MAX_JSON_BYTES = 16 * 1024 * 1024  # a whole JSON reply (a model list, a token count)
TOKEN_HINT = ("Set the token the server expects with `bastion settings set remote_token -` "
              "(it reads the token from standard input and keeps it in a file only you can read).")
URL_HINT = "Correct the address with `bastion settings set remote_url URL` (e.g. http://gpu-box:8080/v1)."


class RemoteError(ModelError):
    """The remote inference server could not be used; the message says why and what to do."""


class RemoteConfigError(RemoteError):
    """The remote server's address is missing or not an http(s) URL."""


class RemoteUnreachable(RemoteError):
    """Nothing answers at the server's address (refused, no route, unknown name)."""


class RemoteTimeout(RemoteError):
    """The server did not accept the connection, or stopped sending, in time."""


class RemoteAuthFailed(RemoteError):
    """The server refused the token (HTTP 401/403)."""


class RemoteModelNotFound(RemoteError, ModelNotFound):
    """The server does not serve the model asked for."""


class RemoteServerError(RemoteError):
    """The server failed (HTTP 5xx, or an error sent inside the stream)."""


class RemoteProtocolError(RemoteError):
    """The server's reply is not what an OpenAI-compatible API sends."""


class StreamClosed(RemoteProtocolError):
    """The stream ended without ``[DONE]`` (complete anyway if the answer's end was sent)."""


@dataclass(frozen=True)
class RemoteEndpoint:
    """Where the server is: ``url`` is the API's base (``…/v1``); ``token`` its bearer token."""

    url: str
    scheme: str
    host: str
    port: int
    base_path: str  # e.g. "/v1", no trailing slash
    token: str | None = None

    @classmethod
    def parse(cls, url: str | None, token: str | None = None) -> RemoteEndpoint:
        """The endpoint of ``url``; a missing or odd URL is refused saying what is expected.

        Raises:
            RemoteConfigError: no URL, not http/https, no host, or a query/fragment/credentials.
        """
        if not url or not url.strip():
            raise RemoteConfigError("No remote server is configured. " + URL_HINT)
        text = url.strip()
        try:
            parts = urlsplit(text)
            port = parts.port
        except ValueError as error:
            raise RemoteConfigError(f"{text!r} is not a URL ({error}). " + URL_HINT) from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise RemoteConfigError(f"{text!r} is not an http:// or https:// URL with a host. "
                                    + URL_HINT)
        if parts.query or parts.fragment or parts.username or parts.password:
            raise RemoteConfigError(f"{text!r} has a query, fragment or user name in it; give only "
                                    "scheme, host, port and path (the token is set apart). " + URL_HINT)
        if port is None:
            port = 443 if parts.scheme == "https" else 80
        return cls(url=text.rstrip("/"), scheme=parts.scheme, host=parts.hostname.lower(),
                   port=port, base_path=parts.path.rstrip("/"), token=token or None)

    @property
    def origin(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    @property
    def root_path(self) -> str:
        """The server's root: the base path without its ``/v1`` (where llama.cpp's extras live)."""
        return self.base_path[:-3] if self.base_path.endswith("/v1") else self.base_path


class Connection:
    """One HTTP request to the server and its response; ``abort()`` is safe from any thread."""

    def __init__(self, endpoint: RemoteEndpoint, connect_timeout_s: float,
                 read_timeout_s: float) -> None:
        self.endpoint = endpoint
        self.read_timeout_s = read_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self._conn: http.client.HTTPConnection
        if endpoint.scheme == "https":
            import ssl  # only for https: a plain http server on the LAN needs none of it

            self._conn = http.client.HTTPSConnection(endpoint.host, endpoint.port,
                                                     timeout=connect_timeout_s,
                                                     context=ssl.create_default_context())
        else:
            self._conn = http.client.HTTPConnection(endpoint.host, endpoint.port,
                                                    timeout=connect_timeout_s)
        self.aborted = False

    def request(self, method: str, path: str, body: dict[str, Any] | None = None,
                accept: str = "application/json") -> http.client.HTTPResponse:
        """Send the request; the response once its headers came. Errors become ``RemoteError``."""
        url = self.endpoint.url
        try:
            self._conn.connect()
        except TimeoutError:
            raise RemoteTimeout(
                f"The inference server at {url} did not accept a connection within "
                f"{self.connect_timeout_s:g} s. Check that the machine is up and reachable from "
                f"here. {URL_HINT}") from None
        except OSError as error:
            raise _unreachable(url, error) from None
        if self.aborted:  # Stop came while connecting
            self._conn.close()
            raise RemoteError(f"The request to {url} was cancelled.")
        if self._conn.sock is not None:
            self._conn.sock.settimeout(self.read_timeout_s)
        headers = {"Accept": accept, "User-Agent": "bastion"}
        data = None
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        if self.endpoint.token:
            headers["Authorization"] = f"Bearer {self.endpoint.token}"
        try:
            self._conn.request(method, path, body=data, headers=headers)
            return self._conn.getresponse()
        except OSError as error:
            raise self.read_failure(error, "while waiting for its reply") from None
        except http.client.HTTPException as error:
            raise RemoteProtocolError(
                f"The server at {url} sent a reply that is not HTTP ({type(error).__name__}). "
                f"Is {url} the address of an OpenAI-compatible API? {URL_HINT}") from None

    def read_failure(self, error: OSError, when: str) -> RemoteError:
        url = self.endpoint.url
        if isinstance(error, TimeoutError):
            return RemoteTimeout(
                f"The inference server at {url} sent nothing for {self.read_timeout_s:g} s "
                f"{when}. It may be overloaded or stuck; try again, or allow it longer with "
                "`bastion settings set remote_timeout_s SECONDS`.")
        return RemoteUnreachable(
            f"The connection to the inference server at {url} broke {when} "
            f"({error.strerror or error}). Check that the server is still running, then ask again.")

    def abort(self) -> None:
        """Shut the socket down so a read blocked in another thread returns at once."""
        self.aborted = True
        sock = self._conn.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._conn.close()


def _unreachable(url: str, error: OSError) -> RemoteError:
    if isinstance(error, socket.gaierror):
        return RemoteUnreachable(f"The name of the inference server in {url} cannot be resolved "
                                 f"({error.strerror}). Check the host name. {URL_HINT}")
    if isinstance(error, ConnectionRefusedError):
        return RemoteUnreachable(
            f"Nothing answers at {url} (connection refused): the inference server is not "
            f"running there, or listens on another port. Start it, or {URL_HINT[0].lower()}"
            f"{URL_HINT[1:]}")
    if isinstance(error, PermissionError):  # the egress guard: only the configured host is allowed
        return RemoteUnreachable(f"Bastion refused to connect to {url}: {error}")
    return RemoteUnreachable(f"The inference server at {url} cannot be reached "
                             f"({error.strerror or error}). Check the network path to it and "
                             f"that it is running. {URL_HINT}")


def error_detail(response: http.client.HTTPResponse) -> str:
    """The message in an error reply (OpenAI's ``error.message``, FastAPI's ``detail``, text)."""
    try:
        raw = response.read(MAX_ERROR_BYTES)
    except (OSError, http.client.HTTPException):
        return ""
    text = raw.decode("utf-8", "replace").strip()
    try:
        body = json.loads(text)
    except ValueError:
        return text[:300]
    if isinstance(body, dict):
        inner = body.get("error", body.get("detail", body.get("message")))
        if isinstance(inner, dict):
            inner = inner.get("message", inner)
        if inner is not None:
            return str(inner)[:300]
    return text[:300]


def status_error(endpoint: RemoteEndpoint, status: int, detail: str, model: str | None,
                 what: str) -> RemoteError:
    """The error for an HTTP ``status`` other than 200, with the server's ``detail``."""
    url = endpoint.url
    said = f": {detail}" if detail else ""
    if status in (401, 403):
        if not endpoint.token:
            return RemoteAuthFailed(f"The inference server at {url} requires a token "
                                    f"(HTTP {status}{said}), and none is set. {TOKEN_HINT}")
        return RemoteAuthFailed(f"The inference server at {url} refused Bastion's token "
                                f"(HTTP {status}{said}): it is wrong or has expired. {TOKEN_HINT}")
    if status == 404:
        if model is not None and "model" in detail.lower():
            return RemoteModelNotFound(
                f"The inference server at {url} does not serve the model {model!r} (HTTP 404"
                f"{said}). `bastion models remote` lists the models it serves.")
        return RemoteConfigError(f"The server at {url} has no {what} (HTTP 404{said}). Is "
                                 f"{url} the API's base address, usually ending in /v1? {URL_HINT}")
    if status >= 500:
        return RemoteServerError(f"The inference server at {url} failed (HTTP {status}{said}). "
                                 "Check the server's log; ask again once it is healthy.")
    return RemoteError(f"The inference server at {url} refused the request (HTTP {status}{said}). "
                       "Check the model's settings on the server, or shorten the question.")


def read_json(connection: Connection, response: http.client.HTTPResponse) -> Any:
    """A whole JSON reply; anything else is a ``RemoteProtocolError``."""
    try:
        raw = response.read(MAX_JSON_BYTES + 1)
    except OSError as error:
        raise connection.read_failure(error, "while sending its reply") from None
    except http.client.HTTPException:
        raw = b""
    url = connection.endpoint.url
    try:
        if len(raw) > MAX_JSON_BYTES:
            raise ValueError("too long")
        return json.loads(raw)
    except ValueError:
        raise RemoteProtocolError(
            f"The server at {url} sent a reply that is not JSON. Is {url} the address of an "
            f"OpenAI-compatible API (llama.cpp's server, vLLM)? {URL_HINT}") from None


def sse_data(connection: Connection, response: http.client.HTTPResponse) -> Iterator[str]:
    """The ``data`` of each server-sent event, up to ``[DONE]`` (not included).

    Raises:
        RemoteProtocolError: a line too long, or the stream ended without ``[DONE]``.
        RemoteTimeout, RemoteUnreachable: the server went silent or the connection broke.
    """
    url = connection.endpoint.url
    data: list[str] = []
    while True:
        try:
            line = response.readline(MAX_LINE_BYTES + 1)
        except OSError as error:
            if connection.aborted:
                return
            raise connection.read_failure(error, "in the middle of an answer") from None
        except http.client.HTTPException:
            line = b""
        if connection.aborted:
            return
        if not line:
            raise StreamClosed(
                f"The inference server at {url} closed the stream before the answer's end. "
                "The server may have restarted or run out of memory; check its log and ask again.")
        if len(line) > MAX_LINE_BYTES or not line.endswith(b"\n"):
            raise RemoteProtocolError(f"The inference server at {url} sent a stream line longer "
                                      "than 1 MiB: that is not a chat stream Bastion can read.")
        text = line.decode("utf-8", "replace").rstrip("\r\n")
        if not text:  # end of one event
            if data:
                joined, data = "\n".join(data), []
                if joined.strip() == "[DONE]":
                    return
                yield joined
            continue
        if text.startswith(":"):  # a comment (keep-alive)
            continue
        name, _, value = text.partition(":")
        if name == "data":
            data.append(value[1:] if value.startswith(" ") else value)
