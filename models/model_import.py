"""Import a model file into the models folder: validate, copy atomically, record its SHA-256.

The copy goes to a hidden temp file in the models folder, hashed while it is written, fsynced and
renamed into place only once it is whole, verified and known not to be a duplicate. Any failure
(disk full included) removes the temp file, so the folder never holds a half-written model.
The source file is only read. Adapter imports (``adapter_import``) copy through the same
``copy_into_folder``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import hashlib
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from .catalog import Catalog, ModelEntry, embedded_default_expected_sha256, model_id
from .errors import ModelError, ModelNotFound
from .file_hashes import CHUNK_BYTES, HASH_CACHE_NAME, HashCache, Progress, folder_lock, fsync_dir
from .gguf_file import read_gguf_info
from .model_manifest import ManifestRecord, load_manifest, record_in_manifest

PARTIAL_PREFIX = ".import-"
PARTIAL_SUFFIX = ".part"
STALE_PARTIAL_S = 3600  # a live import touches its temp file every few milliseconds
SUMS_FILE_NAME = "SHA256SUMS"

_GNU_SUM = re.compile(r"^([0-9a-fA-F]{64}) [ *](.+)$")
_BSD_SUM = re.compile(r"^SHA256 \((.+)\) = ([0-9a-fA-F]{64})$")


class ModelImportFailed(ModelError):
    """The model could not be imported; nothing was left in the models folder."""


class ModelAlreadyImported(ModelImportFailed):
    """The same file (same SHA-256) is already available."""


class ChecksumMismatch(ModelImportFailed):
    """The file's SHA-256 differs from the one it was published with."""


def expected_sha256_from_sums(src: Path) -> str | None:
    """The SHA-256 a ``SHA256SUMS`` file next to ``src`` lists for it (GNU or BSD format)."""
    try:
        lines = (src.parent / SUMS_FILE_NAME).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    for line in lines.splitlines():
        line = line.strip()
        gnu, bsd = _GNU_SUM.match(line), _BSD_SUM.match(line)
        if gnu and Path(gnu.group(2)).name == src.name:
            return gnu.group(1).lower()
        if bsd and Path(bsd.group(1)).name == src.name:
            return bsd.group(2).lower()
    return None


def _write_chunk(target: BinaryIO, data: memoryview) -> None:
    # One place that writes, so tests can make the disk "fill up" here.
    target.write(data)


def _copy_hashing(source: BinaryIO, target: BinaryIO, total: int, progress: Progress | None) -> str:
    digest = hashlib.sha256()
    buffer = bytearray(CHUNK_BYTES)
    view = memoryview(buffer)
    done = 0
    while n := source.readinto(buffer):  # type: ignore[attr-defined]
        digest.update(view[:n])
        _write_chunk(target, view[:n])
        done += n
        if progress is not None:
            progress(done, total)
    return digest.hexdigest()


def _remove_stale_partials(models_dir: Path) -> None:
    """Delete temp files left by an import that was killed (kill -9, power cut)."""
    now = time.time()
    for path in models_dir.glob(f"{PARTIAL_PREFIX}*{PARTIAL_SUFFIX}"):
        with contextlib.suppress(OSError):
            if now - path.stat().st_mtime > STALE_PARTIAL_S:
                path.unlink()


def duplicate_in_folder(models_dir: Path, sha: str, embedded_sha: str | None = None) -> str | None:
    """What in ``models_dir`` (or the embedded default) already has this SHA-256, if anything."""
    if embedded_sha is not None and sha == embedded_sha:
        return "the embedded default model"
    for name, record in load_manifest(models_dir).items():
        if record.sha256 == sha and (models_dir / name).is_file():
            return model_id(Path(name))
    cache = HashCache(models_dir / HASH_CACHE_NAME)
    for path in models_dir.glob("*.gguf"):
        if cache.cached(path) == sha:
            return model_id(path)
    return None


def _full_disk(error: OSError) -> bool:
    return error.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))


