"""The CLI's ``App`` with a fake engine and retriever injected where the real ones are made."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from bastion.desktop.app import App
from bastion.desktop.assistant import Assistant
from tests.desktop.fakes import FakeEngine, FakeRetriever


@dataclass
class FakeParts:
    """What ``App.assistant`` hands out; tests read back what the CLI did with them."""

    engine: FakeEngine = field(default_factory=FakeEngine)
    retriever: FakeRetriever = field(default_factory=FakeRetriever)
    loads: list[tuple[str | None, bool]] = field(default_factory=list)


def install(monkeypatch: pytest.MonkeyPatch, parts: FakeParts) -> FakeParts:
    """Make every ``App`` answer with ``parts`` (the chat store and settings stay real)."""

    def assistant(self: App, model: str | None = None, *, retrieval: bool = True) -> Assistant:
        parts.loads.append((model, retrieval))
        return Assistant(parts.engine, self.chats, parts.retriever if retrieval else None,
                         system_prompt=self.settings.system_prompt,
                         sampling=self.settings.sampling())

    loaded: Callable[[App], object] = lambda self: parts.engine.info if parts.loads else None  # noqa: E731
    monkeypatch.setattr(App, "assistant", assistant)
    monkeypatch.setattr(App, "loaded_model", loaded)
    return parts
