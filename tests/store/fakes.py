"""Fast, deterministic stand-ins for the embedder and the parse pool (tests only)."""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from bastion.store.parse_pools import FunctionParsePool
from bastion.store.parsers.types import PageText, ParsedDocument, ParseOutcome

# Words, cut every 6 characters (so a 5,000-character "word" is many tokens), or single symbols.
_TOKEN = re.compile(r"\w{1,6}|[^\w\s]")
_WORD = re.compile(r"\w+")


class FakeTokenizer:
    """Regex tokens with two special tokens per sequence, like BERT's [CLS] ... [SEP]."""

    special_tokens = 2

    def offsets(self, text: str) -> list[tuple[int, int]]:
        return [m.span() for m in _TOKEN.finditer(text)]

    def count(self, texts: Sequence[str]) -> list[int]:
        return [len(_TOKEN.findall(t)) + 2 for t in texts]


class HashingEmbedder:
    """Bag of hashed words, L2-normalised: similar texts share words, so share directions."""

    def __init__(self, dimension: int = 64, max_tokens: int = 64, name: str = "hashing", delay_s: float = 0.0) -> None:
        self.id = f"{name}-{dimension}"
        self.dimension = dimension
        self.max_tokens = max_tokens
        self.delay_s = delay_s
        self.embedded = 0  # texts embedded so far (tests check that no work is redone)

    def tokenizer(self) -> FakeTokenizer:
        return FakeTokenizer()

    def embed(self, texts: list[str]) -> NDArray[np.float32]:
        if self.delay_s:
            time.sleep(self.delay_s * len(texts))
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in _WORD.findall(text.lower()):
                h = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")
                out[row, h % self.dimension] += 1.0 if (h >> 32) & 1 else -1.0
            norm = float(np.linalg.norm(out[row]))
            if norm == 0:
                out[row, 0], norm = 1.0, 1.0
            out[row] /= norm
        self.embedded += len(texts)
        return out


def parse_text_file(path: Path) -> ParseOutcome:
    """A minimal in-process parser: UTF-8 text, form feeds split pages."""
    data = path.read_bytes()
    if b"\0" in data:
        return ParseOutcome("skipped", "It looks like a binary file, not text.")
    text = data.decode("utf-8", "replace")
    if "\f" in text:
        pages = [PageText(t, i) for i, t in enumerate(text.split("\f"), start=1)]
    else:
        pages = [PageText(text, None)]
    return ParseOutcome("ok", document=ParsedDocument(pages, title=path.stem, kind="text"))


def text_pool() -> FunctionParsePool:
    return FunctionParsePool(parse_text_file)


class CountingParser:
    """``parse_text_file`` that records what it parsed, with optional hooks per file name."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.hooks: dict[str, object] = {}

    def __call__(self, path: Path) -> ParseOutcome:
        self.calls.append(path.name)
        hook = self.hooks.get(path.name)
        if callable(hook):
            result = hook(path)
            if isinstance(result, ParseOutcome):
                return result
        return parse_text_file(path)

    def pool(self, max_bytes: int | None = None) -> FunctionParsePool:
        return FunctionParsePool(self)


def drain(events: Iterable[Any]) -> list[Any]:
    """Run a sync generator to the end; its events."""
    return list(events)