def import_model(
    src: Path,
    models_dir: Path,
    progress: Progress | None = None,
    *,
    expected_sha256: str | None = None,
    embedded_sha256: str | None = None,
) -> ModelEntry:
    """Validate ``src`` and copy it into ``models_dir``, recording its SHA-256 in the manifest.

    Args:
        src: the ``.gguf`` file to import; it is only read.
        models_dir: the user's models folder (created 0700 if missing).
        progress: ``(copied_bytes, total_bytes)`` during the copy.
        expected_sha256: the hash the file was published with; when omitted, a ``SHA256SUMS``
            file next to ``src`` that lists it is used.
        embedded_sha256: the embedded default's hash, to refuse re-importing it; looked up from
            the installed package when omitted.

    Returns:
        The catalog entry of the imported copy (file mode 0600).

    Raises:
        ModelNotFound: ``src`` does not exist.
        InvalidModelFile: ``src`` is not a GGUF llama.cpp can safely open.
        ModelAlreadyImported: the same file is already available, or the name is taken.
        ChecksumMismatch: the file differs from ``expected_sha256`` / ``SHA256SUMS``.
        ModelImportFailed: ``src`` is a LoRA adapter, or the disk is full or the copy failed;
            nothing was left behind.
    """
    src = Path(src).expanduser()
    info = read_gguf_info(src)  # refuse before copying a byte
    if info.metadata.get("general.type") == "adapter":
        raise ModelImportFailed(
            f"{src.name} is a LoRA adapter, not a model: it changes a model rather than replacing "
            "it. Import it with `bastion adapters import` (or under Adapters on the Models page).")
    src = src.resolve()
    models_dir = Path(models_dir)
    name = src.name if src.name.lower().endswith(".gguf") else f"{src.name}.gguf"
    expected = (expected_sha256 or expected_sha256_from_sums(src) or "").lower() or None
    if embedded_sha256 is None:
        with contextlib.suppress(ModelNotFound):
            embedded_sha256 = embedded_default_expected_sha256()
    dest, _ = copy_into_folder(
        src, models_dir, name, progress, kind="model", expected_sha256=expected,
        expected_label="the expected SHA-256" if expected_sha256 else SUMS_FILE_NAME,
        duplicate_of=lambda sha: duplicate_in_folder(models_dir, sha, embedded_sha256))
    return Catalog(models_dir, include_embedded=False).entry(dest)


