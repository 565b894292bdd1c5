"""How the engine child talks to its parent: JSON messages, and answer text in small batches."""

from __future__ import annotations

import json
import time
from multiprocessing.connection import Connection
from typing import Any


class DeltaBatcher:
    """Sends answer text to the parent at most every ``interval_s`` (the first piece at once).

    Waking the parent for every token costs a context switch that, on a machine with as many
    cores as llama.cpp threads, stalls a compute thread; 25 ms batches look the same on screen.
    """

    def __init__(self, conn: Connection, interval_s: float = 0.025):
        self.conn = conn
        self.interval_s = interval_s
        self.text: list[str] = []
        self.tokens = 0
        self.sent_at: float | None = None

    def __call__(self, text: str, tokens: int) -> None:
        self.text.append(text)
        self.tokens += tokens
        now = time.perf_counter()
        if self.sent_at is None or now - self.sent_at >= self.interval_s:
            self.flush()
            self.sent_at = now

    def flush(self) -> None:
        if self.text:
            send(self.conn, {"type": "delta", "text": "".join(self.text), "tokens": self.tokens})
            self.text, self.tokens = [], 0


def send(conn: Connection, message: dict[str, Any]) -> None:
    """One message to the parent as JSON: data only, so a child subverted by a hostile model
    file cannot make the parent run code (pickle could). ASCII escapes keep any text intact."""
    conn.send_bytes(json.dumps(message).encode("ascii"))
