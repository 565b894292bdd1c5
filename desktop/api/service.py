"""What the local API answers with: one thread does the model work, in arrival order.

The engine answers one request at a time and the library's SQLite connection belongs to one
thread, so every answer and every embedding runs on the service's own thread. A few requests
may wait their turn (``max_waiting``); more are turned away at once (``Busy``: HTTP 429) rather
than left hanging. A request's events travel back to its HTTP thread through a ``Job``, which
that thread can cancel (the client went away): the answer stops at its next token, or the
engine is told to stop if it is still reading the prompt.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bastion.desktop.answering import AnswerConfig, ChatEngine, answer_once
from bastion.desktop.api.local_protocol import AskRequest, SearchRequest
from bastion.desktop.api.protocol import ChatRequest, EmbeddingRequest
from bastion.desktop.assistant import Assistant
from bastion.desktop.errors import BastionError
from bastion.desktop.grounding import RetrievalPolicy, Retriever
from bastion.models.engine_types import Sampling
from bastion.store.embedder import Embedder

RETRY_AFTER_S = 5


@dataclass
class ServiceParts:
    """The parts requests are served with.

    Args:
        engine: The loaded engine.
        chat_model: The model id clients name (``GET /v1/models``).
        sampling: Defaults for what a request leaves out (max_tokens, temperature…).
        system_prompt: Used when a request sends no system message.
        policy: Which retrieved passages answers use, and how much of each.
        open_retriever: Opens the document library; called on the service thread at the
            first request that searches (the library belongs to the thread that opened it).
        embedder: The library's embedder, for ``POST /v1/embeddings`` (None: not offered).
        embedding_model: The id clients name for it.
        adapter_path: Maps an adapter's name to its file checked against the loaded model.
        grounded_adapters: What an answer from documents uses when the request names no adapter
            (the shipped grounded adapter, as in the window and ``ask``; empty when off).
        make_assistant: For the command line's ``ask`` (the socket only): the chat use case
            with the asked model loaded, over the given library (None: model only), and that
            model's load record. Called on the service thread, which owns the chat database.
        close_on_thread: Run on the service thread when the service closes (what was opened
            there, such as the chat database, is closed there).
        unload_model: Releases the chat model (``bastion models unload``); None: the engine's
            own ``unload()``, when it has one.
        load_model: Loads a model again by its path or ``remote:NAME`` and returns the engine,
            for an API request that comes after an unload (None: the API cannot reload).
    """

    engine: ChatEngine
    chat_model: str
    sampling: Sampling
    system_prompt: str
    policy: RetrievalPolicy = field(default_factory=RetrievalPolicy)
    open_retriever: Callable[[], Retriever] | None = None
    embedder: Embedder | None = None
    embedding_model: str | None = None
    adapter_path: Callable[[str], Path] | None = None
    grounded_adapters: tuple[tuple[str, float], ...] = ()
    make_assistant: Callable[[AskRequest, Any], tuple[Assistant, Any]] | None = None
    close_on_thread: Callable[[], None] | None = None
    unload_model: Callable[[], None] | None = None
    load_model: Callable[[str], ChatEngine] | None = None


class Busy(Exception):
    """The answer thread is busy and enough requests are already waiting."""

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(f"{retry_after_s}")
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class Failed:
    """The work failed with ``error`` (the HTTP thread turns it into a response)."""

    error: BaseException


@dataclass(frozen=True)
class Embedded:
    vectors: np.ndarray
    tokens: int


@dataclass(frozen=True)
class Searched:
    hits: list[Any]
    timings: dict[str, float]


@dataclass(frozen=True)
class Loaded:
    """The model a command line ``ask`` is answered with (its ``LoadInfo``)."""

    info: Any


@dataclass(frozen=True)
class Unloaded:
    """What ``unload`` released: the model's ``LoadInfo`` (None: none was loaded) and the
    memory its engine process held, in bytes (None: not known, e.g. a remote model)."""

    info: Any
    freed_bytes: int | None


class Job:
    """One request's work: events out, cancellation in. ``next_item`` returns None at the end."""

    _END = object()

    def __init__(self, engine: ChatEngine) -> None:
        self._items: queue.Queue[Any] = queue.Queue()
        self._cancelled = threading.Event()
        self._lock = threading.Lock()
        self._running = False
        self._engine = engine

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def cancel(self) -> None:
        """Stop this request's work; safe from any thread, and never touches another request."""
        self._cancelled.set()
        with self._lock:
            if self._running:
                self._engine.cancel()  # reaches a prompt being read, before any token comes

    def next_item(self, timeout_s: float) -> Any:
        """The next event, ``None`` at the end; raises ``queue.Empty`` after ``timeout_s``."""
        item = self._items.get(timeout=timeout_s)
        return None if item is Job._END else item

    # -- the service thread's side -----------------------------------------------------------

    def emit(self, item: Any) -> None:
        self._items.put(item)

    def _set_running(self, running: bool) -> None:
        with self._lock:
            self._running = running

    def _end(self) -> None:
        self._items.put(Job._END)


