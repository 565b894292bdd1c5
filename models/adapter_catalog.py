"""The adapter catalog: LoRA adapters imported into the data folder, and choosing them by name.

The adapters folder (``models/adapters`` in the data folder) holds the adapter files and a
``manifest.json`` in the models folder's format, whose records add the base model each adapter
was checked against at import (:class:`BaseMatch`). Listing reads headers only and takes SHA-256
values from the cache; ``verify`` re-reads whole files.

What answers use: ``resolve_adapter("facts:0.5", adapters_dir, base=model_path)`` turns a
``NAME[:SCALE]`` into the adapter's path and scale, having checked the scale, that the file is
still the one imported, and that it fits the base model.
"""

from __future__ import annotations

import math
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .adapter_file import (
    AdapterError,
    AdapterInfo,
    AdapterMismatch,
    AdapterNotFound,
    InvalidAdapterFile,
    LoraWeight,
    base_dimensions,
    check_adapter_fits,
    read_adapter_info,
)
from .catalog import VerifiedState, VerifyResult, model_id, verified_state, verify_file
from .errors import ModelError
from .file_hashes import (
    HASH_CACHE_NAME,
    HashCache,
    Progress,
    folder_lock,
    fsync_dir,
    read_json_object,
    write_json_atomic,
)
from .gguf_file import GGUFInfo, read_gguf_info
from .model_manifest import MANIFEST_NAME, MANIFEST_VERSION, ManifestRecord, load_manifest

__all__ = [
    "SCALE_LIMIT", "AdapterCatalog", "AdapterEntry", "AdapterError", "AdapterInfo",
    "AdapterMismatch", "AdapterNotFound", "AdapterRecord", "AdapterSpec", "BaseMatch",
    "InvalidAdapterFile", "InvalidAdapterScale", "LoraWeight", "base_dimensions",
    "check_adapter_fits", "load_adapter_records", "parse_adapter_spec", "read_adapter_info",
    "resolve_adapter", "resolve_adapters",
]

SCALE_LIMIT = 4.0
"""Scales are accepted in [-SCALE_LIMIT, SCALE_LIMIT]: beyond that an adapter drowns the model."""

MatchedBy = Literal["chosen", "sha256", "name", "shapes"]
"""How the base was found at import: named by the user, by the SHA-256 or the name the adapter
records, or as the first model whose shapes fit."""
_MATCHED_BY: dict[str, MatchedBy] = {m: m for m in ("chosen", "sha256", "name", "shapes")}


class InvalidAdapterScale(AdapterError):
    """A ``NAME:SCALE`` whose scale is not a number in [-4, 4]."""


@dataclass(frozen=True)
class BaseMatch:
    """The base model an adapter was checked against when it was imported."""

    model: str  # the model's id then (file name without .gguf)
    model_name: str | None  # its general.name
    model_sha256: str | None  # None when it had not been hashed
    architecture: str
    n_embd: int | None
    n_layer: int | None
    matched_by: MatchedBy


@dataclass(frozen=True)
class AdapterRecord(ManifestRecord):
    """A manifest record of an imported adapter: its hash and the base it fits."""

    base: BaseMatch | None = None


@dataclass(frozen=True)
class AdapterSpec:
    """``NAME[:SCALE]`` as typed after ``--adapter``."""

    name: str
    scale: float = 1.0


@dataclass(frozen=True)
class AdapterEntry:
    """One adapter in the adapters folder (plain data)."""

    id: str  # the file name without ".gguf"; what users type
    name: str  # the adapter's general.name, else the id
    path: Path
    # folder: put there by hand, no recorded hash; embedded: ships with Bastion (read-only)
    origin: Literal["imported", "folder", "embedded"]
    file_size: int
    info: AdapterInfo | None  # None when the file is not a usable adapter
    error: str | None  # why not, for users
    sha256: str | None  # None until hashed
    expected_sha256: str | None  # what the manifest says
    verified: VerifiedState
    base: BaseMatch | None  # what it was checked against at import
    imported_at: str | None

    @property
    def usable(self) -> bool:
        return self.info is not None


