"""``bastion ask`` and ``bastion chat``: questions answered in the terminal, streamed."""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import time
from collections.abc import Sequence
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, TextIO

from bastion.desktop.cli.arg_types import adapter_spec, positive_int, setting

if TYPE_CHECKING:
    from bastion.desktop.app import App
    from bastion.desktop.assistant import AnswerDone, Assistant
    from bastion.store.chats import Mode, Source

# As bastion.desktop.grounding.MODES (a test checks); not imported from there, because that
# would load the chat database's modules before the arguments are even checked.
MODES: tuple[Mode, ...] = ("model", "docs", "both")


def register(subparsers: Any) -> None:
    ask = subparsers.add_parser("ask", help="answer one question and print its sources")
    ask.add_argument("question", help="the question (quote it)")
    _common(ask)
    ask.add_argument("--json", action="store_true",
                     help="print one JSON object when the answer is done: answer, citations, "
                          "passages, timings, model, adapters")
    ask.add_argument("--no-service", action="store_true",
                     help="answer in this process instead of the resident service (which "
                          "keeps the model loaded between commands)")
    ask.set_defaults(func=run_ask)

    chat = subparsers.add_parser("chat", help="an interactive chat in the terminal")
    chat.add_argument("--chat", type=positive_int, metavar="ID", help="continue chat ID (see `bastion chats list`)")
    _common(chat)
    chat.set_defaults(func=run_chat)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="model id, file name or path (default: the settings' default)")
    parser.add_argument("--collection", action="append", default=[], metavar="NAME",
                        help="document collection to search (repeatable; with --mode docs or both "
                             "and none given: every collection, as `search` does)")
    parser.add_argument("--mode", choices=MODES, default=None,
                        help="model: the model alone; docs: only your documents; both (default: "
                             "docs with a collection, else model)")
    parser.add_argument("--adapter", action="append", default=[], type=adapter_spec,
                        metavar="NAME[:SCALE]",
                        help="answer with this LoRA adapter (see `bastion adapters list`) at "
                             "SCALE in [-4, 4], 1 by default (repeatable)")
    parser.add_argument("--max-tokens", type=setting("max_tokens"), metavar="N",
                        help="longest answer in tokens (1 to 32768)")
    parser.add_argument("--temperature", type=setting("temperature"), metavar="T",
                        help="0 = greedy, up to 2")


def _mode(args: argparse.Namespace) -> Mode:
    chosen: Mode | None = args.mode  # argparse allows only MODES
    return chosen or ("docs" if args.collection else "model")


def _assistant(app: App, args: argparse.Namespace, mode: str) -> Assistant:
    if args.adapter:  # an unknown name is refused before the model loads
        from bastion.models.adapter_catalog import AdapterCatalog

        catalog = AdapterCatalog(app.paths.adapters_dir)
        for name, _ in args.adapter:
            catalog.resolve(name)
    if args.max_tokens is not None:
        app.settings.max_tokens = args.max_tokens
    if args.temperature is not None:
        app.settings.temperature = args.temperature
    assistant = app.assistant(args.model, retrieval=mode != "model")
    info = app.loaded_model()
    if info is not None and info.fallback_is_new:  # said once: later loads start on the safe setting
        print(f"note: {info.fallback}", file=sys.stderr)
    return assistant


def stream_answer(events: Any, out: TextIO | None = None, err: TextIO | None = None) -> AnswerDone | None:
    """Print an answer as it streams, then its sources and speed. Returns the stored answer."""
    from bastion.desktop.assistant import AnswerDelta, AnswerDone, PassagesFound

    # Looked up now, not when the module was imported: sys.stdout may have been replaced since.
    out, err = out or sys.stdout, err or sys.stderr
    done: AnswerDone | None = None
    streamed = ""
    for event in events:
        if isinstance(event, PassagesFound):
            if event.sources:
                print(f"[{len(event.sources)} passages, {event.retrieval_ms:.0f} ms]", file=err)
        elif isinstance(event, AnswerDelta):
            streamed += event.text
            out.write(event.text)
            out.flush()
        elif isinstance(event, AnswerDone):
            done = event
    out.write("\n")
    if done is not None:
        message = done.message
        print_answer_end(message.content, message.status, message.meta, message.sources,
                         streamed, out, err)
    return done


def print_answer_end(content: str, status: str, meta: dict[str, Any], sources: Sequence[Any],
                     streamed: str, out: TextIO, err: TextIO) -> None:
    """What follows a streamed answer: its sources, notes and speed (in-process or from the
    service, which sends the same stored answer)."""
    if meta.get("debris_removed") and content.strip() != streamed.strip():
        # The model repeated the prompt's delimiters; what was stored is the cleaned answer.
        print("note: the model repeated parts of the prompt; the answer as stored:", file=err)
        print(content, file=out)
    for line in source_lines(sources):
        print(line, file=out)
    if meta.get("not_found_reason"):
        print(f"note: not answered from your documents: {meta['not_found_reason']}. Ask with "
              "--mode both to let the model answer on its own.", file=err)
    if meta.get("generated_tokens"):
        print(
            f"[{meta['generated_tokens']} tokens · {meta.get('generation_tps', 0):.1f} tokens/s · "
            f"first token {meta.get('time_to_first_token_s', 0):.2f} s"
            + (" · stopped" if status == "interrupted" else "") + "]",
            file=err,
        )
    for skipped in meta.get("adapters_skipped", []):
        print(f"warning: answered without the adapter {skipped['name']}: {skipped['reason']}", file=err)
    if meta.get("template_warning"):
        print(f"warning: {meta['template_warning']}", file=err)


