"""Fakes for the window's tests, injected through the real interfaces (no MagicMock).

``FakeApp`` is a real ``App`` (real chat database, real settings file, real data folder) whose
engine is a scripted ``FakeEngine`` and whose library uses the fast hashing embedder and the
in-process text parser from the store tests.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from bastion.desktop.app import App
from bastion.desktop.paths import DataPaths, data_paths
from bastion.models.engine_types import (
    AdapterUse,
    ChatDelta,
    ChatDone,
    ChatEvent,
    ChatStats,
    LoadInfo,
    Sampling,
)
from bastion.models.errors import ModelLoadFailed
from bastion.models.gguf_file import GGUFInfo, read_gguf_info
from bastion.store.library import Library
from tests.desktop.fakes import FakeEngine
from tests.store.fakes import HashingEmbedder, text_pool


class StreamingEngine(FakeEngine):
    """A ``FakeEngine`` that takes ``delay_s`` per word, can be stopped, and can be (un)loaded."""

    def __init__(self, reply: str = "The answer is **42** [1].", delay_s: float = 0.0,
                 n_ctx: int = 2048) -> None:
        super().__init__(reply, n_ctx)
        self.delay_s = delay_s
        self._stop = threading.Event()
        self.loaded: LoadInfo | None = None
        self.gguf: GGUFInfo | None = None
        self.started = threading.Event()

    @property
    def info(self) -> LoadInfo | None:
        return self.loaded

    @property
    def gguf_info(self) -> GGUFInfo | None:
        """The loaded file's header when it is a real file (adapters are checked against it);
        None for the made-up paths most tests load, so adapters are not checked against them."""
        return self.gguf if self.loaded is not None else None

    def load_as(self, path: Path, n_ctx: int, n_threads: int) -> LoadInfo:
        self.gguf = read_gguf_info(path) if path.is_file() else None
        self.loaded = LoadInfo(path=path, name=path.stem, n_ctx=n_ctx, n_ctx_train=n_ctx,
                               n_threads=n_threads, template_source="gguf", template_warning=None,
                               special_tokens=0, load_s=0.0)
        return self.loaded

    def chat(self, messages: Sequence[dict[str, str]], sampling: Sampling | None = None,
             adapters: Sequence[AdapterUse] = ()) -> Iterator[ChatEvent]:
        self.prompts.append([dict(m) for m in messages])
        self.adapters_used.append(tuple(adapters))
        self._stop.clear()
        self.started.set()
        words = self.reply.split(" ")
        for i, word in enumerate(words):
            if self._stop.is_set():
                yield ChatDone(ChatStats(generated_tokens=i, finish_reason="cancelled"))
                return
            if self.delay_s:
                time.sleep(self.delay_s)
            yield ChatDelta(word if i == 0 else " " + word)
        yield ChatDone(ChatStats(prompt_tokens=10, generated_tokens=len(words), generation_s=0.5,
                                 time_to_first_token_s=0.05))

    def cancel(self) -> None:
        self._stop.set()


def fake_library(paths: DataPaths, delay_s: float = 0.0) -> Library:
    """A real ``Library`` on ``library.db`` with the hashing embedder and in-process parsing;
    ``delay_s`` per embedded text makes indexing slow enough to pause."""
    embedder = HashingEmbedder(delay_s=delay_s)
    return Library(paths.library_db, lambda _folder: embedder, text_pool)


class FakeApp(App):
    """A real ``App`` whose engine is a ``StreamingEngine``; loads are recorded, and model
    names in ``failing`` refuse to load (the previous one stays, as with the real engine)."""

    def __init__(self, engine: StreamingEngine | None = None, paths: DataPaths | None = None,
                 failing: Sequence[str] = ()) -> None:
        super().__init__(paths or data_paths())
        self.fake = engine or StreamingEngine()
        self.failing = set(failing)
        self.loads: list[tuple[str, int]] = []

    def engine(self, model: str | None = None, *, reload: bool = False) -> Any:
        name = model or self.settings.default_model or "smollm2"
        if Path(name).stem in self.failing or name in self.failing:
            raise ModelLoadFailed(f"llama.cpp could not load {name}: unknown tensor type. "
                                  "Choose another model file.")
        info = self.fake.info
        if reload or info is None or info.name != Path(name).stem:
            path = Path(name) if Path(name).is_absolute() else Path(f"/models/{Path(name).stem}.gguf")
            self.fake.load_as(path, self.settings.n_ctx, self.settings.n_threads or 2)
            self.loads.append((Path(name).stem, self.settings.n_ctx))
        return self.fake

    def unload_model(self) -> None:
        self.fake.loaded = None

    def loaded_model(self) -> LoadInfo | None:
        return self.fake.info

    @property
    def library(self) -> Any:
        if self._library is None:
            self._library = fake_library(self.paths)
        return self._library