def copy_into_folder(
    src: Path,
    folder: Path,
    name: str,
    progress: Progress | None = None,
    *,
    kind: str,
    expected_sha256: str | None = None,
    expected_label: str = "the expected SHA-256",
    duplicate_of: Callable[[str], str | None] | None = None,
    validate: Callable[[Path], object] = read_gguf_info,
    manifest_record: Callable[[ManifestRecord], ManifestRecord] | None = None,
) -> tuple[Path, str]:
    """Copy a validated GGUF into ``folder`` as ``name``: whole, hashed, fsynced, recorded.

    The copy goes to a hidden temp file hashed while it is written; it is renamed into place
    only once it is whole, matches ``expected_sha256``, is no duplicate and passes ``validate``.
    Any failure removes the temp file. Model and adapter imports both come through here.

    Args:
        src: the file (already validated and resolved); it is only read.
        folder: the destination folder (created 0700 if missing).
        name: the file name in ``folder``.
        progress: ``(copied_bytes, total_bytes)`` during the copy.
        kind: "model" or "adapter", for messages ("the models folder").
        expected_sha256: the lower-case hash the copy must have, if known.
        expected_label: where ``expected_sha256`` came from, for the mismatch message.
        duplicate_of: SHA-256 → what already holds that content (refused), or None.
        validate: checks the copy before it is renamed into place (raises ``ModelError``).
        manifest_record: extends the manifest record (an adapter adds the base it fits).

    Returns:
        The imported file (mode 0600) and its SHA-256.
    """
    folder = Path(folder)
    place = f"{kind}s folder"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    dest = folder / name
    if src.parent == folder.resolve():
        raise ModelAlreadyImported(f"{src.name} is already in the {place}.")
    if os.path.lexists(dest):
        raise ModelAlreadyImported(
            f"A {kind} file named {name} is already in the {place}. Rename the file you are "
            "importing (or remove the old one) and try again.")
    size = src.stat().st_size
    free = shutil.disk_usage(folder).free
    if free < size:
        raise ModelImportFailed(
            f"There is not enough free space to import {src.name}: it needs "
            f"{_gib(size)} and {_gib(free)} is free where the {place} is "
            f"({folder}). Free some space and try again.")
    _remove_stale_partials(folder)

    tmp = folder / f"{PARTIAL_PREFIX}{uuid.uuid4().hex}{PARTIAL_SUFFIX}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o600)
        with open(src, "rb") as source, os.fdopen(fd, "wb") as target:
            before = os.fstat(source.fileno())
            sha = _copy_hashing(source, target, before.st_size, progress)
            target.flush()
            os.fsync(target.fileno())
            after = os.fstat(source.fileno())
        if (before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns):
            raise ModelImportFailed(f"{src.name} changed while it was being copied. Wait until "
                                    "it is complete (download finished) and import it again.")
        if expected_sha256 is not None and sha != expected_sha256:
            raise ChecksumMismatch(
                f"{src.name} does not match {expected_label} (expected {expected_sha256[:12]}…, "
                f"got {sha[:12]}…): the file is damaged or not the one published. Download it "
                "again.")
        duplicate = duplicate_of(sha) if duplicate_of is not None else None
        if duplicate is not None:
            raise ModelAlreadyImported(
                f"{src.name} is already available as {duplicate} (same SHA-256); nothing was "
                "imported.")
        validate(tmp)  # what lands in the folder is itself valid
        os.chmod(tmp, 0o600)
        record = ManifestRecord(
            sha256=sha, size=before.st_size,
            imported_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), source=str(src))
        record_in_manifest(folder, name, manifest_record(record) if manifest_record else record)
        with folder_lock(folder):
            if os.path.lexists(dest):  # another import took the name meanwhile
                raise ModelAlreadyImported(f"A {kind} file named {name} appeared in the {place} "
                                           "during the import. Try again.")
            os.replace(tmp, dest)
        fsync_dir(folder)
    except OSError as error:
        _discard(tmp)
        if _full_disk(error):
            raise ModelImportFailed(
                f"The disk is full: {src.name} ({_gib(size)}) could not be copied into "
                f"{folder}. Nothing was left half-written; free some space and try again."
            ) from error
        raise ModelImportFailed(f"Copying {src.name} failed: {error.strerror or error}. Nothing "
                                "was left half-written; check the disk and try again.") from error
    except BaseException:
        _discard(tmp)
        raise
    st = dest.stat()
    HashCache(folder / HASH_CACHE_NAME).store(dest, sha, size=st.st_size, mtime_ns=st.st_mtime_ns)
    return dest, sha


def import_folder(
    folder: Path, models_dir: Path, progress: Progress | None = None
) -> list[ModelEntry]:
    """Import every ``.gguf`` a folder's ``SHA256SUMS`` lists, each checked against its hash.

    The manifest is required: a folder import is how a verified set of models is carried in,
    so a folder without one, a listed file that is missing, or a GGUF the manifest does not
    list, is refused before anything is copied.

    Raises:
        ModelImportFailed: no ``SHA256SUMS``, or it and the folder disagree.
        ChecksumMismatch: a file differs from its listed hash (that file is not imported).
    """
    folder = Path(folder)
    sums = folder / SUMS_FILE_NAME
    if not sums.is_file():
        raise ModelImportFailed(
            f"{folder} has no {SUMS_FILE_NAME} file. A folder import needs one listing every "
            "model's SHA-256 (`sha256sum *.gguf > SHA256SUMS`); import a single file instead with "
            "`bastion models import FILE`."
        )
    models = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".gguf" and p.is_file())
    unlisted = [p.name for p in models if expected_sha256_from_sums(p) is None]
    if unlisted:
        raise ModelImportFailed(
            f"{SUMS_FILE_NAME} in {folder} does not list {', '.join(unlisted)}; nothing was "
            "imported. Add their hashes from the model's publisher, or remove the files."
        )
    if not models:
        raise ModelImportFailed(f"There is no .gguf file in {folder}; nothing was imported.")
    return [import_model(p, models_dir, progress) for p in models]


def _discard(tmp: Path) -> None:
    with contextlib.suppress(OSError):
        tmp.unlink()


def _gib(size: int) -> str:
    return f"{size / 2**30:.2f} GiB" if size >= 2**30 else f"{size / 2**20:.1f} MiB"
