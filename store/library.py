"""The document library: collections of folders, incremental sync and hybrid search.

``Library`` owns one connection to ``library.db`` and belongs to the thread that created it (the
sync pipeline opens its own helper connection). Embedders and parse pools are injected as
factories, so tests run with fakes and the application with the real, sandboxed parts.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from .bm25_arrays import Bm25Arrays
from .db import open_library_db, write_transaction
from .document_fts import stand_in_chunks
from .embedder import Embedder, check_embedder_folder
from .errors import StoreError
from .library_status import collection_status
from .library_types import (
    DOCUMENT_STATES,
    CollectionInfo,
    CollectionStatus,
    DocumentInfo,
    DocumentState,
    SearchHit,
    SyncProgress,
)
from .parse_pools import ParsePoolLike
from .parsers.limits import DEFAULT_MAX_BYTES
from .passages import StoredPassage, find_passage
from .reconcile import NOT_A_FOLDER_ROW, reconcile
from .search import (
    WHOLE_VECTOR_WEIGHT,
    bm25_candidates,
    chunk_documents,
    documents_to_show,
    fuse_documents,
    load_hits,
    rrf_fuse,
)
from .search_thread import HalfResult, SearchThread
from .sync_run import sync_collection
from .vector_index import Matrix, VectorIndex

EmbedderFactory = Callable[[Path | None], Embedder]
ParsePoolFactory = Callable[[], ParsePoolLike]
SearchMode = Literal["hybrid", "bm25", "vector"]
FusionLevel = Literal["whole", "documents", "chunks"]


class Library:
    """Collections of folders indexed into ``library.db``.

    Args:
        db_path: The ``library.db`` file (its folder must exist).
        embedder_factory: Builds the embedder of a folder (None: the default model). Called at
            most once per folder; the embedder must compute ``id`` without loading the model.
        parse_pool_factory: Builds a parse pool for one sync run (closed after it).
        max_file_bytes: Files larger than this are skipped before they are read, with their
            size and the limit in the reason (a setting; pass the same value as the parse
            pool's ``max_bytes``).
        index_hidden: Also index hidden folders and files (``.git``, dotfiles; a setting).
            Off, they are passed over, counted in the status, and leave the index.
        count_pool_factory: Builds a pool that parses files ahead of a sync, at low priority,
            only to count their chunks for the ETA (``count_ahead``). None: not counted; the
            ETA guesses the chunks of files not parsed yet from their bytes.
    """

    def __init__(
        self,
        db_path: Path,
        embedder_factory: EmbedderFactory,
        parse_pool_factory: ParsePoolFactory,
        *,
        max_file_bytes: int = DEFAULT_MAX_BYTES,
        index_hidden: bool = False,
        count_pool_factory: ParsePoolFactory | None = None,
    ) -> None:
        self.db_path = Path(db_path)
        self.max_file_bytes = max_file_bytes
        self.index_hidden = index_hidden
        self.db = open_library_db(self.db_path)
        self._embedder_factory = embedder_factory
        self._parse_pool_factory = parse_pool_factory
        self._count_pool_factory = count_pool_factory
        self._embedders: dict[str | None, Embedder] = {}
        self._vectors = VectorIndex()
        self._searcher: SearchThread | None = None
        self._bm25_arrays = Bm25Arrays(self.db)
        self.last_timings: dict[str, float] = {}

    def close(self) -> None:
        """Close the database connection (and the search thread with its own)."""
        if self._searcher is not None:
            self._searcher.close()
            self._searcher = None
        self._bm25_arrays.close()
        self.db.close()

    def __enter__(self) -> Library:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- collections --------------------------------------------------------------------

    def add_collection(
        self, name: str, paths: Sequence[Path | str], embedder_folder: Path | None = None
    ) -> CollectionInfo:
        """Create collection ``name`` over folders ``paths`` (indexed by the next sync).

        Raises:
            StoreError: the name is taken or empty, a folder does not exist, or the embedder
                folder is refused.
        """
        name = name.strip()
        if not name:
            raise StoreError("A collection needs a name.")
        if self._collection_row(name) is not None:
            raise StoreError(f"A collection named {name!r} exists already. Choose another name.")
        roots = [_checked_root(p) for p in paths]
        folder = str(check_embedder_folder(embedder_folder)) if embedder_folder else None
        with write_transaction(self.db):
            cursor = self.db.conn.execute(
                "INSERT INTO collections (name, embedder_folder, created) VALUES (?, ?, ?)",
                [name, folder, time.time()],
            )
            for root in roots:
                self._insert_folder(int(cursor.lastrowid or 0), root)
        return self.collection(name)

    def add_folder(self, name: str, path: Path | str) -> CollectionInfo:
        """Add a folder to an existing collection."""
        row = self._require(name)
        root = _checked_root(path)
        with write_transaction(self.db):
            self._insert_folder(row[0], root)
        return self.collection(name)

    def set_embedder(self, name: str, embedder_folder: Path | None) -> CollectionInfo:
        """Choose another embedder for a collection; the next sync rebuilds it."""
        row = self._require(name)
        folder = str(check_embedder_folder(embedder_folder)) if embedder_folder else None
        with write_transaction(self.db):
            self.db.execute("UPDATE collections SET embedder_folder = ? WHERE id = ?", [folder, row[0]])
        return self.collection(name)

    def remove_collection(self, name: str) -> None:
        """Forget a collection and its index (the files themselves are untouched)."""
        row = self._require(name)
        with write_transaction(self.db):
            self.db.execute("DELETE FROM collections WHERE id = ?", [row[0]])
        self._vectors.invalidate(row[0])

    def collections(self) -> list[CollectionInfo]:
        """All collections, by name."""
        rows = self.db.execute("SELECT name FROM collections ORDER BY name").fetchall()
        return [self.collection(r[0]) for r in rows]

    def collection(self, name: str) -> CollectionInfo:
        """One collection by name (StoreError if there is none)."""
        row = self._require(name)
        roots = [
            r[0]
            for r in self.db.execute(
                "SELECT root FROM folders WHERE collection_id = ? ORDER BY id", [row[0]]
            ).fetchall()
        ]
        return CollectionInfo(
            id=row[0], name=row[1], roots=roots, embedder_folder=row[2], embedder_id=row[3],
            dimension=row[4], chunker_version=row[5], created=row[7],
        )

    def status(self, name: str | None = None) -> list[CollectionStatus]:
        """Counts per document state, chunk totals, failures with reasons, unreadable folders.

        ``CollectionStatus.warnings`` sums up the folders the last sync could not read ("3
        folders could not be read: permission denied"); ``unreadable_folders`` lists them.
        """
        infos = [self.collection(name)] if name else self.collections()
        result = []
        for info in infos:
            try:
                current_id: str | None = self._embedder(info.embedder_folder).id
            except StoreError:  # its model folder is gone: it cannot be searched by meaning
                current_id = None
            result.append(collection_status(self.db, info, current_id))
        return result

    def documents(
        self, name: str, states: Sequence[DocumentState] | None = None
    ) -> list[DocumentInfo]:
        """The documents (files) of a collection, optionally only those in ``states``, by path.

        Folders that could not be read are not documents: ``status()`` reports them.

        Raises:
            StoreError: There is no collection ``name``, or a state is not one of
                ``DOCUMENT_STATES``.
        """
        row = self._require(name)
        unknown = [s for s in states or () if s not in DOCUMENT_STATES]
        if unknown:
            raise StoreError(
                f"There is no file state {unknown[0]!r}. Choose one of: "
                f"{', '.join(DOCUMENT_STATES)}."
            )
        sql = (
            "SELECT id, path, state, reason, attempts, size, mtime_ns, sha256, kind, pages, "
            f"chunk_count, indexed_at FROM documents WHERE collection_id = ? AND {NOT_A_FOLDER_ROW}"
        )
        params: list[object] = [row[0]]
        if states:
            sql += f" AND state IN ({','.join('?' * len(states))})"
            params.extend(states)
        return [
            DocumentInfo(
                id=r[0], collection=name, path=r[1], state=r[2], reason=r[3], attempts=r[4],
                size=r[5], mtime_ns=r[6], sha256=r[7], kind=r[8], pages=r[9], chunk_count=r[10],
                indexed_at=r[11],
            )
            for r in self.db.execute(sql + " ORDER BY path", params).fetchall()
        ]

    def passage(
        self, path: str, page: int | None, char_start: int, char_end: int, collection: str = ""
    ) -> StoredPassage | None:
        """A cited passage with the text around it, read from the index (None: no collection
        holds ``path`` any more). See ``passages.find_passage``."""
        return find_passage(self.db, path, page, char_start, char_end, collection)

    # ---- sync ---------------------------------------------------------------------------

    def sync(
        self, name: str | None = None, cancel: Callable[[], bool] | threading.Event | None = None
    ) -> Iterator[SyncProgress]:
        """Bring one collection (or all) up to date with the disk.

        A generator: each yield is a progress event and a point where ``cancel`` is checked
        (closing the generator stops as cleanly). Work already committed is never redone.
        """
        should_stop = _cancel_callable(cancel)
        names = [name] if name else [c.name for c in self.collections()]
        for collection_name in names:
            info = self.collection(collection_name)
            stopped = yield from self._sync_one(info, should_stop)
            if stopped:
                return

    def _sync_one(
        self, info: CollectionInfo, should_stop: Callable[[], bool]
    ) -> Generator[SyncProgress, None, bool]:
        return (yield from sync_collection(
            self.db, self.db_path, info, self._embedder(info.embedder_folder),
            self._parse_pool_factory, should_stop,
            reconcile=reconcile,  # looked up here, so tests can wrap the scan
            max_file_bytes=self.max_file_bytes, index_hidden=self.index_hidden,
            on_rebuild=lambda: self._vectors.invalidate(info.id),
            counts=lambda: self.status(info.name)[0].counts,
            count_pool_factory=self._count_pool_factory,
        ))

    # ---- search -------------------------------------------------------------------------

    def search(
        self,
        query: str,
        collections: Sequence[str] | None = None,
        k: int = 10,
        mode: SearchMode = "hybrid",
        *,
        bm25_weight: float = 1.0,
        vector_weight: float = 1.0,
        fusion: FusionLevel = "whole",
    ) -> list[SearchHit]:
        """Hybrid search: BM25 and vector candidates (~50 each) fused by RRF, deduplicated.

        Args:
            query: Free text (never interpreted as FTS syntax).
            collections: Names to search (None: all).
            k: How many hits to return.
            mode: "hybrid", or one component alone (for measurements).
            bm25_weight: Weight of the BM25 lists in the fusion (weighted RRF).
            vector_weight: Weight of the vector list in the fusion ("whole" multiplies its own
                1.5 by it).
            fusion: "whole": documents ranked by three lists — chunk BM25, whole-document BM25
                (``document_fts``) and chunk vectors, weighted 1 : 1 : 1.5 — a document ranking
                where its best chunk ranks in each chunk list (see ``fuse_documents``);
                "documents": the same without the whole-document list, equal weights (the
                earlier default); "chunks": RRF of the chunk lists alone. The last two are kept
                for measurements.

        Returns:
            Up to ``k`` hits, best first. ``last_timings`` holds the query embedding time
            (``embed_ms``) apart from the search itself (``search_ms``).
        """
        infos = [self.collection(n) for n in collections] if collections else self.collections()
        started = time.perf_counter()
        plan: list[tuple[Matrix, np.ndarray]] = []
        embed_s = 0.0
        query_vectors: dict[int, np.ndarray] = {}
        if mode != "bm25" and query.strip():
            plan, embed_s, query_vectors = self._vector_plan(query, infos)
        # The vector scan, its rescoring and the whole-document BM25 run on the search thread
        # while chunk BM25 runs here: SQLite and numpy release the GIL, so the halves overlap
        # on two cores instead of adding up (``search_thread``).
        collection_ids = [i.id for i in infos]
        whole = mode == "hybrid" and fusion == "whole" and bool(query.strip())
        half = self._search_thread().submit(plan, query, collection_ids, whole) if plan or whole else None
        t0 = time.perf_counter()
        bm25 = (
            bm25_candidates(self.db, query, collection_ids, arrays=self._bm25_arrays)
            if mode != "vector"
            else []
        )
        t1 = time.perf_counter()
        found = half.result() if half is not None else HalfResult()
        vector, whole_docs = found.vector, found.documents
        t2 = time.perf_counter()
        if fusion == "whole":
            owners = chunk_documents(self.db, [c for c, _ in bm25] + [c for c, _ in vector])
            vector_w = vector_weight * WHOLE_VECTOR_WEIGHT
            # Only documents that will be shown need a chunk to show them by.
            needed = documents_to_show(
                bm25, vector, owners, whole_docs, k,
                bm25_weight=bm25_weight, vector_weight=vector_w, whole_weight=bm25_weight,
            )
            fused = fuse_documents(
                bm25, vector, owners, bm25_weight=bm25_weight, vector_weight=vector_w,
                whole=whole_docs, whole_weight=bm25_weight,
                stand_ins=stand_in_chunks(self.db, query, needed, query_vectors),
            )
        elif fusion == "documents":
            owners = chunk_documents(self.db, [c for c, _ in bm25] + [c for c, _ in vector])
            fused = fuse_documents(
                bm25, vector, owners, bm25_weight=bm25_weight, vector_weight=vector_weight
            )
        else:
            fused = rrf_fuse(bm25, vector, bm25_weight=bm25_weight, vector_weight=vector_weight)
        hits = load_hits(self.db, fused, k)
        t3 = time.perf_counter()
        self.last_timings = {
            "bm25_ms": (t1 - t0 + found.whole_s) * 1000,  # both BM25 lists, each on its thread
            "whole_bm25_ms": found.whole_s * 1000,
            "embed_ms": embed_s * 1000,
            # Loading a stale matrix, the scan on the search thread and the exact rescoring.
            "vector_ms": (t0 - started - embed_s + found.scan_s + found.rescore_s) * 1000,
            # Waiting here for the search thread after chunk BM25 was done.
            "wait_ms": (t2 - t1) * 1000,
            "search_ms": (t3 - started - embed_s) * 1000,
        }
        return hits

    def _vector_plan(
        self, query: str, infos: Sequence[CollectionInfo]
    ) -> tuple[list[tuple[Matrix, np.ndarray]], float, dict[int, np.ndarray]]:
        """(matrix, query vector) per searchable collection, the query embedding time, and the
        query vector of each searchable collection by id."""
        plan: list[tuple[Matrix, np.ndarray]] = []
        by_collection: dict[int, np.ndarray] = {}
        query_vectors: dict[str, np.ndarray] = {}
        embed_s = 0.0
        for info in infos:
            row = self.db.execute(
                "SELECT embedder_id, dimension, chunker_version, generation FROM collections "
                "WHERE id = ?",
                [info.id],
            ).fetchone()
            embedder = self._embedder(info.embedder_folder)
            # Never compare vectors of two models: a collection awaiting its rebuild is BM25-only.
            if row is None or row[0] != embedder.id or row[1] is None:
                continue
            if embedder.id not in query_vectors:
                t = time.perf_counter()
                query_vectors[embedder.id] = embedder.embed([query])[0]
                embed_s += time.perf_counter() - t
            plan.append((self._vectors.matrix(self.db, info.id, row[3], row[1]), query_vectors[embedder.id]))
            by_collection[info.id] = query_vectors[embedder.id]
        return plan, embed_s, by_collection

    def _search_thread(self) -> SearchThread:
        if self._searcher is None:
            self._searcher = SearchThread(self.db_path)
        return self._searcher

    # ---- internals ----------------------------------------------------------------------

    def _embedder(self, folder: str | None) -> Embedder:
        if folder not in self._embedders:
            self._embedders[folder] = self._embedder_factory(Path(folder) if folder else None)
        return self._embedders[folder]

    def _collection_row(self, name: str) -> tuple[object, ...] | None:
        row = self.db.execute(
            "SELECT id, name, embedder_folder, embedder_id, dimension, chunker_version, "
            "generation, created FROM collections WHERE name = ?",
            [name],
        ).fetchone()
        return tuple(row) if row else None

    def _require(self, name: str) -> tuple[int, str, str | None, str | None, int | None, str | None, int, float]:
        row = self._collection_row(name)
        if row is None:
            known = ", ".join(c[0] for c in self.db.execute("SELECT name FROM collections").fetchall())
            hint = f" Known: {known}." if known else " Create one with `bastion library add`."
            raise StoreError(f"There is no collection named {name!r}.{hint}")
        return row  # type: ignore[return-value]

    def _insert_folder(self, collection_id: int, root: str) -> None:
        self.db.execute(
            "INSERT OR IGNORE INTO folders (collection_id, root, root_bytes) VALUES (?, ?, ?)",
            [collection_id, os.fsencode(root).decode("utf-8", "replace"), os.fsencode(root)],
        )


def _checked_root(path: Path | str) -> str:
    root = os.path.abspath(os.fspath(path))
    if not os.path.isdir(root):
        raise StoreError(f"The folder {root} does not exist or is not a folder. Check the path.")
    return root


def _cancel_callable(cancel: Callable[[], bool] | threading.Event | None) -> Callable[[], bool]:
    if cancel is None:
        return lambda: False
    if isinstance(cancel, threading.Event):
        return cancel.is_set
    return cancel

