"""The ``bastion`` command line: thin commands over the same use cases as the window.

Each command group lives in its own module with a ``register(subparsers)`` function; this module
only assembles them and turns core errors into one-line messages (never a traceback).

Only the chosen command's module is imported: ``bastion --help``, an unknown command and a
refused argument cost the interpreter's start and argparse, not a database, a model catalog or a
machine-learning library. The other commands appear in ``--help`` through the one-line help
kept in ``COMMANDS`` (a test checks it matches what each module registers).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Iterable, Sequence

# Command → (its module, its one-line help), in the order the commands appear in --help.
# Commands registered by one module (ask and chat; library and search) sit next to each other.
COMMANDS: dict[str, tuple[str, str]] = {
    "ask": ("chat_cmd", "answer one question and print its sources"),
    "chat": ("chat_cmd", "an interactive chat in the terminal"),
    "models": ("models_cmd", "GGUF models: list, info, verify, import, default, unload, remote"),
    "adapters": ("adapters_cmd", "LoRA adapters: list, import, info, verify, remove"),
    "finetune": ("finetune_cmd", "train a LoRA adapter on chat JSONL (or: finetune merge NAME)"),
    "library": ("library_cmd", "index folders of documents for search and answers"),
    "search": ("library_cmd", "search your documents (no model needed)"),
    "chats": ("chats_cmd", "stored chats: list, show, rename, delete, export"),
    "settings": ("settings_cmd", "read and change settings: get [KEY], set KEY VALUE"),
    "lab": ("lab_cmd", "compare model, documents and adapters on your questions"),
    "serve": ("serve_cmd", "an OpenAI-compatible API on this computer (127.0.0.1 only)"),
    "doctor": ("doctor_cmd",
               "check this installation: versions, data folder, models, no network, smoke flow"),
    "gui": ("gui_cmd", "open the window (the default with no command)"),
}
PACKAGE = "bastion.desktop.cli"


def chosen_command(argv: Sequence[str]) -> str | None:
    """The command ``argv`` names (its first word that is not an option), if it is one."""
    for word in argv:
        if word == "--":
            return None
        if not word.startswith("-"):
            return word if word in COMMANDS else None
    return None


def build_parser(commands: Iterable[str] | None = None) -> argparse.ArgumentParser:
    """The ``bastion`` parser, with the full parsers of ``commands`` (None: every command).

    The others get a placeholder that only carries their help line.
    """
    wanted = {COMMANDS[name][0] for name in (COMMANDS if commands is None else commands)}
    parser = argparse.ArgumentParser(
        prog="bastion",
        description="Bastion: an offline assistant on local GGUF models and your own documents.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    registered: set[str] = set()
    # Importing bastion.desktop (this package's parent) already made the process offline.
    for name, (module_name, help_line) in COMMANDS.items():
        if name in subparsers.choices:  # registered with its module's first command
            continue
        if module_name in wanted and module_name not in registered:
            registered.add(module_name)
            importlib.import_module(f"{PACKAGE}.{module_name}").register(subparsers)
        else:
            subparsers.add_parser(name, help=help_line, add_help=False)
    parser.set_defaults(commands=frozenset(subparsers.choices))
    return parser


def parse(argv: Sequence[str]) -> argparse.Namespace:
    """Parse ``argv``, importing only the module of the command it names."""
    command = chosen_command(argv)
    args = build_parser([command] if command else []).parse_args(argv)
    if args.command is None:  # plain `bastion`: the window, or the terminal chat without Qt
        args = build_parser(["gui"]).parse_args(["gui"])
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)

    from bastion.desktop.egress import guard_this_process
    from bastion.desktop.errors import user_message

    guard_this_process()  # before any command runs: refuse and log non-loopback traffic
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130
    except Exception as error:  # one place turns failures into messages a user can act on
        message = user_message(error)
        if message is None:
            raise
        print(f"bastion: {message}", file=sys.stderr)
        return 1
