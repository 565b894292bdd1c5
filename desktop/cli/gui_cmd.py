"""``bastion gui`` (and ``bastion`` alone): open the window, or say how to use the terminal."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

NO_DISPLAY_MESSAGE = """\
bastion: there is no display to open the window on (no DISPLAY or WAYLAND_DISPLAY).
Use Bastion in the terminal instead:
  bastion chat                     an interactive chat
  bastion ask "your question"      one answer, with its sources
  bastion library add NAME FOLDER  index a folder, then: bastion ask --collection NAME "…"
See `bastion --help` for everything else."""

HEADLESS_PLATFORMS = {"offscreen", "minimal", "vnc", "eglfs", "linuxfb"}


def register(subparsers: Any) -> None:
    gui = subparsers.add_parser("gui", help="open the window (the default with no command)")
    gui.add_argument("--no-model", action="store_true",
                     help="do not load the default model at start-up")
    gui.set_defaults(func=run_gui)


def display_available(environ: dict[str, str] | None = None, platform: str | None = None) -> bool:
    """Whether Qt can show a window here, decided before Qt is imported (Qt aborts otherwise)."""
    env = os.environ if environ is None else environ
    platform = sys.platform if platform is None else platform
    qpa = env.get("QT_QPA_PLATFORM", "").split(":")[0].strip().lower()
    if qpa in HEADLESS_PLATFORMS:
        return True
    if platform.startswith("linux") or "bsd" in platform:
        return bool(env.get("DISPLAY") or env.get("WAYLAND_DISPLAY"))
    return True  # Windows and macOS always have a window server for a logged-in user


def missing_qt_libraries(environ: dict[str, str] | None = None,
                         platform: str | None = None) -> list[str]:
    """System libraries Qt's X11 plugin needs that are not installed (Qt would abort)."""
    import ctypes.util

    env = os.environ if environ is None else environ
    platform = sys.platform if platform is None else platform
    qpa = env.get("QT_QPA_PLATFORM", "").split(":")[0].strip().lower()
    if not platform.startswith("linux") or qpa not in ("", "xcb") or env.get("WAYLAND_DISPLAY"):
        return []
    # Qt >= 6.5 refuses to start its xcb plugin without libxcb-cursor.
    return [name for name, package in (("xcb-cursor", "libxcb-cursor0"),)
            if ctypes.util.find_library(name) is None]


def run_gui(args: argparse.Namespace) -> int:
    if not display_available():
        print(NO_DISPLAY_MESSAGE, file=sys.stderr)
        return 1
    missing = missing_qt_libraries()
    if missing:
        print(f"bastion: the window needs the system library {', '.join(missing)} (on Debian "
              "and Ubuntu: apt-get install libxcb-cursor0). Until then, use `bastion chat` or "
              "`bastion ask` in the terminal.", file=sys.stderr)
        return 1
    try:
        from bastion.desktop.gui.application import run
    except ImportError as error:
        print(f"bastion: the window cannot start ({error}). Use `bastion chat` or `bastion ask` "
              "in the terminal instead.", file=sys.stderr)
        return 1
    return run(load_model=not getattr(args, "no_model", False))
