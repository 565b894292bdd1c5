"""Records the library hands out: collections, documents, status, sync progress, search hits."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

DocumentState = Literal[
    "pending", "in_progress", "indexed", "skipped", "failed", "quarantined", "unavailable"
]
DOCUMENT_STATES: tuple[DocumentState, ...] = (
    "pending", "in_progress", "indexed", "skipped", "failed", "quarantined", "unavailable",
)

# A document that crashed the parser (or the app while it was being parsed) this many times is
# quarantined instead of being retried forever.
MAX_CRASHES = 3


@dataclass(frozen=True)
class CollectionInfo:
    """A named set of folders indexed with one embedder and one chunker version."""

    id: int
    name: str
    roots: list[str]
    embedder_folder: str | None
    embedder_id: str | None
    dimension: int | None
    chunker_version: str | None
    created: float


@dataclass(frozen=True)
class DocumentInfo:
    """One file of a collection and where it stands."""

    id: int
    collection: str
    path: str
    state: DocumentState
    reason: str
    attempts: int
    size: int | None
    mtime_ns: int | None
    sha256: str | None
    kind: str | None
    pages: int | None
    chunk_count: int
    indexed_at: float | None


@dataclass(frozen=True)
class Failure:
    """A document (or a folder) that did not get indexed, and why, in words a person can act on."""

    path: str
    state: DocumentState
    reason: str


@dataclass(frozen=True)
class FolderWarning:
    """A folder of a collection that the last sync could not read.

    ``cause`` is the operating system's word for why ("permission denied"); ``reason`` is the
    whole sentence, as in the failures.
    """

    path: str
    cause: str
    reason: str


@dataclass(frozen=True)
class CollectionStatus:
    """Counts per state and the failures of one collection.

    ``counts`` count documents (files) only. ``failures`` lists every file, and every folder,
    that did not get indexed, with its reason. ``unreadable_folders`` are the folders the last
    sync could not read (their files are missing from the index); ``warnings`` says so in one
    sentence per cause. ``hidden_note`` says how many hidden folders and files were passed over.
    """

    name: str
    roots: list[str]
    counts: dict[str, int]
    chunks: int
    failures: list[Failure]
    embedder_id: str | None
    stale: bool = False  # the embedder or chunker changed: the next sync rebuilds it
    unreadable_folders: list[FolderWarning] = field(default_factory=list)
    # Hidden entries the last sync passed over (``.git``, dotfiles); a folder's contents are
    # not counted, since a hidden folder is never listed.
    hidden_folders: int = 0
    hidden_files: int = 0

    @property
    def hidden_note(self) -> str | None:
        """ "12 hidden folders and 3 hidden files skipped", or None when nothing was hidden."""
        parts = [
            f"{count} hidden {what}{'s' if count != 1 else ''}"
            for count, what in ((self.hidden_folders, "folder"), (self.hidden_files, "file"))
            if count
        ]
        return f"{' and '.join(parts)} skipped" if parts else None

    @property
    def warnings(self) -> list[str]:
        """One sentence per cause, e.g. "3 folders could not be read: permission denied"."""
        by_cause: dict[str, int] = {}
        for folder in self.unreadable_folders:
            by_cause[folder.cause] = by_cause.get(folder.cause, 0) + 1
        return [
            f"{count} folder{'s' if count != 1 else ''} could not be read: {cause}"
            for cause, count in sorted(by_cause.items(), key=lambda item: (-item[1], item[0]))
        ]


SyncAction = Literal["loading", "reading", "parsing", "embedding"]


@dataclass(frozen=True)
class SyncProgress:
    """A progress event of ``Library.sync``; every event is also a cancel point.

    ``phase``: "scan" (walking folders), "index" (parsing/embedding), "done" (``finished``).
    ``chunks``: while indexing, the chunks embedded so far (a long document moves it batch by
    batch); in "done", the chunks stored.

    Work is measured in bytes: ``bytes_total`` is the size of the files this sync looks at
    (files skipped unread as too large weigh nothing), ``bytes_done`` how much of it is done —
    half of a file's bytes when its parse comes back, the other half as its chunks are
    embedded. ``eta_s`` is the bytes left over the bytes per second measured lately.
    ``files_before``/``bytes_before``: files of the collection already done when this sync
    began (a resumed sync starts where the last one stopped, not at zero).
    ``action``/``action_s``: what is being done to ``current`` right now, and for how long.
    ``chunks_expected``: while indexing, ``chunks`` plus the chunks still to come (counted
    ahead where the sync could, guessed from the bytes elsewhere; None before any).
    """

    collection: str
    phase: Literal["scan", "index", "done"]
    files_done: int
    files_total: int
    chunks: int
    files_per_s: float
    chunks_per_s: float
    eta_s: float | None
    current: str | None = None
    elapsed_s: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)
    cancelled: bool = False
    bytes_done: int = 0
    bytes_total: int = 0
    bytes_per_s: float = 0.0
    files_before: int = 0
    bytes_before: int = 0
    action: SyncAction | None = None
    action_s: float = 0.0
    chunks_expected: int | None = None

    @property
    def fraction(self) -> float:
        """How much of the collection is done, 0 to 1: by bytes, counting what was done before
        this sync; by files when there are no bytes to go by."""
        total = self.bytes_before + self.bytes_total
        if total > 0:
            return min(1.0, (self.bytes_before + self.bytes_done) / total)
        files = self.files_before + self.files_total
        return min(1.0, (self.files_before + self.files_done) / files) if files else 0.0

    @property
    def current_label(self) -> str | None:
        """ "parsing report.pdf · 14 s": the file being worked on and for how long."""
        if self.action == "loading":
            return f"loading the embedding model · {self.action_s:.0f} s"
        if self.current is None:
            return None
        name = self.current.replace("\\", "/").rsplit("/", 1)[-1]
        return f"{self.action or 'indexing'} {name} · {self.action_s:.0f} s"

    @property
    def before_note(self) -> str | None:
        """ "1,210 of 3,633 files done before this sync", or None when none were."""
        if not self.files_before:
            return None
        return (f"{self.files_before:,} of {self.files_before + self.files_total:,} files done "
                "before this sync")

    @property
    def chunks_note(self) -> str | None:
        """ "1,234 of ~11,000 chunks" while indexing (embedded, of those expected), else None."""
        if self.phase != "index" or not self.chunks_expected:
            return None
        return f"{self.chunks:,} of ~{max(self.chunks, self.chunks_expected):,} chunks"


@dataclass(frozen=True)
class SearchHit:
    """A chunk found by ``Library.search``, with both component scores.

    ``bm25_rank``/``vector_rank`` are 1-based ranks in each candidate list (None: not a
    candidate there); ``bm25_score`` is FTS5's bm25 (lower is better, negated so higher is
    better); ``vector_score`` is the cosine similarity.
    """

    chunk_id: int
    text: str
    path: str
    page: int | None
    char_start: int
    char_end: int
    heading: str | None
    collection: str
    document_id: int
    score: float
    bm25_score: float | None = None
    bm25_rank: int | None = None
    vector_score: float | None = None
    vector_rank: int | None = None
