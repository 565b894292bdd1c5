"""Jobs that run in the window's background threads, over the same use cases as the CLI.

Every function here takes ``(context, job)`` first and runs in a worker thread (see
``workers.py``): the core thread's context is a ``CoreSession`` (the ``App`` that owns the engine
and the chat database), the library thread's is a ``Library`` with its own connection, and the
files thread's is a model ``Catalog``. Nothing here imports Qt; results are plain records.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from bastion.desktop import configuration
from bastion.desktop.settings import Settings
from bastion.models.engine_types import LoadInfo

if TYPE_CHECKING:
    from bastion.desktop.app import App
    from bastion.desktop.assistant import AnswerDone, AssistantEvent
    from bastion.desktop.grounding import Mode
    from bastion.models.catalog import Catalog, ModelEntry, VerifyResult
    from bastion.store.chats import Chat, Message, Source
    from bastion.store.library import Library
    from bastion.store.library_types import (
        CollectionStatus,
        DocumentInfo,
        DocumentState,
        SyncProgress,
    )

AnswerKind = Literal["ask", "regenerate", "edit"]


class JobLike(Protocol):
    """What a task needs from its ``Job``: a cancel flag, a gentle canceller and progress."""

    @property
    def cancelled(self) -> bool: ...

    def set_canceller(self, canceller: Any) -> None: ...

    def report(self, value: object) -> None: ...


@dataclass
class CoreSession:
    """The core thread's context: the ``App`` plus which model the window has chosen.

    ``active_model`` is a model spec (id or path; None = the settings' default). A load that
    fails leaves it unchanged, so the previous model stays the one answers come from.
    """

    app: App
    active_model: str | None = None


@dataclass(frozen=True)
class CoreSnapshot:
    """What the window needs at start-up, read in the core thread."""

    settings: Settings
    chats: list[Chat]
    home: Path
    log_dir: Path


@dataclass(frozen=True)
class ModelLoading:
    """A load started (shown as "Loading model…")."""

    name: str


@dataclass(frozen=True)
class ChatSynced:
    """The chat as stored after an answer, so the window learns the new messages' ids."""

    chat: Chat
    messages: list[Message] = field(default_factory=list)


@dataclass(frozen=True)
class ByteProgress:
    """Bytes done of a copy or hash (throttled)."""

    done: int
    total: int


# -- core thread ---------------------------------------------------------------------------------


def snapshot(session: CoreSession, job: JobLike) -> CoreSnapshot:
    """Settings, chats and folders for the first paint."""
    app = session.app
    return CoreSnapshot(dataclasses.replace(app.settings), app.chats.chats(), app.paths.home,
                        app.paths.logs_dir)


def load_model(session: CoreSession, job: JobLike, spec: str | None = None, *,
               keep_active: bool = False, reload: bool = False
               ) -> Generator[ModelLoading, None, LoadInfo | None]:
    """Load ``spec`` (None: the active model, else the settings' default) and make it active.

    On failure the previous model stays loaded and active (the engine swaps only once the new
    one has loaded); the error reaches the window as the job's ``errored`` signal.
    """
    wanted = spec if spec is not None else session.active_model
    yield ModelLoading(_model_name(session, wanted))
    info = session.app.engine(wanted, reload=reload).info
    if not keep_active:
        session.active_model = wanted
    return info


def _model_name(session: CoreSession, spec: str | None) -> str:
    """The name of the file a spec loads (the catalog's ``model_name``), for "Loading …"."""
    from bastion.desktop.app import resolve_model_path
    from bastion.models.catalog import model_name

    try:
        path = resolve_model_path(spec or session.app.settings.default_model,
                                  session.app.paths.models_dir)
    except Exception:  # the load itself reports what is wrong
        return model_name(Path(spec)) if spec else "the default model"
    return model_name(path)


def unload_model(session: CoreSession, job: JobLike) -> None:
    """Free the loaded model's memory (the next question loads it again)."""
    session.app.unload_model()


def loaded_model(session: CoreSession, job: JobLike) -> LoadInfo | None:
    return session.app.loaded_model()


def list_chats(session: CoreSession, job: JobLike, search: str | None = None) -> list[Chat]:
    return session.app.chats.chats(search or None)


def create_chat(session: CoreSession, job: JobLike, mode: Mode = "model",
                collections: Sequence[str] = (), adapters: Sequence[tuple[str, float]] = ()
                ) -> Chat:
    return session.app.chats.create_chat(mode=mode, collections=collections, adapters=adapters)


def update_chat(session: CoreSession, job: JobLike, chat_id: int, *, title: str | None = None,
                mode: Mode | None = None, collections: Sequence[str] | None = None,
                adapters: Sequence[tuple[str, float]] | None = None) -> Chat:
    """Change what is given of the chat's title, mode, collections and LoRA adapters
    (name, scale)."""
    return session.app.chats.update_chat(chat_id, title=title, mode=mode, collections=collections,
                                         adapters=adapters)


def delete_chat(session: CoreSession, job: JobLike, chat_id: int) -> int:
    session.app.chats.delete_chat(chat_id)
    return chat_id


def mark_answer(session: CoreSession, job: JobLike, message_id: int, good: bool) -> Message:
    """Mark an answer good, or take the mark back."""
    return session.app.chats.mark_good(message_id, good)


def chat_messages(session: CoreSession, job: JobLike, chat_id: int) -> ChatSynced:
    chats = session.app.chats
    return ChatSynced(chats.chat(chat_id), chats.messages(chat_id))


def answer(session: CoreSession, job: JobLike, chat_id: int, kind: AnswerKind,
           text: str = "", message_id: int | None = None
           ) -> Generator[AssistantEvent | ChatSynced | ModelLoading, None, AnswerDone | None]:
    """Stream an answer (ask, regenerate or edit-and-resend), then the chat as stored.

    Stop reaches the engine through the job's canceller; the assistant then stores what was
    generated as an interrupted answer and ends normally.
    """
    app = session.app
    chat = app.chats.chat(chat_id)
    if app.loaded_model() is None:
        yield ModelLoading(_model_name(session, session.active_model))
    assistant = app.assistant(session.active_model, retrieval=chat.mode != "model")
    job.set_canceller(assistant.cancel)
    if kind == "ask":
        events = assistant.ask(chat_id, text)
    elif kind == "regenerate":
        events = assistant.regenerate(chat_id)
    else:
        if message_id is None:
            raise ValueError("edit needs the id of the question to replace")
        events = assistant.edit_and_resend(chat_id, message_id, text)
    from bastion.desktop.assistant import AnswerDone

    done: AnswerDone | None = None
    for event in events:
        if isinstance(event, AnswerDone):
            done = event
        elif job.cancelled:
            # A Stop that came before generation began (during retrieval) was addressed to no
            # request yet: say it again now that one is running.
            assistant.cancel()
        yield event
    yield ChatSynced(app.chats.chat(chat_id), app.chats.messages(chat_id))
    return done


def source_preview(session: CoreSession, job: JobLike, source: Source) -> Any:
    """The cited passage of ``source`` in full, with the text around it (a ``SourcePreview``),
    read from the core thread's library connection."""
    from bastion.desktop.source_preview import preview_source

    return preview_source(session.app.library, source)


def warm_up_retrieval(session: CoreSession, job: JobLike) -> bool:
    """Load the query embedder now if any collection exists, so the first documents-mode
    question does not wait for it (and its one-time import pause happens at start-up)."""
    library = session.app.library
    if not library.collections():
        return False
    library.search("warm up", None, 1)
    return True


def save_settings(session: CoreSession, job: JobLike, settings: Settings
                  ) -> Generator[ModelLoading, None, LoadInfo | None]:
    """Persist ``settings`` and apply them: sampling and the system prompt at once (every
    answer reads them), context, threads and GPU layers by reloading the loaded model."""
    app = session.app
    # Checked and saved by the use case, which keeps the default model (chosen on the models page).
    settings = configuration.save_settings(app.settings, app.paths.settings_file, settings)
    reload = settings.load_options() != app.settings.load_options()
    app.settings = dataclasses.replace(settings)
    info = app.loaded_model()
    if reload and info is not None:
        yield from load_model(session, job, str(info.path), keep_active=True, reload=True)
    return app.loaded_model()


def set_default_model(session: CoreSession, job: JobLike, spec: str | None) -> Settings:
    """Make ``spec`` (a catalog id; None = the embedded model) the model Bastion starts with."""
    app = session.app
    app.settings = configuration.choose_default_model(app.settings, app.paths.settings_file,
                                                      app.paths.models_dir, spec)
    return dataclasses.replace(app.settings)


# -- files thread (model catalog) --------------------------------------------------------------


class Throttle:
    """Passes progress on at most every ``interval_s`` (and always the last step)."""

    def __init__(self, job: JobLike, interval_s: float = 0.1) -> None:
        self.job = job
        self.interval_s = interval_s
        self._last = 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if done >= total or now - self._last >= self.interval_s:
            self._last = now
            self.job.report(ByteProgress(done, total))


def catalog_entries(catalog: Catalog, job: JobLike, hash_files: bool = False) -> list[ModelEntry]:
    """Every model with its metadata; ``hash_files`` computes missing SHA-256 values."""
    return list(catalog.entries(hash_files=hash_files, progress=Throttle(job) if hash_files else None))


def verify_model(catalog: Catalog, job: JobLike, entry_id: str) -> VerifyResult:
    return catalog.verify(entry_id, Throttle(job))


def import_model_file(catalog: Catalog, job: JobLike, source: Path) -> ModelEntry:
    """Copy ``source`` into the models folder, verified, reporting ``ByteProgress``."""
    from bastion.models.model_import import import_model

    return import_model(source, catalog.models_dir, progress=Throttle(job))


def open_document(catalog: Any, job: JobLike, path: str, page: int | None, roots: Sequence[str],
                  opener: Any = None) -> Any:
    """Open a collection's file at ``page`` where a viewer can (``open_document.OpenPlan``);
    on the files thread, since finding a viewer asks the desktop and the file may sit on a slow
    drive. ``opener`` replaces ``open_document.open_document`` (tests)."""
    from bastion.desktop import open_document as opening

    return (opener or opening.open_document)(path, page, roots)


# -- library thread ----------------------------------------------------------------------------


def library_status(library: Library, job: JobLike) -> list[CollectionStatus]:
    """Status (counts, failures) of every collection."""
    return list(library.status())


def warm_up_library(library: Library, job: JobLike) -> bool:
    """Load the indexing embedder now if any collection exists (see ``warm_up_retrieval``).

    Without collections, still import sentence-transformers (and torch): the import holds the
    interpreter for up to a second, which the window would feel in the middle of a first sync.
    """
    if not library.collections():
        import sentence_transformers  # noqa: F401

        return False
    library.search("warm up", None, 1)
    return True


def add_folder(library: Library, job: JobLike, name: str, folder: Path) -> str:
    """Create collection ``name`` over ``folder``, or add ``folder`` to it."""
    from bastion.desktop.library import add_collection

    add_collection(library, name, [folder])
    return name


def remove_collection(library: Library, job: JobLike, name: str) -> str:
    library.remove_collection(name)
    return name


# How often, at most, a sync also reports the library's status and the files of the collection
# it indexes (``SyncSnapshot``); reading them never takes more than 1/SNAPSHOT_COST_SHARE of it.
SNAPSHOT_EVERY_S = 3.0
SNAPSHOT_COST_SHARE = 20


@dataclass(frozen=True)
class SyncSnapshot:
    """The library as it stands during a sync: every collection's status and the files of the
    collection being indexed (``collection``). The sync's own thread reads them between two
    progress events, since that thread is busy for the whole sync and the page's counts and
    file list would otherwise wait for its end."""

    collection: str
    statuses: list[CollectionStatus]
    documents: list[DocumentInfo]


def sync_collection(
    library: Library, job: JobLike, name: str | None
) -> Iterator[SyncProgress | SyncSnapshot]:
    """Index a collection; each progress event is a cancel point (pause and cancel stop here;
    committed work is kept, so the next sync resumes where this one stopped). A
    ``SyncSnapshot`` comes when indexing starts, then every ``SNAPSHOT_EVERY_S`` or more."""
    interval, last, shown = SNAPSHOT_EVERY_S, 0.0, None
    for event in library.sync(name, cancel=lambda: job.cancelled):
        yield event
        if event.phase == "scan":
            shown = None  # a collection's scan adds its files: show them once it is done
        if event.phase != "index" or not event.files_total:
            continue
        now = time.monotonic()
        if shown != event.collection or now - last >= interval:
            shown = event.collection
            yield SyncSnapshot(event.collection, list(library.status()),
                               list(library.documents(event.collection)))
            last = time.monotonic()
            interval = max(SNAPSHOT_EVERY_S, SNAPSHOT_COST_SHARE * (last - now))


def collection_documents(
    library: Library, job: JobLike, name: str, states: Sequence[DocumentState] | None = None
) -> list[DocumentInfo]:
    """The files of collection ``name`` in ``states`` (None: every file)."""
    return list(library.documents(name, list(states) if states else None))
