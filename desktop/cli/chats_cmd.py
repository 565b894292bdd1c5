"""``bastion chats``: list, show, rename, delete and export stored chats."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from bastion.desktop.cli.arg_types import positive_int


def register(subparsers: Any) -> None:
    chats = subparsers.add_parser("chats", help="stored chats: list, show, rename, delete, export")
    sub = chats.add_subparsers(dest="chats_command", metavar="ACTION", required=True)

    listing = sub.add_parser("list", help="chats, most recent first")
    listing.add_argument("--search", help="only chats whose title contains this")
    listing.add_argument("--json", action="store_true", help="print JSON lines, one chat each")
    listing.set_defaults(func=run_list)

    show = sub.add_parser("show", help="print a chat with its sources")
    show.add_argument("id", type=positive_int)
    show.set_defaults(func=run_show)

    rename = sub.add_parser("rename", help="give a chat a new title")
    rename.add_argument("id", type=positive_int)
    rename.add_argument("title")
    rename.set_defaults(func=run_rename)

    delete = sub.add_parser("delete", help="delete a chat and its messages")
    delete.add_argument("id", type=positive_int)
    delete.set_defaults(func=run_delete)

    export = sub.add_parser("export", help="export a chat as Markdown, JSON or fine-tuning JSONL")
    export.add_argument("id", type=positive_int)
    export.add_argument("--format", choices=("md", "json", "jsonl"), default="md")
    export.add_argument("--output", "-o", type=Path, help="write to this file instead of stdout")
    export.set_defaults(func=run_export)


def run_list(args: argparse.Namespace) -> int:
    from bastion.desktop.app import App

    with App() as app:
        chats = app.chats.chats(args.search)
        if args.json:
            from bastion.desktop.cli.json_output import chat_json, print_json_lines

            print_json_lines(chat_json(c, len(app.chats.messages(c.id))) for c in chats)
            return 0
        if not chats:
            print("No chats yet. Start one with `bastion chat`.", file=sys.stderr)
            return 0
        for chat in chats:
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(chat.updated))
            count = len(app.chats.messages(chat.id))
            print(f"{chat.id:>5}  {when}  {chat.mode:<5}  {count:>3} msgs  {chat.title}")
    return 0


def run_show(args: argparse.Namespace) -> int:
    from bastion.desktop.app import App
    from bastion.desktop.chat_export import to_markdown

    with App() as app:
        chat = app.chats.chat(args.id)
        sys.stdout.write(to_markdown(chat, app.chats.messages(chat.id)))
    return 0


def run_rename(args: argparse.Namespace) -> int:
    from bastion.desktop.app import App

    with App() as app:
        chat = app.chats.update_chat(args.id, title=args.title)
        print(f"Chat {chat.id} is now “{chat.title}”.")
    return 0


def run_delete(args: argparse.Namespace) -> int:
    from bastion.desktop.app import App

    with App() as app:
        app.chats.delete_chat(args.id)
        print(f"Deleted chat {args.id}.")
    return 0


def run_export(args: argparse.Namespace) -> int:
    from bastion.desktop.app import App
    from bastion.desktop.chat_export import export_chat

    with App() as app:
        chat = app.chats.chat(args.id)
        text = export_chat(chat, app.chats.messages(chat.id), args.format,
                           system_prompt=app.settings.system_prompt)
    if args.output:
        args.output.write_text(text, encoding="utf-8")
        print(f"Wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0
