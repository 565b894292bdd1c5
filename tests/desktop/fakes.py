"""Hand-written fakes implementing the real interfaces (no MagicMock)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bastion.models.engine_types import (
    AdapterUse,
    ChatDelta,
    ChatDone,
    ChatEvent,
    ChatStats,
    LoadInfo,
    Sampling,
)


class FakeEngine:
    """Answers with a scripted reply, word by word; records the prompts it was given."""

    def __init__(self, reply: str = "The answer is 42 [1].", n_ctx: int = 2048):
        self.reply = reply
        self.prompts: list[list[dict[str, str]]] = []
        self.adapters_used: list[tuple[AdapterUse, ...]] = []
        self.cancelled = False
        self._info = LoadInfo(path=Path("/fake.gguf"), name="fake", n_ctx=n_ctx, n_ctx_train=n_ctx,
                              n_threads=1, template_source="gguf", template_warning=None,
                              special_tokens=0, load_s=0.0)

    @property
    def info(self) -> LoadInfo | None:
        return self._info

    def chat(self, messages: Sequence[dict[str, str]], sampling: Sampling | None = None,
             adapters: Sequence[AdapterUse] = ()) -> Iterator[ChatEvent]:
        self.prompts.append([dict(m) for m in messages])
        self.adapters_used.append(tuple(adapters))
        self.cancelled = False
        words = self.reply.split(" ")
        for i, word in enumerate(words):
            if self.cancelled:
                yield ChatDone(ChatStats(generated_tokens=i, finish_reason="cancelled"))
                return
            yield ChatDelta(word if i == 0 else " " + word)
        yield ChatDone(ChatStats(prompt_tokens=10, generated_tokens=len(words), generation_s=0.1,
                                 time_to_first_token_s=0.01))

    def cancel(self) -> None:
        self.cancelled = True

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [max(1, len(t) // 4) for t in texts]


@dataclass
class FakeHit:
    text: str
    path: str
    page: int | None = None
    char_start: int | None = 0
    char_end: int | None = None
    collection: str = "docs"
    score: float = 0.03
    vector_score: float | None = 0.6
    bm25_score: float | None = 5.0


@dataclass
class FakeRetriever:
    hits: list[FakeHit] = field(default_factory=list)
    queries: list[tuple[str, tuple[str, ...] | None, int]] = field(default_factory=list)

    def search(self, query: str, collections: Sequence[str] | None, k: int) -> list[FakeHit]:
        self.queries.append((query, tuple(collections) if collections else None, k))
        return self.hits[:k]
