"""The ``bastion`` command line: thin commands over the same use cases as the window.

Each command group lives in its own module with a ``register(subparsers)`` function; this module
only assembles them and turns core errors into one-line messages (never a traceback).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from bastion.desktop.egress import guard_this_process
from bastion.desktop.errors import user_message

# Command-group modules, in the order their commands appear in --help.
COMMAND_MODULES = (
    "bastion.desktop.cli.chat_cmd",
    "bastion.desktop.cli.models_cmd",
    "bastion.desktop.cli.adapters_cmd",
    "bastion.desktop.cli.finetune_cmd",
    "bastion.desktop.cli.library_cmd",
    "bastion.desktop.cli.chats_cmd",
    "bastion.desktop.cli.lab_cmd",
    "bastion.desktop.cli.doctor_cmd",
    "bastion.desktop.cli.gui_cmd",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bastion",
        description="Bastion: an offline assistant on local GGUF models and your own documents.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    # Importing bastion.desktop (this package's parent) already made the process offline.
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as error:
            if error.name == name:  # that command group is not built yet
                continue
            raise
        module.register(subparsers)
    parser.set_defaults(commands=frozenset(subparsers.choices))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    guard_this_process()  # before any command runs: refuse and log non-loopback traffic

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:  # plain `bastion`: the window, or the terminal chat without Qt
        args = parser.parse_args(["gui" if "gui" in args.commands else "chat"])
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