# Adapters that ship with Bastion: package data beside this module, with a manifest.json.
EMBEDDED_ADAPTERS_DIR = Path(__file__).resolve().parent / "embedded_adapters"


def _base_from_json(raw: Any) -> BaseMatch | None:
    if not isinstance(raw, dict):
        return None
    try:
        return BaseMatch(
            model=str(raw["model"]),
            model_name=None if raw.get("model_name") is None else str(raw["model_name"]),
            model_sha256=None if raw.get("model_sha256") is None else str(raw["model_sha256"]),
            architecture=str(raw["architecture"]),
            n_embd=None if raw.get("n_embd") is None else int(raw["n_embd"]),
            n_layer=None if raw.get("n_layer") is None else int(raw["n_layer"]),
            matched_by=_MATCHED_BY.get(str(raw.get("matched_by")), "shapes"),
        )
    except (KeyError, TypeError, ValueError):
        return None


def load_adapter_records(adapters_dir: Path) -> dict[str, AdapterRecord]:
    """File name → record (hash and base); {} without a manifest. Malformed parts are ignored."""
    files = read_json_object(adapters_dir / MANIFEST_NAME).get("files")
    raw_files = files if isinstance(files, dict) else {}
    return {
        name: AdapterRecord(record.sha256, record.size, record.imported_at, record.source,
                            _base_from_json((raw_files.get(name) or {}).get("base")))
        for name, record in load_manifest(adapters_dir).items()
    }


def _forget(adapters_dir: Path, name: str) -> None:
    with folder_lock(adapters_dir):
        data = read_json_object(adapters_dir / MANIFEST_NAME)
        files = data.get("files")
        if isinstance(files, dict) and name in files:
            del files[name]
            write_json_atomic(adapters_dir / MANIFEST_NAME,
                              {"version": MANIFEST_VERSION, "files": files})


def _gguf_files(folder: Path | None) -> list[Path]:
    """The regular ``*.gguf`` files of ``folder`` (not hidden, symlinks not followed), by name."""
    if folder is None:
        return []
    try:
        names = sorted(os.listdir(folder), key=str.lower)
    except (FileNotFoundError, NotADirectoryError):
        return []
    files = []
    for name in names:
        if name.startswith(".") or not name.lower().endswith(".gguf"):
            continue
        path = folder / name
        try:
            mode = os.lstat(path).st_mode
        except OSError:
            continue  # deleted while we looked
        if stat.S_ISREG(mode):
            files.append(path)
    return files


