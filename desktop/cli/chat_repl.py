"""The loop of ``bastion chat``: questions go to the assistant, slash commands never do.

Line editing and history come from the standard ``readline`` module when the input is a terminal
(history in the data folder, private to the user). The chat row is created by the first
question, so a session left before asking anything stores no empty chat.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from bastion.desktop.cli.arg_types import adapter_spec
from bastion.desktop.cli.chat_cmd import MODES

if TYPE_CHECKING:
    from bastion.desktop.app import App
    from bastion.desktop.assistant import Assistant
    from bastion.store.chats import Mode

HISTORY_FILE = "chat_history"
HISTORY_LENGTH = 1000

COMMANDS = {
    "/help": "this list",
    "/mode": "model|docs|both: answer from the model alone, only your documents, or both",
    "/collection": "NAME…: search these collections (none given: show the current ones)",
    "/adapter": "NAME[:SCALE]|off: answer with a LoRA adapter at SCALE in [-4, 4], or without",
    "/regenerate": "answer the last question again",
    "/exit": "leave (Ctrl-D does too)",
}
ALIASES = {"/quit": "/exit", "/q": "/exit"}


@dataclass
class ChatState:
    """What the next question is answered with; ``chat_id`` is None until the first question."""

    mode: Mode
    collections: list[str] = field(default_factory=list)
    adapters: list[tuple[str, float]] = field(default_factory=list)
    chat_id: int | None = None


class TerminalChat:
    """Reads lines, runs slash commands, streams answers. ``run()`` returns the exit status."""

    def __init__(self, app: App, model: str | None, state: ChatState, *,
                 read_line: Callable[[str], str] = input, out: TextIO | None = None,
                 err: TextIO | None = None) -> None:
        self.app = app
        self.model = model
        self.state = state
        self.read_line = read_line
        self.out = out or sys.stdout
        self.err = err or sys.stderr

    # -- the loop ------------------------------------------------------------------------

    def run(self) -> int:
        self.say("Type a question, or /help. Ctrl-C stops an answer; Ctrl-D (or /exit) leaves.")
        while True:
            try:
                line = self.read_line("\nyou> ")
            except (EOFError, KeyboardInterrupt):
                print(file=self.err)
                return 0
            text = line.strip()
            if not text:
                continue
            if text.startswith("/") and not text.startswith("//"):
                if self.command(text) == "exit":
                    return 0
                continue
            # "//…" sends a question that starts with a slash (minus the first one).
            self.ask(text[1:] if text.startswith("//") else text)

    def command(self, text: str) -> str | None:
        """Run one slash command; "exit" when the chat should end."""
        name, _, rest = text.partition(" ")
        name = ALIASES.get(name.lower(), name.lower())
        words = rest.split()
        if name == "/exit":
            return "exit"
        if name == "/help":
            width = max(map(len, COMMANDS))
            for command, help_line in COMMANDS.items():
                self.say(f"  {command:<{width}}  {help_line}")
            self.say("  A line starting with // is sent as a question starting with /.")
        elif name == "/mode":
            self.set_mode(words)
        elif name == "/collection":
            self.set_collections(words)
        elif name == "/adapter":
            self.set_adapter(words)
        elif name == "/regenerate":
            self.regenerate()
        else:
            self.say(f"Unknown command {name}. Commands: {', '.join(COMMANDS)} (/help explains "
                     "them). To ask a question starting with /, type // first.")
        return None

    # -- slash commands ------------------------------------------------------------------

    def set_mode(self, words: list[str]) -> None:
        if len(words) != 1 or words[0] not in MODES:
            self.say(f"Usage: /mode {'|'.join(MODES)} (now: {self.state.mode}).")
            return
        self.state.mode = words[0]
        self._update(mode=self.state.mode)
        self.say(f"Mode: {self.state.mode}.")
        if self.state.mode != "model" and not self.state.collections:
            self.say("No collection chosen: pick one with /collection NAME "
                     "(`bastion library status` lists them).")

    def set_collections(self, names: list[str]) -> None:
        known = [c.name for c in self.app.library.collections()]
        if not names:
            self.say(f"Collections searched: {', '.join(self.state.collections) or 'none'}. "
                     f"Available: {', '.join(known) or 'none (bastion library add NAME FOLDER)'}.")
            return
        unknown = [n for n in names if n not in known]
        if unknown:
            self.say(f"No collection called {', '.join(unknown)}. Available: "
                     f"{', '.join(known) or 'none yet (bastion library add NAME FOLDER)'}.")
            return
        self.state.collections = list(dict.fromkeys(names))
        self._update(collections=self.state.collections)
        self.say(f"Searching {', '.join(self.state.collections)}"
                 + (" (mode model ignores them: /mode docs or /mode both)."
                    if self.state.mode == "model" else "."))

    def set_adapter(self, words: list[str]) -> None:
        if len(words) != 1:
            now = ", ".join(f"{n}:{s:g}" for n, s in self.state.adapters) or "off"
            self.say(f"Usage: /adapter NAME[:SCALE] or /adapter off (now: {now}).")
            return
        if words[0].lower() == "off":
            self.state.adapters = []
            self._update(adapters=[])
            self.say("Answering without an adapter.")
            return
        try:
            name, scale = adapter_spec(words[0])
        except argparse.ArgumentTypeError as error:
            self.say(f"{str(error)[0].upper()}{str(error)[1:]}.")
            return
        from bastion.models.adapter_catalog import AdapterCatalog
        from bastion.models.errors import ModelError

        try:
            AdapterCatalog(self.app.paths.adapters_dir).resolve(name)
        except ModelError as error:
            self.say(str(error))
            return
        self.state.adapters = [(name, scale)]
        self._update(adapters=self.state.adapters)
        self.say(f"Answering with the adapter {name} at scale {scale:g}.")

    def regenerate(self) -> None:
        if self.state.chat_id is None:
            self.say("Nothing to answer again yet: ask a question first.")
            return
        self._stream(lambda assistant, chat_id: assistant.regenerate(chat_id))

    # -- answers -------------------------------------------------------------------------

    def ask(self, question: str) -> None:
        if self.state.chat_id is None:  # the first question creates the chat
            chat = self.app.chats.create_chat(
                mode=self.state.mode, collections=self.state.collections,
                adapters=self.state.adapters)
            self.state.chat_id = chat.id
        self._stream(lambda assistant, chat_id: assistant.ask(chat_id, question))

    def _stream(self, answer: Callable[[Assistant, int], Generator[Any, None, None]]) -> None:
        from bastion.desktop.cli.chat_cmd import stream_answer
        from bastion.desktop.errors import user_message

        assert self.state.chat_id is not None
        assistant = self.app.assistant(self.model, retrieval=self.state.mode != "model")
        events = answer(assistant, self.state.chat_id)
        try:
            stream_answer(events, self.out, self.err)
        except KeyboardInterrupt:
            # Stop the answer, not the program: the engine first, then the generator, which
            # stores what was said as interrupted.
            assistant.cancel()
            self.say("\n[stopped]")
        except Exception as error:  # a refused question ends this answer, not the chat
            message = user_message(error)
            if message is None:
                raise
            self.say(f"bastion: {message}")
        finally:
            events.close()

    def _update(self, **changes: Any) -> None:
        if self.state.chat_id is not None:
            self.app.chats.update_chat(self.state.chat_id, **changes)

    def say(self, text: str) -> None:
        print(text, file=self.err, flush=True)


# -- line editing and history --------------------------------------------------------------


@contextlib.contextmanager
def line_editing(history: Path) -> Iterator[None]:
    """Arrow keys, Ctrl-R and a history kept in ``history`` (0600) while the block runs; tab
    completes slash commands. Without ``readline`` (some builds), plain input."""
    try:
        import readline
    except ImportError:
        yield
        return
    readline.set_history_length(HISTORY_LENGTH)
    with contextlib.suppress(OSError):
        readline.read_history_file(history)
    words = [*COMMANDS, *(f"/mode {m}" for m in MODES), "/adapter off"]

    def complete(text: str, state: int) -> str | None:
        matches = [w for w in words if w.startswith(readline.get_line_buffer().lstrip())]
        if state >= len(matches):
            return None
        # readline replaces only the current word: hand back the rest of it.
        start = len(readline.get_line_buffer().lstrip()) - len(text)
        return matches[state][start:]

    readline.set_completer_delims(" ")
    readline.set_completer(complete)
    readline.parse_and_bind("tab: complete")
    try:
        yield
    finally:
        save_history(history)


def save_history(history: Path) -> None:
    """Write readline's history to ``history``, created private to the user (0600)."""
    import readline

    history.parent.mkdir(parents=True, exist_ok=True)
    # Created 0600 before readline writes (it would create it with the umask's mode).
    os.close(os.open(history, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600))
    os.chmod(history, 0o600)
    with contextlib.suppress(OSError):  # a full disk loses the history, never the chat
        readline.write_history_file(history)
