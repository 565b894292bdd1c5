"""The document library use case, shared by the CLI and the window.

Opens ``library.db`` in the data folder with the default embedder (all-MiniLM-L6-v2 from its
package, or a collection's own model folder) and parses every file in sandboxed worker processes.
Watch mode treats file-system events as hints and a periodic full sync as the truth.
"""

from __future__ import annotations

import functools
import os
import threading
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bastion.desktop.paths import DataPaths, data_paths
from bastion.desktop.settings import Settings
from bastion.store.embedder import Embedder, default_embedder_folder, shared_embedder
from bastion.store.library import Library
from bastion.store.library_types import SyncProgress
from bastion.store.parse_pools import ParsePoolLike
from bastion.store.parsers.limits import DEFAULT_MAX_BYTES

# Seconds between full reconcile syncs in watch mode (events are only hints).
RECONCILE_INTERVAL_S = 300.0
# Quiet time after the last file-system event before syncing (editors write in bursts).
DEBOUNCE_S = 1.0


def default_embedder(folder: Path | None) -> Embedder:
    """The embedder of ``folder``, or the embedded default model when None: one instance per
    folder and process, shared by every library opened here (the window opens two)."""
    return shared_embedder(folder or default_embedder_folder())


def default_parse_pool(max_bytes: int = DEFAULT_MAX_BYTES) -> ParsePoolLike:
    """One sandboxed parse worker: 60 s and 1 GB per file (the embedder needs the other core),
    reading at most ``max_bytes`` of a file."""
    from bastion.store.parse_worker import ParsePool

    return ParsePool(workers=1, timeout_s=60.0, memory_mb=1024, max_bytes=max_bytes)


def open_library(
    paths: DataPaths | None = None,
    embedder_factory: Callable[[Path | None], Embedder] | None = None,
    parse_pool_factory: Callable[[], ParsePoolLike] | None = None,
) -> Library:
    """Open the user's library (``library.db`` in the data folder).

    The returned ``Library`` belongs to the calling thread; its ``search(query, collections, k)``
    is what the assistant retrieves with. Factories default to ``default_embedder`` and
    ``default_parse_pool`` (looked up at call time, so tests can swap them). With the default
    parse pool, a second one counts chunks ahead of each sync for its ETA (``count_ahead``);
    a pool passed in is not asked to parse anything twice.
    """
    paths = paths or data_paths()
    settings = Settings.load(paths.settings_file)
    limit = settings.max_file_mb * 1024 * 1024
    pool_factory = parse_pool_factory or functools.partial(default_parse_pool, max_bytes=limit)
    return Library(
        paths.library_db,
        embedder_factory or default_embedder,
        pool_factory,
        max_file_bytes=limit,
        index_hidden=settings.index_hidden,
        count_pool_factory=pool_factory if parse_pool_factory is None else None,
    )


def add_collection(
    library: Library, name: str, folders: Sequence[Path], embedder_folder: Path | None = None
) -> None:
    """Create collection ``name`` over ``folders``, or add the folders to it if it exists."""
    known = {c.name for c in library.collections()}
    if name in known:
        for folder in folders:
            library.add_folder(name, folder)
        if embedder_folder is not None:
            library.set_embedder(name, embedder_folder)
    else:
        library.add_collection(name, folders, embedder_folder)


def _under_hidden(root: str, path: str) -> bool:
    """True when ``path`` is a hidden entry below ``root`` or inside one."""
    try:
        parts = Path(path).relative_to(root).parts
    except ValueError:
        return False
    return any(part.startswith(".") for part in parts)


@dataclass(frozen=True)
class WatchEvent:
    """Watch mode is waiting: ``reason`` says why the next sync will run."""

    reason: str
    changed_paths: int = 0


class _ChangeFlag:
    """Set by watchdog's thread, read by the owner thread: paths changed since the last sync."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count = 0
        self._last = 0.0

    def note(self) -> None:
        with self._lock:
            self._count += 1
            self._last = time.monotonic()

    def take_if_quiet(self, quiet_s: float) -> int:
        with self._lock:
            if self._count and time.monotonic() - self._last >= quiet_s:
                count, self._count = self._count, 0
                return count
            return 0


def watch(
    library: Library,
    name: str | None = None,
    cancel: Callable[[], bool] | threading.Event | None = None,
    reconcile_s: float = RECONCILE_INTERVAL_S,
    debounce_s: float = DEBOUNCE_S,
) -> Generator[SyncProgress | WatchEvent, None, None]:
    """Keep collections in sync: sync now, then on every change (within seconds) and periodically.

    A generator in the library's thread: yields sync progress and ``WatchEvent`` while idle;
    ``cancel`` (or closing the generator) stops it.
    """
    from watchdog.events import FileSystemEvent, FileSystemEventHandler
    from watchdog.observers import Observer

    should_stop = cancel.is_set if isinstance(cancel, threading.Event) else (cancel or (lambda: False))
    flag = _ChangeFlag()

    class Handler(FileSystemEventHandler):
        def __init__(self, root: str) -> None:
            super().__init__()
            self.root = root

        def on_any_event(self, event: FileSystemEvent) -> None:
            if event.event_type in ("opened", "closed_no_write"):
                return
            # A commit rewrites hundreds of files under .git: no reason to sync when they
            # are not indexed.
            if not library.index_hidden and _under_hidden(self.root, os.fsdecode(event.src_path)):
                return
            flag.note()

    infos = [library.collection(name)] if name else library.collections()
    observer: Any = Observer()
    for info in infos:
        for root in info.roots:
            if Path(root).is_dir():
                observer.schedule(Handler(root), root, recursive=True)
    observer.daemon = True
    observer.start()
    try:
        next_reconcile = 0.0  # a full sync first
        while not should_stop():
            changed = flag.take_if_quiet(debounce_s)
            if changed or time.monotonic() >= next_reconcile:
                yield WatchEvent("changes" if changed else "reconcile", changed)
                yield from library.sync(name, cancel=should_stop)
                next_reconcile = time.monotonic() + reconcile_s
            else:
                time.sleep(0.2)
                yield WatchEvent("idle")
    finally:
        observer.stop()
        observer.join(timeout=5)
