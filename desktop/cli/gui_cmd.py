"""``bastion gui`` (and ``bastion`` alone): open the window, or say how to use the terminal."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from bastion.desktop.system_libs import check_libraries, display_available, uses_xcb

__all__ = ["display_available", "register", "run_gui"]

TERMINAL_USAGE = """\
Use Bastion in the terminal instead:
  bastion chat                     an interactive chat
  bastion ask "your question"      one answer, with its sources
  bastion library add NAME FOLDER  index a folder, then: bastion ask --collection NAME "…"
See `bastion --help` for everything else."""

NO_DISPLAY_MESSAGE = ("bastion: there is no display to open the window on (no DISPLAY or "
                      f"WAYLAND_DISPLAY).\n{TERMINAL_USAGE}")


def register(subparsers: Any) -> None:
    gui = subparsers.add_parser("gui", help="open the window (the default with no command)")
    gui.add_argument("--no-model", action="store_true",
                     help="do not load the default model at start-up")
    gui.set_defaults(func=run_gui)


def cannot_open_message() -> str | None:
    """Why the window cannot open here, with the terminal alternative; None when it can.

    Decided before Qt is imported: Qt aborts the process on a missing display or X11 library.
    """
    if not display_available():
        return NO_DISPLAY_MESSAGE
    if uses_xcb():
        check = check_libraries()
        if check.missing:  # a check that could not run leaves the decision to Qt
            return f"bastion: {check.message()}\n{TERMINAL_USAGE}"
    return None


def run_gui(args: argparse.Namespace) -> int:
    message = cannot_open_message()
    if message is not None:
        print(message, file=sys.stderr)
        return 1
    try:
        from bastion.desktop.gui.application import run
    except ImportError as error:
        print(f"bastion: the window cannot start ({error}).\n{TERMINAL_USAGE}", file=sys.stderr)
        return 1
    return run(load_model=not getattr(args, "no_model", False))