class AnswerService:
    """Runs chat answers and embeddings on one thread; at most ``max_waiting`` queue."""

    def __init__(self, parts: ServiceParts, max_waiting: int = 4) -> None:
        self.parts = parts
        self.max_waiting = max_waiting
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bastion-api")
        self._lock = threading.Lock()
        self._pending = 0
        self._retriever: Retriever | None = None
        self._jobs: set[Job] = set()
        self._idle_since = time.monotonic()
        self._unloaded: str | None = None  # the model ``unload`` released, to load again

    def chat(self, request: ChatRequest) -> Job:
        """Queue an answer to ``request``. Raises ``Busy`` when the queue is full."""
        return self._submit(lambda job: self._answer(job, request))

    def embed(self, request: EmbeddingRequest) -> Job:
        """Queue embeddings of ``request``'s inputs. Raises ``Busy`` when the queue is full."""
        return self._submit(lambda job: self._embed(job, request))

    def search(self, request: SearchRequest) -> Job:
        """Queue a library search (the command line's ``search``)."""
        return self._submit(lambda job: self._search(job, request))

    def ask(self, request: AskRequest) -> Job:
        """Queue a stored answer in a new chat (the command line's ``ask``)."""
        return self._submit(lambda job: self._ask(job, request))

    def unload(self) -> Job:
        """Queue releasing the chat model; it waits for the answers before it, and the next
        request that needs the model loads it again."""
        return self._submit(self._unload)

    def idle_s(self) -> float:
        """Seconds since the last request ended; 0 while one waits or runs."""
        with self._lock:
            return 0.0 if self._pending else time.monotonic() - self._idle_since

    def close(self) -> None:
        """Stop the work in hand and waiting, and close the library on its own thread."""
        with self._lock:
            jobs = list(self._jobs)
        for job in jobs:
            job.cancel()
        # Waiting jobs were cancelled and end at once; the closing runs after them, on the
        # thread that opened the library and the chat database.
        self._executor.submit(self._close_on_thread)
        self._executor.shutdown(wait=True)

    # -- internals ---------------------------------------------------------------------------

    def _submit(self, work: Callable[[Job], None]) -> Job:
        with self._lock:
            if self._pending >= 1 + self.max_waiting:
                raise Busy(RETRY_AFTER_S)
            self._pending += 1
            job = Job(self.parts.engine)
            self._jobs.add(job)
        try:
            self._executor.submit(self._run, job, work)
        except RuntimeError:  # shutting down
            self._done(job)
            raise Busy(RETRY_AFTER_S) from None
        return job

    def _run(self, job: Job, work: Callable[[Job], None]) -> None:
        try:
            if not job.cancelled:  # a client that left while waiting costs nothing
                job._set_running(True)
                work(job)
        except Exception as error:  # handed to the HTTP thread, which answers with it
            job.emit(Failed(error))
        finally:
            job._set_running(False)
            job._end()
            self._done(job)

    def _done(self, job: Job) -> None:
        with self._lock:
            self._pending -= 1
            self._jobs.discard(job)
            self._idle_since = time.monotonic()

    def _answer(self, job: Job, request: ChatRequest) -> None:
        parts = self.parts
        if parts.engine.info is None and self._unloaded is not None and parts.load_model:
            parts.engine = parts.load_model(self._unloaded)  # released by ``unload``: load again
            self._unloaded = None
        if request.adapters and parts.adapter_path is not None:
            for name, _scale in request.adapters:
                parts.adapter_path(name)  # an unknown or misfit adapter is refused, not skipped
        sampling = parts.sampling
        changes = {key: value for key, value in (("max_tokens", request.max_tokens),
                                                 ("temperature", request.temperature),
                                                 ("top_p", request.top_p), ("seed", request.seed))
                   if value is not None}
        if changes:
            sampling = Sampling(**{**sampling.to_dict(), **changes})
        adapters = request.adapters or (parts.grounded_adapters
                                        if request.mode != "model" and request.collections else ())
        config = AnswerConfig(mode=request.mode, collections=request.collections,
                              adapters=adapters, sampling=sampling,
                              system_prompt=request.system_prompt or parts.system_prompt,
                              policy=parts.policy, stop=request.stop)
        retriever = self._library() if request.collections else None
        with answer_once(request.question, config, parts.engine, retriever,
                         history=request.history, adapter_path=parts.adapter_path) as stream:
            for event in stream:
                job.emit(event)
                if job.cancelled:
                    break  # closing the stream stops the engine at its next token

    def _embed(self, job: Job, request: EmbeddingRequest) -> None:
        embedder = self.parts.embedder
        assert embedder is not None  # the HTTP side checked the model name
        vectors = embedder.embed(list(request.inputs))
        tokens = sum(embedder.tokenizer().count(request.inputs))
        job.emit(Embedded(vectors, int(tokens)))

    def _search(self, job: Job, request: SearchRequest) -> None:
        library: Any = self._library()
        if library is None:
            raise BastionError("This service has no document library.")
        hits = library.search(request.query, list(request.collections) or None, request.k)
        job.emit(Searched(list(hits), dict(getattr(library, "last_timings", {}))))

    def _ask(self, job: Job, request: AskRequest) -> None:
        if self.parts.make_assistant is None:
            raise BastionError("This service does not answer the command line's questions.")
        retriever = self._library() if request.mode != "model" else None
        assistant, info = self.parts.make_assistant(request, retriever)
        job.emit(Loaded(info))
        collections = list(request.collections)
        if retriever is not None and not collections:  # like `search`: every collection
            listed = getattr(retriever, "collections", None)  # the library lists them
            collections = [c.name for c in listed()] if callable(listed) else []
        chat = assistant.chats.create_chat(mode=request.mode, collections=collections,
                                           adapters=list(request.adapters))
        # Closing the stream stops the engine at its next token and stores what was said.
        with contextlib.closing(assistant.ask(chat.id, request.question)) as events:
            for event in events:
                job.emit(event)
                if job.cancelled:
                    break

    def _unload(self, job: Job) -> None:
        engine = self.parts.engine
        info = engine.info
        release = self.parts.unload_model or getattr(engine, "unload", None)
        if info is None or release is None:
            job.emit(Unloaded(None, None))
            return
        freed = _rss_bytes(getattr(engine, "pid", None))
        release()
        name = str(getattr(info, "name", ""))
        self._unloaded = name if name.startswith("remote:") else str(info.path)
        job.emit(Unloaded(info, freed))

    def _library(self) -> Retriever | None:
        if self._retriever is None and self.parts.open_retriever is not None:
            self._retriever = self.parts.open_retriever()
        return self._retriever

    def _close_on_thread(self) -> None:
        if self.parts.close_on_thread is not None:
            with contextlib.suppress(Exception):
                self.parts.close_on_thread()
        close = getattr(self._retriever, "close", None)
        if close is not None:
            with contextlib.suppress(Exception):
                close()
        self._retriever = None


def _rss_bytes(pid: int | None) -> int | None:
    """The resident memory of process ``pid`` (the engine's), or None where unknown."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None