class AdapterCatalog:
    """The adapters in ``adapters_dir`` (it need not exist yet), and those that ship with
    Bastion (``embedded_dir``: a read-only folder of the same layout, its manifest holding each
    file's SHA-256 and base). A user's adapter of the same name comes first.
    """

    def __init__(self, adapters_dir: Path, *, embedded_dir: Path | Literal["shipped"] | None = "shipped"
                 ) -> None:
        self.adapters_dir = Path(adapters_dir)
        # Read at call time, so tests can point it elsewhere.
        self.embedded_dir: Path | None = (EMBEDDED_ADAPTERS_DIR if isinstance(embedded_dir, str)
                                          else embedded_dir)
        self.hash_cache = HashCache(self.adapters_dir / HASH_CACHE_NAME)

    def _files(self) -> list[Path]:
        own = _gguf_files(self.adapters_dir)
        taken = {model_id(p).lower() for p in own}
        shipped = [p for p in _gguf_files(self.embedded_dir) if model_id(p).lower() not in taken]
        return own + shipped

    def _records(self) -> dict[Path, AdapterRecord]:
        out = {self.adapters_dir / n: r for n, r in load_adapter_records(self.adapters_dir).items()}
        if self.embedded_dir is not None:
            out.update({self.embedded_dir / n: r for n, r in load_adapter_records(self.embedded_dir).items()})
        return out

    def entries(self, *, hash_files: bool = False, progress: Progress | None = None
                ) -> list[AdapterEntry]:
        """Every adapter, by name. ``hash_files`` computes SHA-256 values not yet cached."""
        records = self._records()
        return [self._entry(path, records.get(path), hash_files, progress) for path in self._files()]

    def entry(self, path: Path) -> AdapterEntry:
        """The entry for one adapter file (header read, cached hash only)."""
        return self._entry(path, self._records().get(path), False, None)

    def _entry(self, path: Path, record: AdapterRecord | None, hash_files: bool,
               progress: Progress | None) -> AdapterEntry:
        info: AdapterInfo | None = None
        error: str | None = None
        try:
            info = read_adapter_info(path)
        except ModelError as exc:
            error = str(exc)
        try:
            size = path.stat().st_size
        except OSError:
            size = 0
        sha = None
        if info is not None:
            sha = (self.hash_cache.sha256(path, progress) if hash_files
                   else self.hash_cache.cached(path))
        expected = record.sha256 if record else None
        origin: Literal["imported", "folder", "embedded"] = (
            "embedded" if self.embedded_dir is not None and path.parent == self.embedded_dir
            else "imported" if record else "folder")
        return AdapterEntry(
            id=model_id(path), name=(info.name if info and info.name else model_id(path)),
            path=path, origin=origin, file_size=size, info=info,
            error=error, sha256=sha, expected_sha256=expected,
            verified=verified_state(info is not None, sha, expected),
            base=record.base if record else None,
            imported_at=record.imported_at if record else None,
        )

    def resolve(self, name: str) -> AdapterEntry:
        """The adapter called ``name`` (its id or file name; exact case first).

        Raises:
            AdapterNotFound: none is; the message lists the adapters there are.
        """
        files = self._files()
        exact = [p for p in files if name in (model_id(p), p.name)]
        folded = [p for p in files if name.lower() in (model_id(p).lower(), p.name.lower())]
        if exact or folded:  # forgiving about case, as file systems may be
            return self.entry((exact or folded)[0])
        known = ", ".join(model_id(p) for p in files) or "none yet"
        raise AdapterNotFound(f"No adapter called {name!r}. Known adapters: {known}. Import one "
                              "with `bastion adapters import FILE`.")

    def verify(self, target: AdapterEntry | str, progress: Progress | None = None
               ) -> VerifyResult:
        """Re-read an adapter's header and whole file; compare its SHA-256 with the record."""
        entry = target if isinstance(target, AdapterEntry) else self.resolve(target)
        shipped = entry.origin == "embedded"
        return verify_file(
            entry.id, entry.path, entry.expected_sha256, self.hash_cache, read_adapter_info,
            "shipped" if shipped else "imported",
            "Reinstall Bastion." if shipped else "Remove it and import it again.", "adapters", progress)

    def verify_all(self, progress: Progress | None = None) -> list[VerifyResult]:
        return [self.verify(entry, progress) for entry in self.entries()]

    def remove(self, name: str) -> AdapterEntry:
        """Delete the adapter ``name`` and its record; returns what was removed.

        Raises:
            AdapterNotFound: there is no such adapter.
        """
        entry = self.resolve(name)
        if entry.origin == "embedded":
            raise AdapterError(f"The adapter {entry.id} ships with Bastion and cannot be removed; "
                               "a chat uses it only when you choose it.")
        entry.path.unlink(missing_ok=True)
        _forget(self.adapters_dir, entry.path.name)
        fsync_dir(self.adapters_dir)
        return entry

    def path_of(self, name: str, base: GGUFInfo | Path | str | None = None) -> Path:
        """The file of the adapter ``name``, checked as :meth:`checked` does (the shape of
        ``Assistant.adapter_path``: bind ``base`` to the loaded model's header or path)."""
        return self.checked(self.resolve(name), _base_info(base)).path

    def checked(self, entry: AdapterEntry, base: GGUFInfo | None = None) -> AdapterEntry:
        """``entry`` if it may be attached: a valid adapter, unchanged since it was imported,
        and (given ``base``) fitting that base model.

        Raises:
            InvalidAdapterFile: it is not a usable adapter (any more).
            AdapterError: it changed since it was imported.
            AdapterMismatch: it does not fit ``base``.
        """
        if entry.info is None:
            raise InvalidAdapterFile(entry.error or f"{entry.id} is not a usable adapter.")
        if entry.expected_sha256 is not None:
            # Cached while the file's size and mtime hold, so this costs a stat per answer.
            sha = self.hash_cache.sha256(entry.path)
            if sha != entry.expected_sha256.lower():
                raise AdapterError(
                    f"The adapter {entry.id} has changed since it was imported (its SHA-256 "
                    f"differs from the recorded one). Remove it (`bastion adapters remove "
                    f"{entry.id}`) and import it again.")
        if base is not None:
            check_adapter_fits(entry.info, base)
        return entry


