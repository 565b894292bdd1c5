"""``bastion chat`` in a real terminal: Ctrl-C stops the answer, not the program."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import stat
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from bastion.store.chats import ChatStore

pytestmark = pytest.mark.slow


def _take_terminal() -> None:
    # Make the pty the controlling terminal of the new session, so ^C becomes SIGINT.
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class Terminal:
    """A child process on a pseudo-terminal, as a person would run it."""

    def __init__(self, args: list[str], env: dict[str, str]):
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, env=env,
                                     start_new_session=True, preexec_fn=_take_terminal)
        os.close(slave)
        self.output = ""

    def read_until(self, text: str, timeout: float = 120.0) -> str:
        deadline = time.monotonic() + timeout
        while text not in self.output:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"{text!r} never appeared; output so far:\n{self.output}")
            ready, _, _ = select.select([self.master], [], [], min(remaining, 0.5))
            if ready:
                try:
                    self.output += os.read(self.master, 65536).decode("utf-8", "replace")
                except OSError:  # the child closed the terminal
                    break
        return self.output

    def read_more(self, length: int, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.output) < length:
            assert time.monotonic() < deadline, f"output stalled:\n{self.output}"
            ready, _, _ = select.select([self.master], [], [], 0.5)
            if ready:
                self.output += os.read(self.master, 65536).decode("utf-8", "replace")

    def type(self, text: str) -> None:
        os.write(self.master, text.encode())

    def close(self) -> int:
        try:
            return self.proc.wait(30)
        finally:
            os.close(self.master)


def test_ctrl_c_stops_the_answer_and_the_chat_goes_on(bastion_home: Path) -> None:
    env = {**os.environ, "BASTION_HOME": str(bastion_home)}
    term = Terminal([sys.executable, "-m", "bastion.desktop", "chat", "--max-tokens", "1500"], env)
    try:
        term.read_until("you> ")
        term.type("Write a very long story about a dragon who learns to paint.\r")
        before = len(term.output)
        # Wait for the answer to start streaming, then press Ctrl-C (the terminal sends SIGINT
        # to the whole process group, the engine process included).
        term.read_more(before + 200)
        term.type("\x03")
        term.read_until("[stopped]")
        term.read_until("you> ")
        # The engine survived: a second question gets an answer with its speed line.
        mark = len(term.output)
        term.type("Say hi.\r")
        term.read_until("tokens/s")
        assert "tokens/s" in term.output[mark:]
        term.read_until("you> ")
        term.type("/quit\r")
        assert term.close() == 0
    finally:
        if term.proc.poll() is None:
            term.proc.kill()

    # Line editing kept a history of the questions, private to the user.
    history = bastion_home / "chat_history"
    assert stat.S_IMODE(history.stat().st_mode) == 0o600
    assert "Say hi." in history.read_text()

    store = ChatStore(bastion_home / "bastion.db")
    [chat] = store.chats()
    statuses = [(m.role, m.status) for m in store.messages(chat.id)]
    assert statuses[:2] == [("user", "complete"), ("assistant", "interrupted")]
    assert statuses[2:] == [("user", "complete"), ("assistant", "complete")]