def source_lines(sources: Sequence[Source] | Sequence[Any]) -> list[str]:
    """The sources under an answer: those it cites, then, indented, the others it was shown
    (in prompt order, as ``grounding.cited_and_retrieved``; not imported from there, because the
    service's answers are printed without loading the chat store)."""
    if not sources:
        return []
    ordered = sorted(sources, key=lambda s: s.n)
    cited, also = [s for s in ordered if s.cited], [s for s in ordered if not s.cited]
    lines = ["", "Sources:" if cited else "Sources: no passage cited"]
    for heading, indent, group in ((None, "  ", cited), ("  Also retrieved:", "    ", also)):
        if heading and group:
            lines.append(heading)
        for s in group:
            page = f", page {s.page}" if s.page is not None else ""
            lines.append(f"{indent}[{s.n}] {s.path}{page}  (score {s.score:.3f})")
            lines.append(f"{indent}    {s.snippet}")
    return lines


def run_ask(args: argparse.Namespace) -> int:
    from bastion.desktop.cli import service_client
    from bastion.desktop.paths import data_paths

    started = time.perf_counter()
    mode = _mode(args)
    home = data_paths().home
    if service_client.wanted(args.no_service, home):
        return _ask_service(service_client.ServiceClient(home), args, mode, started)
    from bastion.desktop.app import App

    with App() as app:
        assistant = _assistant(app, args, mode)
        collections = args.collection
        if mode != "model" and not collections:  # like `search`: every collection
            collections = [c.name for c in app.library.collections()]
        chat = app.chats.create_chat(mode=mode, collections=collections, adapters=args.adapter)
        # Closed before the app: an answer cut short by an error releases the engine first.
        with contextlib.closing(assistant.ask(chat.id, args.question)) as events:
            if not args.json:
                stream_answer(events)
                return 0
            done = _last_answer(events)
        if done is None:  # the generator always ends with one; say so rather than print nothing
            print("bastion: the answer ended without being stored; try again.", file=sys.stderr)
            return 1
        from bastion.desktop.cli.json_output import answer_json

        print(json.dumps(answer_json(done, app.loaded_model(), time.perf_counter() - started),
                         ensure_ascii=False))
    return 0


def _ask_service(client: Any, args: argparse.Namespace, mode: Mode, started: float) -> int:
    """``ask`` answered by the resident service: the same chat stored, the same output."""
    request = {"question": args.question, "model": args.model, "mode": mode,
               "collections": args.collection, "adapters": [list(a) for a in args.adapter],
               "max_tokens": args.max_tokens, "temperature": args.temperature}
    out, err = sys.stdout, sys.stderr
    streamed = ""
    for event in client.ask(request):
        kind = event.get("event")
        if kind == "loaded":
            model = event.get("model") or {}
            if model.get("fallback_is_new"):
                print(f"note: {model.get('fallback')}", file=err)
        elif kind == "passages" and event.get("count") and not args.json:
            print(f"[{event['count']} passages, {event.get('retrieval_ms', 0):.0f} ms]", file=err)
        elif kind == "delta" and not args.json:
            streamed += event.get("text", "")
            out.write(event.get("text", ""))
            out.flush()
        elif kind == "error":
            print(("\n" if streamed else "") + f"bastion: {event.get('message')}", file=err)
            return 1
        elif kind == "done":
            answer = event.get("answer") or {}
            if args.json:
                answer.setdefault("timings", {})["total_s"] = round(
                    time.perf_counter() - started, 3)
                print(json.dumps(answer, ensure_ascii=False))
                return 0
            out.write("\n")
            sources = [SimpleNamespace(**{**p, "path": p.get("file")})
                       for p in answer.get("passages", [])]
            print_answer_end(answer.get("answer", ""), answer.get("status", ""),
                             event.get("meta") or {}, sources, streamed, out, err)
    return 0


def _last_answer(events: Any) -> AnswerDone | None:
    from bastion.desktop.assistant import AnswerDone

    done = None
    for event in events:
        if isinstance(event, AnswerDone):
            done = event
    return done


def run_chat(args: argparse.Namespace) -> int:
    mode = _mode(args)
    if sys.stdin.isatty():
        # Ctrl-C is how a person stops an answer here. A shell that starts a program in the
        # background makes it ignore SIGINT, and Python then installs no handler: take it back.
        signal.signal(signal.SIGINT, signal.default_int_handler)
    from bastion.desktop.app import App
    from bastion.desktop.cli.chat_repl import HISTORY_FILE, ChatState, TerminalChat, line_editing

    with App() as app:
        # The chat row is created by the first question: a session left at once stores nothing.
        state = ChatState(mode, list(args.collection), list(args.adapter))
        if args.chat is not None:
            chat = app.chats.chat(args.chat)
            if args.adapter:
                chat = app.chats.update_chat(chat.id, adapters=args.adapter)
            state = ChatState(chat.mode, list(chat.collections), list(chat.adapters), chat.id)
        print("Loading the model…", file=sys.stderr)
        _assistant(app, args, state.mode)
        info = app.loaded_model()
        if info is not None:
            adapters = "".join(f" · adapter {name}:{scale:g}" for name, scale in state.adapters)
            which = f" · chat {state.chat_id}" if state.chat_id is not None else " · new chat"
            print(f"{info.name} · context {info.n_ctx} tokens · {info.n_threads} threads · mode "
                  f"{state.mode}{adapters}{which}", file=sys.stderr)
            if info.template_warning:
                print(f"warning: {info.template_warning}", file=sys.stderr)
        chat_loop = TerminalChat(app, args.model, state)
        if not sys.stdin.isatty():
            return int(chat_loop.run())
        with line_editing(app.paths.home / HISTORY_FILE):
            return int(chat_loop.run())
