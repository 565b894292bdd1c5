"""``bastion serve``: the OpenAI-compatible API on 127.0.0.1, over the loaded model and library."""

from __future__ import annotations

import argparse
import sys

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


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "serve", help=HELP,
        description="Serve /v1/models, /v1/chat/completions and /v1/embeddings on 127.0.0.1 "
        "for OpenAI clients on this computer. Requests need the bearer token kept in the data "
        "folder (made at the first start); a 'bastion' object in a chat request picks "
        "collections, mode and adapters, and answers carry bastion.citations.",
    )
    parser.add_argument("--port", type=port_number, default=8765,
                        help="port on 127.0.0.1 (default 8765; 0 picks a free one)")
    parser.add_argument("--model", help="model id, file name or path (default: the settings' default)")
    parser.add_argument("--queue", type=queue_length, default=4, metavar="N",
                        help="requests that may wait while the model answers another (0 to 64, "
                             "default 4); more are refused with 429 and Retry-After")
    parser.add_argument("--show-token", action="store_true",
                        help="print the API token (made if there is none yet) and exit")
    parser.set_defaults(func=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    import logging

    from bastion.desktop.api.access_token import load_or_create_token, token_path
    from bastion.desktop.paths import data_paths

    home = data_paths().home
    token, made = load_or_create_token(home)
    if args.show_token:
        print(token)
        return 0

    from bastion.desktop.api.server import ApiServer
    from bastion.desktop.api.service import AnswerService
    from bastion.desktop.api.wiring import service_parts
    from bastion.desktop.app import App
    from bastion.desktop.errors import BastionError

    with App() as app:
        print("Loading the model…", file=sys.stderr)
        parts = service_parts(app, args.model)
        service = AnswerService(parts, max_waiting=args.queue)
        try:
            server = ApiServer(service, token, args.port)
        except OSError as error:
            service.close()
            raise BastionError(f"Port {args.port} on 127.0.0.1 cannot be used ({error.strerror}): "
                               "stop what uses it, or choose another with --port.") from error
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
        print(f"Bastion API on http://127.0.0.1:{server.port}/v1 · chat model {parts.chat_model}"
              f" · embeddings {parts.embedding_model}", file=sys.stderr)
        print(f"The API token was {'made' if made else 'kept'} in {token_path(home)} (readable by "
              "you only; `bastion serve --show-token` prints it). Ctrl-C stops.", file=sys.stderr)
        try:
            server.serve_forever(poll_interval=0.2)
        except KeyboardInterrupt:
            print("Stopping…", file=sys.stderr)
        finally:
            server.stop()
    return 0
