"""Import a LoRA adapter: check it against the base model it is for, then copy it in like a model.

The adapter is validated (the model header checks, then the adapter's own), matched against the
models Bastion has — the one the user names, else the one whose SHA-256 or name the adapter
records, else the first whose tensor shapes fit — and refused with the difference when none fits.
The copy goes through the model import's ``copy_into_folder`` (temp file, hash while copying,
fsync, rename, manifest), and the manifest record keeps which base it fits.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from .adapter_catalog import AdapterCatalog, AdapterEntry, AdapterRecord, BaseMatch, MatchedBy
from .adapter_file import (
    AdapterError,
    AdapterInfo,
    AdapterMismatch,
    base_dimensions,
    check_adapter_fits,
    fit_problem,
    read_adapter_info,
)
from .catalog import Catalog, ModelEntry
from .file_hashes import Progress
from .gguf_file import GGUFInfo
from .model_import import (
    SUMS_FILE_NAME,
    copy_into_folder,
    duplicate_in_folder,
    expected_sha256_from_sums,
)
from .model_manifest import ManifestRecord

# An adapter's name is typed after --adapter NAME[:SCALE]: no colon, no path, no hidden file.
_BAD_NAME = re.compile(r"[:/\\\x00-\x1f]|^\.")


def _normalised(text: str | None) -> str:
    return re.sub(r"[^a-z0-9]", "", (text or "").lower())


def _is_base(entry: ModelEntry) -> bool:
    info = entry.info
    return (info is not None and not info.is_embedding_model
            and info.metadata.get("general.type") != "adapter")


def match_base(adapter: AdapterInfo, candidates: Sequence[ModelEntry], *, chosen: bool = False
               ) -> tuple[ModelEntry, BaseMatch]:
    """The model among ``candidates`` that ``adapter`` fits, and how it was found.

    Preference: the model whose SHA-256 the adapter records, then the one whose name it
    records, then the first that fits. ``chosen`` says the user named the (single) candidate.

    Raises:
        AdapterMismatch: no candidate fits; the message gives the closest one's difference.
    """
    bases = [entry for entry in candidates if _is_base(entry)]
    if not bases:
        raise AdapterMismatch(
            f"There is no model to check {adapter.label} against. Import the model it was "
            "trained on first (`bastion models import FILE`), then import the adapter.")
    fits = [entry for entry in bases if fit_problem(adapter, _info(entry)) is None]
    by_sha = [e for e in bases if adapter.base_sha256
              and adapter.base_sha256 in ((e.sha256 or "").lower(), (e.expected_sha256 or "").lower())]
    # An adapter names its base by the base file's general.name (what trainers write), which
    # the catalog keeps as a detail: entries are called by their id.
    by_name = [e for e in bases if adapter.base_name and _normalised(adapter.base_name)
               in (_normalised(_info(e).name or ""), _normalised(e.id))]
    if not fits:
        if len(bases) == 1:
            check_adapter_fits(adapter, _info(bases[0]))  # raises with the one reason
        same_arch = [e for e in bases if _info(e).architecture == adapter.architecture]
        closest = (by_sha or by_name or same_arch or bases)[0]
        made_for = f" ({adapter.base_name!r})" if adapter.base_name else ""
        raise AdapterMismatch(
            f"{adapter.label} fits none of your {len(bases)} models. The closest, {closest.id}: "
            f"{fit_problem(adapter, _info(closest))}. Import the model it was trained on"
            f"{made_for} with `bastion models import FILE`, then import the adapter again.")
    how: MatchedBy
    if chosen:
        entry, how = fits[0], "chosen"
    elif found := [e for e in by_sha if e in fits]:
        entry, how = found[0], "sha256"
    elif found := [e for e in by_name if e in fits]:
        entry, how = found[0], "name"
    else:
        entry, how = fits[0], "shapes"
    info = _info(entry)
    n_embd, n_layer = base_dimensions(info)
    return entry, BaseMatch(
        model=entry.id, model_name=info.name, model_sha256=entry.sha256 or entry.expected_sha256,
        architecture=adapter.architecture, n_embd=n_embd, n_layer=n_layer, matched_by=how)


def _info(entry: ModelEntry) -> GGUFInfo:
    assert entry.info is not None  # only usable entries reach here
    return entry.info


def adapter_file_name(name: str) -> str:
    """The file name an adapter called ``name`` gets (``NAME.gguf``).

    Raises:
        AdapterError: the name holds a colon, a slash or a control character, or starts with a
            dot, so it could not be typed after ``--adapter``.
    """
    stem = name[: -len(".gguf")] if name.lower().endswith(".gguf") else name
    if not stem.strip() or _BAD_NAME.search(stem):
        raise AdapterError(
            f"{name!r} cannot be an adapter's name: it is typed after --adapter NAME[:SCALE], so "
            "it needs letters, digits, dots, dashes or underscores, without ':' or '/', and "
            "must not start with a dot. Give another name.")
    return f"{stem}.gguf"


def import_adapter(
    src: Path,
    adapters_dir: Path,
    models: Catalog,
    progress: Progress | None = None,
    *,
    base: str | None = None,
    name: str | None = None,
    expected_sha256: str | None = None,
) -> AdapterEntry:
    """Check ``src`` against its base model and copy it into ``adapters_dir``.

    Args:
        src: the adapter ``.gguf``; it is only read.
        adapters_dir: the adapters folder (``DataPaths.adapters_dir``; created 0700).
        models: the model catalog the base is looked up in.
        progress: ``(copied_bytes, total_bytes)`` during the copy.
        base: the model it is for (an id, file name or path); default: found among ``models``.
        name: what to call it (default: the file name; a ':' there becomes '-').
        expected_sha256: refuse the file unless it has this hash (default: a ``SHA256SUMS``
            next to ``src`` that lists it).

    Returns:
        The imported adapter, with its SHA-256 and base recorded.

    Raises:
        AdapterNotFound: ``src`` does not exist.  InvalidModelFile: not a safe GGUF.
        InvalidAdapterFile: a GGUF but not a LoRA adapter.
        AdapterMismatch: it fits no model (or not ``base``); the message says how.
        ModelNotFound: no model called ``base``.
        ModelAlreadyImported / ChecksumMismatch / ModelImportFailed: as a model import.
    """
    src = Path(src).expanduser()
    adapter = read_adapter_info(src)  # refuse before looking at any model or copying a byte
    candidates = [models.resolve(base)] if base is not None else models.entries()
    model, match = match_base(adapter, candidates, chosen=base is not None)
    base_info = _info(model)
    src = src.resolve()
    file_name = adapter_file_name(name if name is not None else src.name.replace(":", "-"))
    expected = (expected_sha256 or expected_sha256_from_sums(src) or "").lower() or None
    adapters_dir = Path(adapters_dir)

    def validate(copy: Path) -> None:
        # The copy is what will be attached: check it, not the source, against the base.
        check_adapter_fits(read_adapter_info(copy), base_info)

    def record(plain: ManifestRecord) -> ManifestRecord:
        return AdapterRecord(plain.sha256, plain.size, plain.imported_at, plain.source, match)

    dest, _ = copy_into_folder(
        src, adapters_dir, file_name, progress, kind="adapter", expected_sha256=expected,
        expected_label="the expected SHA-256" if expected_sha256 else SUMS_FILE_NAME,
        duplicate_of=lambda sha: duplicate_in_folder(adapters_dir, sha),
        validate=validate, manifest_record=record)
    return AdapterCatalog(adapters_dir).entry(dest)
