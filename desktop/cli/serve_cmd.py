"""``bastion serve``: the OpenAI-compatible API on 127.0.0.1, over the loaded model and library."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

HELP = "an OpenAI-compatible API on this computer (127.0.0.1 only)"


def port_number(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a port: give 1 to 65535 (0: any free port)")
    return value


def queue_length(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 0 <= value <= 64:
        raise argparse.ArgumentTypeError(f"{value} is out of range: give 0 to 64")
    return value


def idle_seconds(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of seconds") from None
    if not 0 <= value <= 7 * 24 * 3600:
        raise argparse.ArgumentTypeError(f"{value} is out of range: give 0 (never) to 604800 s")
    return value


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "serve", help=HELP,
        description="Keep the model, the embedder and the library loaded in one process. It "
        "always listens on a Unix socket in the data folder (readable by you only), which "
        "`bastion search` and `bastion ask` use (they start a service themselves when none "
        "runs). With --http or --port it also serves /v1/models, /v1/chat/completions and "
        "/v1/embeddings on 127.0.0.1 for OpenAI clients on this computer; those requests need "
        "the bearer token kept in the data folder (made at the first start); a 'bastion' object "
        "in a chat request picks collections, mode and adapters, and answers carry "
        "bastion.citations.",
    )
    parser.add_argument("--http", action="store_true",
                        help="also serve the OpenAI-compatible API on 127.0.0.1 (port 8765 "
                             "unless --port)")
    parser.add_argument("--port", type=port_number, default=None,
                        help="serve the HTTP API on this port of 127.0.0.1 (implies --http; "
                             "default 8765; 0 picks a free one)")
    parser.add_argument("--model", help="model id, file name or path (default: the settings' default)")
    parser.add_argument("--queue", type=queue_length, default=4, metavar="N",
                        help="requests that may wait while the model answers another (0 to 64, "
                             "default 4); more are refused with 429 and Retry-After")
    parser.add_argument("--idle-timeout", type=idle_seconds, default=0, metavar="SECONDS",
                        help="stop after this many seconds without a request (default 0: "
                             "never; a service started by `search`/`ask` uses the setting "
                             "service_idle_minutes)")
    parser.add_argument("--show-token", action="store_true",
                        help="print the API token (made if there is none yet) and exit")
    parser.set_defaults(func=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    from bastion.desktop.api.access_token import load_or_create_token
    from bastion.desktop.paths import data_paths

    home = data_paths().home
    token, made = load_or_create_token(home)
    if args.show_token:
        print(token)
        return 0

    from bastion.desktop.api.local_socket import ServiceLock, where_it_runs
    from bastion.desktop.errors import BastionError

    lock = ServiceLock(home)
    if not lock.acquire():  # before anything loads: the second of two starts says so at once
        raise BastionError(f"A Bastion service already runs for this data folder "
                           f"({where_it_runs(home)}); `bastion search` and `bastion ask` use it. "
                           "Stop that process first to start another.")
    try:
        return _serve(args, home, lock, token, made)
    finally:
        lock.release()


def _serve(args: argparse.Namespace, home: Path, lock: Any, token: str, made: bool) -> int:
    import signal
    import threading

    stop = threading.Event()
    # `kill` (SIGTERM) stops as cleanly as Ctrl-C: the socket file is removed, answers stored.
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        return _run(args, home, lock, token, made, stop)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run(args: argparse.Namespace, home: Path, lock: Any, token: str, made: bool,
         stop: Any) -> int:
    import logging

    from bastion.desktop.api.access_token import token_path
    from bastion.desktop.api.local_socket import socket_path
    from bastion.desktop.api.server import ApiServer
    from bastion.desktop.api.service import AnswerService
    from bastion.desktop.api.socket_server import UnixApiServer
    from bastion.desktop.api.wiring import service_parts
    from bastion.desktop.app import App
    from bastion.desktop.errors import BastionError
    from bastion.desktop.heap import settle_heap

    http = args.http or args.port is not None
    with App() as app:
        print("Loading the model…", file=sys.stderr)
        parts = service_parts(app, args.model)
        info = app.loaded_model()
        if info is not None and info.fallback_is_new:  # said once, here (the log if detached)
            print(f"note: {info.fallback}", file=sys.stderr)
        if parts.embedder is not None:
            parts.embedder.embed(["warm-up"])  # torch and the embedder now, not at a first search
        settle_heap()  # no full garbage collection walks what start-up loaded (see the module)
        service = AnswerService(parts, max_waiting=args.queue)
        servers: list[Any] = []
        started: list[Any] = []  # shutdown() waits for a loop that runs: only these get it
        try:
            servers.append(UnixApiServer(service, socket_path(home)))
            if http:
                port = 8765 if args.port is None else args.port
                try:
                    servers.append(ApiServer(service, token, port))
                except OSError as error:
                    raise BastionError(f"Port {port} on 127.0.0.1 cannot be used "
                                       f"({error.strerror}): stop what uses it, or choose "
                                       "another with --port.") from error
            logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
            address = f"http://127.0.0.1:{servers[1].port}/v1" if http else None
            lock.describe(socket=str(socket_path(home)), http=address)
            for server in servers:
                server.start()
                started.append(server)
            print(f"Bastion service on {socket_path(home)}"
                  + (f" and {address}" if address else "")
                  + f" · chat model {parts.chat_model} · embeddings {parts.embedding_model}"
                  + (f" · stops after {args.idle_timeout} s idle" if args.idle_timeout else ""),
                  file=sys.stderr)
            if http:
                print(f"The API token was {'made' if made else 'kept'} in {token_path(home)} "
                      "(readable by you only; `bastion serve --show-token` prints it).",
                      file=sys.stderr)
            else:
                print("No HTTP port (add --http for OpenAI clients on 127.0.0.1:8765).",
                      file=sys.stderr)
            print("Ctrl-C stops.", file=sys.stderr)
            _wait(stop, service, args.idle_timeout)
        except KeyboardInterrupt:
            print("Stopping…", file=sys.stderr)
        finally:
            for server in started:
                server.shutdown()
            for server in servers:
                server.server_close()
            service.close()
    return 0


def _wait(stop: Any, service: Any, idle_timeout_s: int) -> None:
    """Until stopped, or idle (no request waiting or running) for ``idle_timeout_s``."""
    while not stop.wait(0.5):
        if idle_timeout_s and service.idle_s() >= idle_timeout_s:
            print(f"No request for {idle_timeout_s} s: stopping.", file=sys.stderr)
            return