def parse_adapter_spec(spec: str) -> AdapterSpec:
    """``NAME`` or ``NAME:SCALE`` → the name and a scale in [-4, 4] (1.0 when omitted).

    Raises:
        InvalidAdapterScale: the scale is not a number, not finite, or outside [-4, 4].
        AdapterNotFound: the name is empty.
    """
    name, colon, scale_text = spec.strip().rpartition(":")
    if not colon:
        name, scale_text = scale_text, ""
    name = name.strip()
    if not name:
        raise AdapterNotFound(f"{spec!r} names no adapter. Write NAME or NAME:SCALE, e.g. "
                              "facts:0.5 (`bastion adapters list` shows the names).")
    if not colon:
        return AdapterSpec(name)
    try:
        scale = float(scale_text)
    except ValueError:
        raise InvalidAdapterScale(
            f"The scale in {spec!r} is not a number. Write NAME:SCALE with SCALE between "
            f"-{SCALE_LIMIT:g} and {SCALE_LIMIT:g}, e.g. {name}:0.5.") from None
    if not math.isfinite(scale) or abs(scale) > SCALE_LIMIT:
        raise InvalidAdapterScale(
            f"The scale of {name} must be between -{SCALE_LIMIT:g} and {SCALE_LIMIT:g} (got "
            f"{scale_text.strip()}): 1 applies the adapter as trained, 0 turns it off, and "
            "beyond ±4 it overwhelms the model. Choose a scale in that range.")
    return AdapterSpec(name, scale)


def _base_info(base: GGUFInfo | Path | str | None) -> GGUFInfo | None:
    if base is None or isinstance(base, GGUFInfo):
        return base
    return read_gguf_info(Path(base))


def resolve_adapter(spec: str, adapters_dir: Path, base: GGUFInfo | Path | str | None = None
                    ) -> tuple[Path, float]:
    """Turn ``--adapter NAME[:SCALE]`` into the adapter's path and scale, checked.

    Args:
        spec: ``NAME`` or ``NAME:SCALE`` (a scale in [-4, 4]; 1.0 when omitted).
        adapters_dir: the adapters folder (``DataPaths.adapters_dir``).
        base: the base model (its path or header); when given, the adapter must fit it.

    Returns:
        The adapter file's path and the scale.

    Raises:
        InvalidAdapterScale: bad scale.  AdapterNotFound: no such adapter.
        InvalidAdapterFile / AdapterError: the file is damaged or changed since its import.
        AdapterMismatch: it was made for another base model.
    """
    return resolve_adapters([spec], adapters_dir, base)[0]


def resolve_adapters(specs: Sequence[str], adapters_dir: Path,
                     base: GGUFInfo | Path | str | None = None) -> list[tuple[Path, float]]:
    """``resolve_adapter`` for several ``--adapter`` values; each adapter may appear once.

    Raises:
        AdapterError: as ``resolve_adapter``, or the same adapter was given twice.
    """
    parsed = [parse_adapter_spec(spec) for spec in specs]  # every typo before any file work
    catalog = AdapterCatalog(adapters_dir)
    base_info = _base_info(base) if parsed else None
    chosen: list[tuple[Path, float]] = []
    for wanted in parsed:
        entry = catalog.checked(catalog.resolve(wanted.name), base_info)
        if any(path == entry.path for path, _ in chosen):
            raise AdapterError(f"The adapter {entry.id} is given twice; give it once, with the "
                               "scale you want.")
        chosen.append((entry.path, wanted.scale))
    return chosen
