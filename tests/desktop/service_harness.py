"""The resident service in-process on its Unix socket, for the service tests.

The service runs over the real library (with the hashing embedder), the real chat store and a
fake engine. The fixtures (``folder``, ``library``, ``service`` in ``conftest.py``) index a
two-file folder and start it with ``BASTION_SERVICE`` turned on, so commands take the socket
path a user's commands take.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from typing import Any

from bastion.desktop.api.local_protocol import AskRequest
from bastion.desktop.api.local_socket import socket_path
from bastion.desktop.api.service import AnswerService, ServiceParts
from bastion.desktop.api.socket_server import UnixApiServer
from bastion.desktop.assistant import Assistant
from bastion.desktop.grounding import RetrievalPolicy
from bastion.desktop.library import open_library
from bastion.desktop.paths import data_paths
from bastion.models.engine_types import (
    AdapterUse,
    ChatDelta,
    ChatDone,
    ChatEvent,
    ChatStats,
    Sampling,
)
from bastion.store.chats import ChatStore
from tests.desktop.fakes import FakeEngine

REPLY = "Catamarans have two hulls [1]."


class EndlessEngine(FakeEngine):
    """Streams words until cancelled; says when its answer ended."""

    def __init__(self) -> None:
        super().__init__()
        self.ended = threading.Event()
        self.cancel_requested = threading.Event()

    def chat(self, messages: Sequence[dict[str, str]], sampling: Sampling | None = None,
             adapters: Sequence[AdapterUse] = ()) -> Iterator[ChatEvent]:
        self.cancel_requested.clear()
        words = 0
        try:
            while not self.cancel_requested.wait(0.01):
                words += 1
                yield ChatDelta(" word")
            yield ChatDone(ChatStats(generated_tokens=words, finish_reason="cancelled"))
        finally:
            self.ended.set()

    def cancel(self) -> None:
        self.cancel_requested.set()


class Service:
    """An in-process service on the data folder's socket; ``chats`` is its chat store."""

    def __init__(self, engine: FakeEngine) -> None:
        paths = data_paths()
        self.engine = engine
        self.chats = ChatStore(paths.chats_db, check_same_thread=False)
        self.asked: list[AskRequest] = []

        def make_assistant(request: AskRequest, retriever: Any) -> tuple[Assistant, Any]:
            self.asked.append(request)
            # The hashing embedder's similarities are not a real model's: take every passage.
            policy = RetrievalPolicy(min_similarity=0.0, min_similarity_with_terms=0.0)
            return Assistant(engine, self.chats, retriever, sampling=Sampling(max_tokens=64),
                             policy=policy), engine.info

        parts = ServiceParts(engine=engine, chat_model="fake", sampling=Sampling(),
                             system_prompt="Be brief.",
                             open_retriever=lambda: open_library(paths),
                             make_assistant=make_assistant)
        self.service = AnswerService(parts)
        self.server = UnixApiServer(self.service, socket_path(paths.home))
        self.server.start()
        self.stopped = False

    def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        self.server.stop()
        self.service.close()
        self.chats.close()
